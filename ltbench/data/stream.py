"""Streamed data for large sets (ImageNet-LT, Places-LT, iNaturalist): PIL decoding and timm's
transforms in DataLoader workers, pinned memory and non-blocking copies to the device."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..errors import DataFormatError
from ..recipes import DatasetSpec
from .sources import Split


class ImageListDataset(Dataset):
    """Images named by paths relative to ``root``; an unreadable one stops the run unless
    ``skip_unreadable``, when it is dropped from its batch and counted."""

    def __init__(self, root: Path, split: Split, transform, skip_unreadable: bool = False):
        self.root, self.paths, self.labels = Path(root), split.paths, split.labels
        self.transform, self.skip = transform, skip_unreadable

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

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
        return self.transform(img), int(self.labels[i])


def _collate(batch):
    items = [b for b in batch if b is not None]
    skipped = len(batch) - len(items)
    if not items:
        return None, None, skipped
    x, y = default_collate(items)
    return x, y, skipped


class StreamBatches:
    """The same interface as :class:`~ltbench.data.memory.DeviceBatches`, for files on disk."""

    def __init__(self, root: Path, split: Split, spec: DatasetSpec, img_size: int, device, workers: int = 4):
        from timm.data import create_transform

        self.device = torch.device(device)
        self.split, self.root, self.spec, self.workers = split, root, spec, workers
        self.skipped = 0
        aug = spec.augment
        common = dict(input_size=img_size, mean=spec.mean, std=spec.std, interpolation="bicubic")
        self.train_tf = create_transform(
            is_training=True,
            scale=(aug.rrc_scale_min, 1.0),
            hflip=0.5 if aug.flip else 0.0,
            auto_augment=aug.auto_augment or None,
            re_prob=aug.re_prob,
            **common,
        )
        self.eval_tf = create_transform(is_training=False, crop_pct=0.875, **common)

    def __len__(self) -> int:
        return len(self.split)

    def _loader(self, transform, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False) -> DataLoader:
        ds = ImageListDataset(self.root, self.split, transform, self.spec.skip_unreadable)
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
            persistent_workers=False,
        )

    def _to_device(self, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, skipped in loader:
            self.skipped += skipped
            if x is None:
                continue
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batch_size = min(batch_size, len(self) - len(self) % 2)
        return self._to_device(self._loader(self.train_tf, batch_size, True, seed, drop_last=True))

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._to_device(self._loader(self.eval_tf, batch_size, False))
