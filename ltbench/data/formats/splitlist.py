"""OLTR split lists: one ``relative/path label`` per line.

ImageNet-LT and Places-LT ship as ``ImageNet_LT_{train,val,test}.txt`` and
``Places_LT_{train,val,test}.txt`` from the OLTR project
(https://github.com/zhmiao/OpenLongTailRecognition-OLTR); the paths are relative to the
image root. Reading never opens an image: 437,513 lines take well under a second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataFormatError, DataMissingError


@dataclass(frozen=True)
class SplitList:
    paths: list[str]
    labels: np.ndarray  # int64
    sha256: str
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
            f"split list {path} not found; the OLTR project's split files "
            f"(https://github.com/zhmiao/OpenLongTailRecognition-OLTR) go in the data root, next to the images"
        )
    raw = path.read_bytes()
    paths, labels = [], []
    for lineno, line in enumerate(raw.decode().splitlines(), 1):
        parts = line.rsplit(None, 1)
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
            lineno = _line_of(raw, bad[0])
            raise DataFormatError(f"{path}:{lineno}: label {y[bad[0]]} outside 0..{num_classes - 1}")
    return SplitList(paths, y, hashlib.sha256(raw).hexdigest(), path)


def _line_of(raw: bytes, entry: int) -> int:
    """1-based line number of the ``entry``-th non-blank line."""
    seen = -1
    for lineno, line in enumerate(raw.decode().splitlines(), 1):
        if line.strip():
            seen += 1
            if seen == entry:
                return lineno
    return -1
