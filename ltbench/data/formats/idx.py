"""idx files of the MNIST family (Fashion-MNIST here), raw or gzipped.

Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist): Debian's package
``dataset-fashion-mnist`` installs the four ``.gz`` files under
/usr/share/datasets/fashion-mnist/; torchvision keeps them in ``DIR/FashionMNIST/raw/``.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataFormatError, DataIntegrityError, DataMissingError

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# SHA-256 of the decompressed files: the same for Zalando's .gz (whose md5s torchvision
# lists) and Debian's re-compressed .gz, so one check covers both copies.
FASHION_MNIST_SHA256 = {
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@dataclass(frozen=True)
class IdxData:
    train_x: np.ndarray  # uint8 (N, 1, 28, 28)
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    files: dict[str, str]  # file name -> sha256 of its decompressed content


def _bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataFormatError(f"cannot read {path}: {e}") from None


def parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataFormatError(f"{path}: not a uint8 idx file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataFormatError(f"{path}: truncated idx file ({body.size} bytes of data for shape {shape})")
    return body.reshape(shape).copy()  # frombuffer is read-only; torch wants writable memory


def read_idx(path: Path) -> np.ndarray:
    """An idx file as a uint8 array of its declared shape."""
    return parse_idx(_bytes(Path(path)), Path(path))


def find_idx_files(root: Path) -> dict[str, Path]:
    """The four files in Debian's layout (in root), torchvision's (root/FashionMNIST/raw), raw or .gz."""
    root = Path(root)
    found = {}
    for key, stem in FASHION_MNIST_FILES.items():
        candidates = [d / name for d in (root, root / "FashionMNIST" / "raw") for name in (stem + ".gz", stem)]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise DataMissingError(
                f"Fashion-MNIST file {stem}(.gz) not found in {root} or {root / 'FashionMNIST' / 'raw'}. On "
                f"Debian/Ubuntu `apt install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist/; "
                f"elsewhere `ltbench data download fashion_mnist_lt --root DIR` (torchvision's download) where a "
                f"network exists."
            )
        found[key] = hit
    return found


def read_fashion_mnist(root: Path, verify: bool = True) -> IdxData:
    """The full Fashion-MNIST (60,000 train, 10,000 test) from ``root``.

    Raises:
        DataMissingError, DataFormatError: files missing or malformed.
        DataIntegrityError: ``verify`` and a file's content differs from the official data.
    """
    arrays, files = {}, {}
    for key, path in find_idx_files(root).items():
        data = _bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        files[path.name] = digest
        if verify and digest != FASHION_MNIST_SHA256[key]:
            raise DataIntegrityError(
                f"{path}: sha256 of its content is {digest}, the official file's is {FASHION_MNIST_SHA256[key]}; "
                f"pass --no-verify to use a custom copy"
            )
        arrays[key] = parse_idx(data, path)
    return IdxData(
        arrays["train_images"].reshape(-1, 1, 28, 28), arrays["train_labels"].astype(np.int64),
        arrays["test_images"].reshape(-1, 1, 28, 28), arrays["test_labels"].astype(np.int64),
        FASHION_MNIST_CLASSES, files,
    )
