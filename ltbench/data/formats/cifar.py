"""CIFAR-10 / CIFAR-100 python pickles in torchvision's on-disk layout.

Users get them from https://www.cs.toronto.edu/~kriz/cifar.html (the "python version"
archives cifar-10-python.tar.gz / cifar-100-python.tar.gz), or with
``ltbench data download cifar10_lt --root DIR`` (torchvision's ``download=True``) where a
network exists. Layout::

    DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    DIR/cifar-100-python/{train, test, meta}

Each batch is a pickle of a dict with bytes keys: b"data" (uint8, N x 3072, channel-major
32x32 planes) and b"labels" (CIFAR-10) or b"fine_labels" (CIFAR-100); the meta file holds
b"label_names" / b"fine_label_names". The training order is the concatenation of the
batches, exactly torchvision's ``targets`` order, which the CIFAR-LT protocol indexes into.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import DataFormatError, DataIntegrityError, DataMissingError
from ._checksum import file_digest

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

# File names and md5s of the official files, copied from torchvision.datasets.cifar.
CIFAR_FILES: dict[int, dict] = {
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
    train_y: np.ndarray  # int64, torchvision's targets order
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    files: dict[str, str]  # file name -> md5 found


def _spec(num_classes: int) -> dict:
    if num_classes not in CIFAR_FILES:
        raise ValueError(f"CIFAR has 10 or 100 classes, not {num_classes}")
    return CIFAR_FILES[num_classes]


def _missing(missing: Path | str, root: Path, num_classes: int) -> DataMissingError:
    spec = _spec(num_classes)
    first = spec["train"][0]
    return DataMissingError(
        f"CIFAR-{num_classes}: {missing} not found. Expected {root}/{spec['folder']}/{first} ... "
        f"(torchvision's layout: {spec['folder']}/{{{', '.join(spec['train'] + [spec['test'], spec['meta']])}}}). "
        f"Get the python version (cifar-{num_classes}-python.tar.gz) from {CIFAR_URL} and unpack it in {root}, "
        f"or run `ltbench data download cifar{num_classes}_lt --root {root}` (torchvision's --download) "
        f"where a network exists."
    )


def _folder(root: Path, num_classes: int) -> Path:
    """``root`` may be the parent of the CIFAR folder or the folder itself."""
    name = _spec(num_classes)["folder"]
    folder = root if root.name == name else root / name
    if not folder.is_dir():
        raise _missing(f"{folder}/", root, num_classes)
    return folder


def _check_files(root: Path, num_classes: int, verify: bool) -> tuple[Path, dict[str, str]]:
    """All files present (and official when ``verify``) before any unpickling."""
    spec = _spec(num_classes)
    folder = _folder(root, num_classes)
    parent = folder.parent if root == folder else root
    names = [*spec["train"], spec["test"], spec["meta"]]
    for name in names:  # report a missing file before a checksum of another one
        if not (folder / name).is_file():
            raise _missing(folder / name, parent, num_classes)
    files = {}
    for name in names:
        path = folder / name
        files[name] = file_digest(path, "md5")
        if verify and files[name] != spec["md5"][name]:
            raise DataIntegrityError(
                f"{path}: md5 {files[name]}, the official file has {spec['md5'][name]}; pass --no-verify to use "
                f"a custom copy (the run's record then says it is unverified)"
            )
    return folder, files


# What a CIFAR batch may reference: NumPy's array reconstruction (both module spellings) and
# the bytes codec of protocol-2 pickles. Anything else (os.system, eval, ...) is refused, so a
# crafted file runs no code, whatever its checksum.
_CIFAR_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """Builtin containers and NumPy arrays only."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR batch never does")
        return super().find_class(module, name)


def _load(path: Path, keys: tuple[bytes, ...]) -> dict:
    try:
        with open(path, "rb") as f:
            entry = _CifarUnpickler(f, encoding="bytes").load()  # written by Python 2: keys are bytes
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DataFormatError(f"{path} is not a CIFAR python pickle: {e}") from None
    if not isinstance(entry, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, found {type(entry).__name__}")
    for key in keys:
        if key not in entry:
            raise DataFormatError(f"{path}: missing key {key!r} (not a CIFAR python pickle)")
    return entry


def _labels(entry: dict, key: bytes, path: Path, num_classes: int) -> np.ndarray:
    y = np.asarray(entry[key], dtype=np.int64)
    if y.ndim != 1:
        raise DataFormatError(f"{path}: {key!r} is not a list of labels")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y[(y < 0) | (y >= num_classes)][0])
        raise DataFormatError(f"{path}: label {bad} outside 0..{num_classes - 1}")
    return y


def _names(folder: Path, spec: dict) -> tuple[str, ...]:
    entry = _load(folder / spec["meta"], (spec["names_key"],))
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in entry[spec["names_key"]])


def _split(folder: Path, names: list[str], spec: dict, num_classes: int, images: bool):
    xs, ys = [], []
    for name in names:
        path = folder / name
        entry = _load(path, (b"data", spec["label_key"]) if images else (spec["label_key"],))
        y = _labels(entry, spec["label_key"], path, num_classes)
        if images:
            x = np.asarray(entry[b"data"], dtype=np.uint8)
            if x.ndim != 2 or x.shape != (len(y), 3072):
                raise DataFormatError(f"{path}: b'data' has shape {x.shape}, expected ({len(y)}, 3072)")
            xs.append(x)
        ys.append(y)
    y = np.concatenate(ys)
    # Rows are 1024 red, then 1024 green, then 1024 blue values, each plane row-major: NCHW.
    x = np.concatenate(xs).reshape(-1, 3, 32, 32) if images else None
    return x, y


def read_cifar(root: Path, num_classes: int, verify: bool = True) -> CifarData:
    """Read the CIFAR-``num_classes`` pickles under ``root`` (or the folder itself).

    Raises:
        DataMissingError: the folder or a file is missing.
        DataIntegrityError: ``verify`` and a file's md5 differs from the official one.
        DataFormatError: a file is not a CIFAR pickle, or a label is out of range.
    """
    spec = _spec(num_classes)
    folder, files = _check_files(Path(root), num_classes, verify)
    train_x, train_y = _split(folder, spec["train"], spec, num_classes, images=True)
    test_x, test_y = _split(folder, [spec["test"]], spec, num_classes, images=True)
    return CifarData(train_x, train_y, test_x, test_y, _names(folder, spec), files)


def read_cifar_labels(
    root: Path, num_classes: int, verify: bool = True
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], dict[str, str]]:
    """``(train_y, test_y, class_names, files)`` without building the image arrays."""
    spec = _spec(num_classes)
    folder, files = _check_files(Path(root), num_classes, verify)
    _, train_y = _split(folder, spec["train"], spec, num_classes, images=False)
    _, test_y = _split(folder, [spec["test"]], spec, num_classes, images=False)
    return train_y, test_y, _names(folder, spec), files


def download_cifar(root: Path, num_classes: int) -> Path:
    """Fetch the official archive with torchvision (needs a network); returns ``root``."""
    from torchvision import datasets as tvd

    cls = {10: tvd.CIFAR10, 100: tvd.CIFAR100}[num_classes]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(str(root), train=train, download=True)
    return root
