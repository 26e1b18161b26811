"""idx files of the MNIST family (Fashion-MNIST here), raw or gzipped.

The idx format (http://yann.lecun.com/exdb/mnist/): magic = two zero bytes, a dtype code
(0x08 = uint8, the only one the MNIST family uses) and the number of dimensions; then one
big-endian uint32 size per dimension; then the data, row-major.

Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist): on Debian/Ubuntu
``apt install dataset-fashion-mnist`` installs the four ``.gz`` files under
/usr/share/datasets/fashion-mnist/; torchvision's ``FashionMNIST(root, download=True)``
keeps them in ``root/FashionMNIST/raw/`` (both ``.gz`` and unpacked).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import DataFormatError, DataIntegrityError, DataMissingError
from ._checksum import file_digest

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# md5 of Zalando's .gz files, copied from torchvision.datasets.mnist.FashionMNIST.resources.
FASHION_MNIST_GZ_MD5 = {
    "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
    "test_images": "bef4ecab320f06d8554ea6380940ec79",
    "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
}
# SHA-256 of the decompressed files. Debian re-wrote the gzip headers (no file name, its own
# mtime), so its .gz md5s differ from the ones above though the data is the same; checking
# the content covers Zalando's .gz, Debian's .gz and torchvision's unpacked files alike.
# Computed from Debian's dataset-fashion-mnist (60,000 + 10,000 images, 6,000 / 1,000 per class).
FASHION_MNIST_SHA256 = {
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class IdxData:
    train_x: np.ndarray  # uint8 (N, 1, 28, 28)
    train_y: np.ndarray  # int64
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    files: dict[str, str]  # file name -> sha256 of its decompressed content


def _bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in .gz."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataMissingError(f"idx file {path} not found") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataFormatError(f"cannot read {path}: {e}") from None


def parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Decode idx bytes; ``path`` only names the file in errors."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataFormatError(f"{path}: not a uint8 idx file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataFormatError(f"{path}: truncated idx file (header shorter than its {ndim} sizes)")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataFormatError(f"{path}: truncated idx file ({body.size} bytes of data for shape {shape})")
    return body.reshape(shape).copy()  # frombuffer is read-only; torch wants writable memory


def read_idx(path: Path) -> np.ndarray:
    """An idx file (raw or .gz) as a uint8 array of its declared shape."""
    path = Path(path)
    return parse_idx(_bytes(path), path)


def find_idx_files(root: Path) -> dict[str, Path]:
    """The four Fashion-MNIST files, keyed like FASHION_MNIST_FILES.

    Looks in ``root`` (Debian's layout, or files put there by hand) and in
    ``root/FashionMNIST/raw`` (torchvision's), preferring ``.gz`` over unpacked files.
    """
    root = Path(root)
    dirs = (root, root / "FashionMNIST" / "raw")
    found = {}
    for key, stem in FASHION_MNIST_FILES.items():
        candidates = [d / name for d in dirs for name in (stem + ".gz", stem)]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise DataMissingError(
                f"Fashion-MNIST file {stem} (or {stem}.gz) not found in {dirs[0]} or {dirs[1]}. On Debian/Ubuntu "
                f"`apt install dataset-fashion-mnist` installs them under {DEBIAN_DIR}/ (pass --root {DEBIAN_DIR}); "
                f"elsewhere `ltbench data download fashion_mnist_lt --root DIR` (torchvision's "
                f"FashionMNIST(root, download=True)) fetches them where a network exists."
            )
        found[key] = hit
    return found


def _verify(key: str, path: Path, content_sha256: str) -> None:
    # Zalando's own .gz passes on its md5; any other copy (Debian's, unpacked) on its content.
    if path.suffix == ".gz" and file_digest(path) == FASHION_MNIST_GZ_MD5[key]:
        return
    if content_sha256 != FASHION_MNIST_SHA256[key]:
        raise DataIntegrityError(
            f"{path}: sha256 of its content is {content_sha256}, the official file's is "
            f"{FASHION_MNIST_SHA256[key]}; pass --no-verify to use a custom copy"
        )


def read_fashion_mnist(root: Path, verify: bool = True) -> IdxData:
    """The full Fashion-MNIST (60,000 train, 10,000 test) from ``root``.

    Raises:
        DataMissingError: a file is missing (the message says how to get them).
        DataFormatError: a file is not a uint8 idx file, or is truncated.
        DataIntegrityError: ``verify`` and a file's content differs from the official data.
    """
    arrays, files = {}, {}
    for key, path in find_idx_files(root).items():
        data = _bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        files[path.name] = digest
        if verify:
            _verify(key, path, digest)
        arrays[key] = parse_idx(data, path)
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
            raise DataFormatError(
                f"Fashion-MNIST {split} files in {root}: images {x.shape} and labels {y.shape} do not match "
                f"(expected (N, 28, 28) and (N,))"
            )
        if len(y) and y.max() >= len(FASHION_MNIST_CLASSES):
            raise DataFormatError(f"Fashion-MNIST {split} labels in {root}: label {int(y.max())} outside 0..9")
    return IdxData(
        arrays["train_images"].reshape(-1, 1, 28, 28),
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"].reshape(-1, 1, 28, 28),
        arrays["test_labels"].astype(np.int64),
        FASHION_MNIST_CLASSES,
        files,
    )
