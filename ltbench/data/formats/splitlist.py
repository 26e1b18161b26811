"""OLTR split lists: one ``relative/path label`` per line.

ImageNet-LT and Places-LT are defined by the files ``ImageNet_LT_{train,val,test}.txt`` and
``Places_LT_{train,val,test}.txt`` from the OLTR project
(https://github.com/zhmiao/OpenLongTailRecognition-OLTR), e.g.
``train/n01440764/n01440764_10026.JPEG 0``; the paths are relative to the image root
(ImageNet: https://image-net.org, Places365-Standard 256x256: http://places2.csail.mit.edu).
Reading never opens an image: 437,513 lines take well under a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import DataFormatError, DataMissingError

OLTR_URL = "https://github.com/zhmiao/OpenLongTailRecognition-OLTR"


@dataclass(frozen=True)
class SplitList:
    paths: list[str]  # relative to the image root, in file order
    labels: np.ndarray  # int64
    sha256: str  # of the file's bytes, for provenance
    path: Path


def read_split_list(path: Path, num_classes: int | None = None) -> SplitList:
    """Parse a split list; blank lines are skipped.

    Raises:
        DataMissingError: no such file.
        DataFormatError: a line without an integer label, or a label outside
            ``0..num_classes-1`` (with the file and line number).
    """
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(
            f"split list {path} not found; it is one of the OLTR project's split files "
            f"(ImageNet_LT_*.txt / Places_LT_*.txt from {OLTR_URL}); put it in the data root, the folder "
            f"the paths inside it are relative to"
        )
    raw = path.read_bytes()  # one read serves both the parse and the checksum
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e})") from None
    paths, labels = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.rsplit(None, 1)  # paths may contain spaces; the label is the last field
        if not parts:
            continue
        try:
            rel, label = parts
            labels.append(int(label))
        except ValueError:
            raise DataFormatError(f"{path}:{lineno}: cannot parse {line!r}: expected 'relative/path label'") from None
        paths.append(rel)
    y = np.asarray(labels, dtype=np.int64)
    if num_classes is not None and len(y):
        bad = np.flatnonzero((y < 0) | (y >= num_classes))
        if len(bad):
            raise DataFormatError(
                f"{path}:{_line_of(text, int(bad[0]))}: label {y[bad[0]]} outside 0..{num_classes - 1} "
                f"(the dataset has {num_classes} classes)"
            )
    return SplitList(paths, y, hashlib.sha256(raw).hexdigest(), path)


def _line_of(text: str, entry: int) -> int:
    """1-based line number of the ``entry``-th non-blank line (only on the error path)."""
    seen = -1
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            seen += 1
            if seen == entry:
                return lineno
    return -1


def check_images_exist(root: Path, paths: Iterable[str], limit: int | None = None, first: int = 10) -> list[str]:
    """The first ``first`` of ``paths`` (at most ``limit`` checked) missing under ``root``; [] if all exist."""
    root = Path(root)
    missing = []
    for i, rel in enumerate(paths):
        if limit is not None and i >= limit:
            break
        if not (root / rel).is_file():
            missing.append(rel)
            if len(missing) >= first:
                break
    return missing
