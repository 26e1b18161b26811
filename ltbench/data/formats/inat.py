"""iNaturalist 2018's official COCO-style jsons, ``train2018.json`` and ``val2018.json``.

From https://github.com/visipedia/inat_comp/tree/master/2018. Each has ``images``
(id, file_name), ``annotations`` (image_id, category_id) and ``categories`` (id, name).
The label index of a category is its position among the sorted category ids (for 2018 the
ids are 0..8141, so index and id coincide, but nothing relies on it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataFormatError, DataMissingError


@dataclass(frozen=True)
class InatSplit:
    paths: list[str]  # file_name, in the json's image order
    labels: np.ndarray
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    sha256: str


def read_inat(path: Path) -> InatSplit:
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(
            f"{path} not found; the official iNaturalist 2018 jsons "
            f"(https://github.com/visipedia/inat_comp/tree/master/2018) go in the data root"
        )
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path} is not JSON: {e}") from None
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise DataFormatError(f"{path}: missing key {key!r} (expected a COCO-style iNaturalist json)")
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    label_of = {}
    for a in doc["annotations"]:
        if a["category_id"] not in index:
            raise DataFormatError(f"{path}: image {a['image_id']} has unknown category_id {a['category_id']}")
        label_of[a["image_id"]] = index[a["category_id"]]
    paths, labels = [], []
    for img in doc["images"]:
        if img["id"] not in label_of:
            raise DataFormatError(f"{path}: image {img['id']} ({img.get('file_name')}) has no annotation")
        paths.append(img["file_name"])
        labels.append(label_of[img["id"]])
    return InatSplit(paths, np.asarray(labels, dtype=np.int64), tuple(str(c.get("name", c["id"])) for c in cats),
                     tuple(c["id"] for c in cats), hashlib.sha256(raw).hexdigest())
