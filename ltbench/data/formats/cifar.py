"""CIFAR-10 / CIFAR-100 python pickles in torchvision's layout.

Get them from https://www.cs.toronto.edu/~kriz/cifar.html (the "python version") or with
``ltbench data download cifar10_lt --root DIR`` where a network exists. Layout::

    DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    DIR/cifar-100-python/{train, test, meta}

The training order is the concatenation of the batches, exactly torchvision's ``targets``
order, which the CIFAR-LT protocol indexes into.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataFormatError, DataIntegrityError, DataMissingError
from ._checksum import file_digest

# md5 of the official files (as torchvision lists them).
CIFAR_FILES = {
    10: {
        "folder": "cifar-10-batches-py",
        "train": ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
        "test": "test_batch",
        "meta": "batches.meta",
        "label_key": b"labels",
        "names_key": b"label_names",
        "md5": {
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    },
    100: {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": "test",
        "meta": "meta",
        "label_key": b"fine_labels",
        "names_key": b"fine_label_names",
        "md5": {
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    },
}


@dataclass(frozen=True)
class CifarData:
    train_x: np.ndarray  # uint8 (N, 3, 32, 32)
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    files: dict[str, str]  # file name -> md5 found


def _folder(root: Path, num_classes: int) -> Path:
    name = CIFAR_FILES[num_classes]["folder"]
    folder = root if root.name == name else root / name
    if not folder.is_dir():
        raise DataMissingError(
            f"CIFAR-{num_classes} not found: expected {root / name}/ (torchvision's layout of the python "
            f"pickles). Get cifar-{num_classes}-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
            f"and unpack it there, or run `ltbench data download cifar{num_classes}_lt --root {root}` where a "
            f"network exists (torchvision's --download)."
        )
    return folder


def _load(path: Path) -> dict:
    if not path.is_file():
        raise DataMissingError(f"missing CIFAR file {path}; unpack the official archive again or re-download it")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataFormatError(f"{path} is not a CIFAR python pickle: {e}") from None


def read_cifar(root: Path, num_classes: int, verify: bool = True) -> CifarData:
    """Read the CIFAR-``num_classes`` pickles under ``root`` (or the folder itself).

    Raises:
        DataMissingError: the folder or a file is missing.
        DataIntegrityError: ``verify`` and a file's md5 differs from the official one.
    """
    meta = CIFAR_FILES[num_classes]
    folder = _folder(Path(root), num_classes)
    files = {}
    for name in [*meta["train"], meta["test"], meta["meta"]]:
        path = folder / name
        if not path.is_file():
            raise DataMissingError(f"missing CIFAR file {path}; unpack the official archive again or re-download it")
        files[name] = file_digest(path, "md5")
        if verify and files[name] != meta["md5"][name]:
            raise DataIntegrityError(
                f"{path}: md5 {files[name]}, the official file has {meta['md5'][name]}; pass --no-verify to use a "
                f"custom copy (the run's record then says it is unverified)"
            )

    def images_labels(names):
        batches = [_load(folder / n) for n in names]
        x = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(b[meta["label_key"]], dtype=np.int64) for b in batches])
        return x, y

    train_x, train_y = images_labels(meta["train"])
    test_x, test_y = images_labels([meta["test"]])
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in _load(folder / meta["meta"])[meta["names_key"]])
    for y, split in ((train_y, "train"), (test_y, "test")):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DataFormatError(f"{folder}: {split} label {int(y.max())} outside 0..{num_classes - 1}")
    return CifarData(train_x, train_y, test_x, test_y, names, files)
