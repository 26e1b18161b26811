"""Integrity checks: the figures and checksums found against those the recipe expects."""

from __future__ import annotations

import numpy as np

from ..config.specs import DatasetSpec
from ..core.errors import DataFormatError, DataIntegrityError
from .sources import SourceData

NO_VERIFY = "pass --no-verify to use a custom copy (the run's record then says it is unverified)"


def found_figures(src: SourceData) -> dict[str, int]:
    """Sizes of the source's splits and its train split's largest and smallest class."""
    counts = np.bincount(src.train.labels, minlength=len(src.class_names))
    return {
        "train_total": len(src.train),
        "train_max": int(counts.max()),
        "train_min": int(counts.min()),
        "val_total": len(src.val) if src.val is not None else 0,
        "test_total": len(src.test) if src.test is not None else 0,
    }


def check_source(spec: DatasetSpec, src: SourceData, verify: bool = True) -> None:
    """Raise on a wrong class count or image shape always; on expected figures and checksums
    unless ``verify`` is False."""
    if len(src.class_names) != spec.num_classes:
        raise DataFormatError(
            f"dataset {spec.name}: source {spec.source} has {len(src.class_names)} classes, "
            f"the recipe says {spec.num_classes}"
        )
    images = src.train.images
    shape = (spec.channels, spec.image_size, spec.image_size)
    if images is not None and images.shape[1:] != shape:
        raise DataFormatError(f"dataset {spec.name}: source images are {images.shape[1:]}, the recipe says {shape}")
    if not verify:
        return
    found = found_figures(src)
    for key, want in vars(spec.expected).items():
        if want and found[key] != want:
            raise DataIntegrityError(
                f"dataset {spec.name} at {src.root}: found {key.replace('_', ' ')} = {found[key]:,}, "
                f"the recipe expects {want:,}; {NO_VERIFY}"
            )
    for name, want in spec.checksums.items():
        got = src.files.get(name)
        if got is None:
            raise DataIntegrityError(f"dataset {spec.name}: no checksum was taken of {name}, which the recipe lists")
        if got.split(":", 1)[-1] != want.split(":", 1)[-1]:
            raise DataIntegrityError(f"{src.root}/{name}: checksum {got}, the recipe expects {want}; {NO_VERIFY}")
