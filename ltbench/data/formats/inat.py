"""iNaturalist 2018's official COCO-style jsons, ``train2018.json`` and ``val2018.json``.

From https://github.com/visipedia/inat_comp/tree/master/2018 (8,142 classes; every paper
reports val2018 as its "test" set). Each json has ``images`` (id, file_name, ...),
``annotations`` (image_id, category_id, ...) and ``categories`` (id, name, ...).

A category's label index is its position among the sorted category ids. For 2018 the ids
are 0..8141, so index and id coincide, but nothing here relies on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import DataFormatError, DataMissingError

INAT_URL = "https://github.com/visipedia/inat_comp/tree/master/2018"


@dataclass(frozen=True)
class InatSplit:
    paths: list[str]  # file_name, in the json's image order
    labels: np.ndarray  # int64 label index
    class_names: tuple[str, ...]  # in label-index order
    category_ids: tuple[int, ...]  # sorted; category_ids[label] is the json's id
    sha256: str  # of the file's bytes


def _field(item, key: str, what: str, path: Path):
    try:
        return item[key]
    except (KeyError, TypeError, IndexError):
        raise DataFormatError(f"{path}: an entry of {what!r} lacks key {key!r}: {str(item)[:120]}") from None


def read_inat(path: Path) -> InatSplit:
    """Read one iNaturalist json (train2018.json or val2018.json).

    Raises:
        DataMissingError: no such file.
        DataFormatError: not JSON, a missing key, an unknown category_id, or an image
            without an annotation (naming the image id).
    """
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(
            f"{path} not found; the official iNaturalist 2018 jsons (train2018.json, val2018.json from "
            f"{INAT_URL}) go in the data root, next to the train_val2018/ image folder"
        )
    raw = path.read_bytes()  # one read serves both the parse and the checksum
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise DataFormatError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise DataFormatError(f"{path}: missing key {key!r} (expected a COCO-style iNaturalist json)")

    cats = sorted(doc["categories"], key=lambda c: _field(c, "id", "categories", path))
    index = {c["id"]: i for i, c in enumerate(cats)}
    label_of = {}
    for a in doc["annotations"]:
        image_id = _field(a, "image_id", "annotations", path)
        category = _field(a, "category_id", "annotations", path)
        if category not in index:
            raise DataFormatError(f"{path}: image {image_id} has unknown category_id {category}")
        label_of[image_id] = index[category]
    paths, labels = [], []
    for img in doc["images"]:
        image_id = _field(img, "id", "images", path)
        if image_id not in label_of:
            raise DataFormatError(f"{path}: image {image_id} ({img.get('file_name')}) has no annotation")
        paths.append(_field(img, "file_name", "images", path))
        labels.append(label_of[image_id])
    return InatSplit(
        paths,
        np.asarray(labels, dtype=np.int64),
        tuple(str(c.get("name", c["id"])) for c in cats),
        tuple(c["id"] for c in cats),
        hashlib.sha256(raw).hexdigest(),
    )
