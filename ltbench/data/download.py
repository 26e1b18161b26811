"""Explicit downloads through torchvision, where a network exists (never a side effect of loading)."""

from __future__ import annotations

from pathlib import Path

from ..config.specs import DatasetSpec
from ..core.errors import DataError

MANUAL = {
    "split_lists": "the images (ImageNet: https://image-net.org, Places365-Standard 256x256: "
    "http://places2.csail.mit.edu) and the OLTR split lists "
    "(https://github.com/zhmiao/OpenLongTailRecognition-OLTR)",
    "inat2018": "iNaturalist 2018 (https://github.com/visipedia/inat_comp/tree/master/2018)",
}


def download_dataset(spec: DatasetSpec, root: Path) -> Path:
    """Download the source files of ``spec`` into ``root``; returns ``root``."""
    from torchvision import datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    if spec.source in ("cifar10", "cifar100"):
        from .formats.cifar import download_cifar

        download_cifar(root, 10 if spec.source == "cifar10" else 100)
    elif spec.source == "fashion_mnist":
        for train in (True, False):
            tvd.FashionMNIST(str(root), train=train, download=True)
    elif spec.source in MANUAL:
        raise DataError(f"{spec.name} cannot be downloaded by ltbench: get {MANUAL[spec.source]} and pass --root")
    else:
        raise DataError(f"{spec.name} ships inside a Python package; there is nothing to download")
    return root
