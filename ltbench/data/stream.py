"""Streamed data for large sets (ImageNet-LT, Places-LT, iNaturalist).

Workers decode with PIL and run timm's geometric and colour transforms, then hand over
uint8 tensors (a quarter of float32's bytes through pinned memory); conversion to float,
normalisation and random erasing run on whole batches on the device, as timm's prefetcher
does.

Reproducibility without rebuilding the loader: the sampler draws each epoch's order from the
epoch seed and pairs every index with a seed of its own, with which the dataset seeds the
transform's random draws. An image's augmentation therefore depends on (seed, epoch,
position) only, not on which worker decodes it or how many there are, and the workers can
stay alive across epochs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from ..errors import DataFormatError
from ..recipes import DatasetSpec
from .sources import Split

_SEED_SPACE = 2**62


class EpochSampler(Sampler):
    """Yields ``(index, sample_seed)``: a seeded permutation (or the plain order), re-drawn
    whenever :meth:`set_epoch` gives a new seed."""

    def __init__(self, n: int, shuffle: bool):
        self.n, self.shuffle, self.seed = n, shuffle, 0

    def set_epoch(self, seed: int) -> None:
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, _SEED_SPACE, (self.n,), generator=g)
        return iter(zip(order.tolist(), seeds.tolist()))


class ImageListDataset(Dataset):
    """Images named by paths relative to ``root``; an unreadable one stops the run unless
    ``skip_unreadable``, when it is dropped from its batch and counted."""

    def __init__(self, root: Path, split: Split, transform, skip_unreadable: bool = False, seeds_numpy: bool = True):
        self.root, self.paths, self.labels = Path(root), split.paths, split.labels
        self.transform, self.skip = transform, skip_unreadable
        self.seeds_numpy = seeds_numpy  # only RandAugment draws from NumPy, and seeding it costs ~60 us

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, int]):
        from PIL import Image

        i, seed = item
        path = self.root / self.paths[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, ValueError) as e:
            if self.skip:
                return None
            raise DataFormatError(
                f"cannot decode image {path}: {e} (--set skip_unreadable=true skips such images)"
            ) from None
        # timm's transforms draw from `random`, NumPy (RandAugment's choice of ops) and torch's
        # CPU generator: seed all three for this image. In the training process itself
        # (num_workers=0) they are put back afterwards, so its own streams are untouched.
        inline = get_worker_info() is None
        generator = torch.random.default_generator
        if inline:
            states = random.getstate(), generator.get_state(), np.random.get_state() if self.seeds_numpy else None
        random.seed(seed)
        generator.manual_seed(seed)
        if self.seeds_numpy:
            np.random.seed(seed % 2**32)
        try:
            x = self.transform(img)
        finally:
            if inline:
                random.setstate(states[0])
                generator.set_state(states[1])
                if self.seeds_numpy:
                    np.random.set_state(states[2])
        return x, int(self.labels[i])


def _posterize(img, bits_to_keep, **_):
    # RandAugment's "inc1" policy (DeiT, LiVT) asks for 0 bits at magnitude 10, which Pillow
    # >= 11 rejects; older Pillow, which those papers ran, returned a black image.
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _fix_timm_posterize() -> None:
    from timm.data import auto_augment

    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = _posterize


def _collate(batch):
    items = [b for b in batch if b is not None]
    skipped = len(batch) - len(items)
    if not items:
        return None, None, skipped
    x, y = default_collate(items)
    return x, y, skipped


class StreamBatches:
    """The same interface as :class:`~ltbench.data.memory.DeviceBatches`, for files on disk.

    Two loaders (train, eval) are built on first use and kept, with their workers, for the
    whole run.
    """

    def __init__(self, root: Path, split: Split, spec: DatasetSpec, img_size: int, device, workers: int = 4):
        from timm.data import create_transform
        from timm.data.random_erasing import RandomErasing

        _fix_timm_posterize()
        self.device = torch.device(device)
        self.split, self.root, self.spec, self.workers = split, root, spec, workers
        self.skipped = 0
        aug = spec.augment
        common = dict(input_size=img_size, interpolation="bicubic", use_prefetcher=True)
        self.train_tf = create_transform(
            is_training=True,
            scale=(aug.rrc_scale_min, 1.0),
            hflip=0.5 if aug.flip else 0.0,
            auto_augment=aug.auto_augment or None,
            color_jitter=aug.color_jitter or None,  # explicit: timm's default would add 0.4
            **common,
        )
        self.eval_tf = create_transform(is_training=False, crop_pct=0.875, **common)
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(spec.std, device=self.device).view(1, -1, 1, 1) * 255
        self.erase = RandomErasing(aug.re_prob, mode="const", device=self.device) if aug.re_prob > 0 else None
        self._loaders: dict[tuple, DataLoader] = {}

    def __len__(self) -> int:
        return len(self.split)

    def _loader(self, train: bool, batch_size: int) -> DataLoader:
        key = (train, batch_size)
        if key not in self._loaders:
            transform = self.train_tf if train else self.eval_tf
            uses_numpy = train and bool(self.spec.augment.auto_augment)
            ds = ImageListDataset(self.root, self.split, transform, self.spec.skip_unreadable, uses_numpy)
            self._loaders[key] = DataLoader(
                ds,
                batch_size=batch_size,
                sampler=EpochSampler(len(ds), shuffle=train),
                drop_last=train,
                num_workers=self.workers,
                collate_fn=_collate,
                # Its own generator: a new iterator then never draws from the training
                # process's torch RNG (every image is re-seeded anyway).
                generator=torch.Generator(),
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0,
            )
        return self._loaders[key]

    def _to_device(self, loader: DataLoader, train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, skipped in loader:
            self.skipped += skipped
            if x is None:
                continue
            x = x.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
            if train and self.erase is not None:
                x = self.erase(x)
            yield x, y.to(self.device, non_blocking=True)

    def train_batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = self._loader(True, min(batch_size, len(self) - len(self) % 2))
        loader.sampler.set_epoch(seed)
        return self._to_device(loader, train=True)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._to_device(self._loader(False, batch_size), train=False)
