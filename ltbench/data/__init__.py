"""Datasets: sources of images, the long-tail protocol, integrity checks and batch pipelines.

``build_data(spec, data_seed, root)`` turns a dataset recipe into an :class:`LTData`: a test
set, a validation set (when the recipe has one) and a long-tailed training set. Where the
source has no test split (the embedded sets), balanced test and validation sets are carved
out first with a fixed seed; where the source's train split is balanced (CIFAR,
Fashion-MNIST), the long-tailed set is drawn with the CIFAR-LT protocol and the validation
set comes from the images it left unused; ImageNet-LT, Places-LT and iNaturalist are used as
their split files define them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config.specs import DatasetSpec
from ..core.errors import DataError
from .integrity import check_source
from .longtail import longtail_counts, select_longtail, split_per_class
from .sources import SOURCES, SourceData, Split

# The test/val carve-outs use a fixed seed so every data seed is evaluated on the same images.
SPLIT_SEED = 0


@dataclass(frozen=True)
class LTData:
    """A long-tailed dataset: three splits, the label map and where it came from."""

    train: Split
    test: Split
    val: Split | None
    class_names: tuple[str, ...]
    root: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    verified: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.train.labels, minlength=self.num_classes)

    @property
    def in_memory(self) -> bool:
        return self.train.images is not None

    def fingerprint(self) -> str:
        """SHA-256 over the exact samples of the three splits (pixels, or paths) and labels."""
        h = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            if split is None:
                h.update(b"none")
                continue
            h.update(np.ascontiguousarray(split.labels).tobytes())
            if split.images is not None:
                h.update(np.ascontiguousarray(split.images).tobytes())
            else:
                h.update("\n".join(split.paths).encode())
        return h.hexdigest()


def carve_val(labels: np.ndarray, unused: np.ndarray, per_class: int, num_classes: int) -> np.ndarray:
    """Indices of a validation set, up to ``per_class`` per class, from ``unused`` indices.

    The CIFAR-LT head class keeps every one of its images, so it has none to give: such a
    class is absent from validation rather than the published training set being changed (or
    the test set). Reports mark every choice made on such a validation set
    (:mod:`ltbench.reports.row_marks`, docs/datasets.md).
    """
    rng = np.random.RandomState(SPLIT_SEED)
    chosen = [np.sort(rng.permutation(unused[labels[unused] == c])[:per_class]) for c in range(num_classes)]
    out = np.concatenate(chosen)
    if not len(out):
        raise DataError("no training images are left for validation; set split.val_per_class = 0")
    return out


def apply_protocol(spec: DatasetSpec, src: SourceData, data_seed: int) -> LTData:
    """The recipe's splits and long tail on an already loaded source."""
    sp, lt = spec.split, spec.longtail
    val = src.val
    if src.test is None:
        if sp.test_per_class <= 0:
            raise DataError(f"dataset {spec.name}: source {spec.source} has no test split; set split.test_per_class")
        test_idx, val_idx, pool_idx = split_per_class(src.train.labels, sp.test_per_class, sp.val_per_class, SPLIT_SEED)
        test, pool = src.train.take(test_idx), src.train.take(pool_idx)
        val = src.train.take(val_idx) if sp.val_per_class else None
    else:
        if sp.test_per_class:
            raise DataError(
                f"dataset {spec.name}: source {spec.source} has its own test split; set split.test_per_class = 0"
            )
        test, pool = src.test, src.train
    if lt.n_max > 0:
        counts = longtail_counts(lt.n_max, spec.num_classes, lt.rho, lt.profile)
        try:
            chosen = select_longtail(pool.labels, counts, data_seed)
        except ValueError as e:
            raise DataError(f"dataset {spec.name}: {e}; lower longtail.n_max") from None
        train = pool.take(chosen)
        if val is None and sp.val_per_class:
            unused = np.setdiff1d(np.arange(len(pool)), chosen)
            val = pool.take(carve_val(pool.labels, unused, sp.val_per_class, spec.num_classes))
    else:
        train = pool
    return LTData(train, test, val, src.class_names, src.root, src.files)


def load_source(spec: DatasetSpec, root: str | Path | None = None, verify: bool = True) -> SourceData:
    """Read the recipe's source from ``root`` (or its default root) and check its integrity."""
    root = Path(root) if root else (Path(spec.default_root) if spec.default_root else None)
    src = SOURCES.get(spec.source)(spec, root, verify)
    check_source(spec, src, verify)
    return src


def build_data(spec: DatasetSpec, data_seed: int = 0, root: str | Path | None = None, verify: bool = True) -> LTData:
    """Load ``spec``'s source and apply its splits and long tail with ``data_seed``.

    Raises:
        DataMissingError: files not found (the message says what goes where).
        DataFormatError: a file that does not parse, or a label out of range.
        DataIntegrityError: found figures or checksums differ from the recipe's
            (``verify=False`` accepts a custom copy; the record then says so).
    """
    data = apply_protocol(spec, load_source(spec, root, verify), data_seed)
    return LTData(data.train, data.test, data.val, data.class_names, data.root, data.files, verify)


__all__ = ["LTData", "SOURCES", "Split", "apply_protocol", "build_data", "load_source"]
