"""Streamed data for large sets (ImageNet-LT, Places-LT, iNaturalist).

A worker builds a whole batch: it decodes the batch's JPEGs in one libjpeg-turbo call,
draws every image's RandomResizedCrop box at once and resizes with torch's antialiased
bicubic on uint8 (timm's geometry, without PIL). Only the colour policies, RandAugment
and colour jitter, still go through PIL per image, as timm runs them. Batches leave the
worker as uint8 (a quarter of float32's bytes through pinned memory); conversion to float,
normalisation and random erasing run on the device, as timm's prefetcher does.

Reproducibility without rebuilding the loader: the sampler draws each epoch's order from the
epoch seed and gives every batch a seed of its own, from which the worker draws that batch's
augmentation. A batch's images therefore depend on (seed, epoch, batch) only, not on which
worker builds it or how many there are, and the workers stay alive across epochs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from ..config.specs import DatasetSpec
from ..core.errors import DataFormatError
from .crops import center_crops, random_flip, random_resized_boxes, resized_crops
from .decode import decode_rgb
from .memory import random_erasing
from .samplers import epoch_indices
from .sources import Split

_SEED_SPACE = 2**62
EVAL_CROP_PCT = 0.875  # timm's default centre crop for evaluation
DECODE_CHUNK = 64  # images a worker decodes before cropping them


class EpochBatchSampler(Sampler):
    """Yields ``(indices, batch_seed)``: a seeded permutation (or the plain order) cut into
    batches, re-drawn whenever :meth:`set_epoch` gives a new seed.

    With ``labels`` and a ``sampler`` other than ``instance``, a shuffled epoch is drawn by
    :func:`~ltbench.data.samplers.epoch_indices` (class-aware, with replacement, ``n`` draws).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, drop_last: bool, labels=None, sampler: str = "instance"):
        self.n, self.batch_size, self.shuffle, self.drop_last, self.seed = n, batch_size, shuffle, drop_last, 0
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.sampler, self.epoch, self.epochs = sampler, 1, 1
        if sampler != "instance" and self.labels is None:
            raise ValueError(f"sampler {sampler!r} needs the labels")

    def set_epoch(self, seed: int, epoch: int = 1, epochs: int = 1) -> None:
        self.seed, self.epoch, self.epochs = seed, epoch, epochs

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        if not self.shuffle:
            order = torch.arange(self.n).tolist()
        elif self.sampler == "instance":
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = epoch_indices(self.sampler, self.labels, g, self.epoch, self.epochs).tolist()
        seeds = torch.randint(0, _SEED_SPACE, (len(self),), generator=g).tolist()
        for b, seed in enumerate(seeds):
            yield order[b * self.batch_size : (b + 1) * self.batch_size], seed


class ImageListBatches(Dataset):
    """Batches of images named by paths relative to ``root``, keyed by ``(indices, seed)``.

    Returns ``(uint8 images (B, 3, S, S), labels, skipped indices)``. An unreadable image stops the
    run unless ``skip_unreadable``, when it is dropped from its batch and counted.
    """

    def __init__(self, root: Path, split: Split, size: int, train: bool, augment=None, colour=None, skip=False):
        self.root, self.paths, self.labels = Path(root), split.paths, np.asarray(split.labels)
        self.size, self.train, self.augment, self.colour, self.skip = size, train, augment, colour, skip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[list[int], int]):
        indices, seed = item
        rng = np.random.default_rng(seed)
        crops, kept = [], []
        # A few dozen images at a time: a whole eval batch of large JPEGs, decoded at once,
        # would hold about a gigabyte per worker before any crop shrinks it.
        for start in range(0, len(indices), DECODE_CHUNK):
            chunk = indices[start : start + DECODE_CHUNK]
            paths = [f"{self.root}/{self.paths[i]}" for i in chunk]  # str: pathlib costs ~15 us per image
            images = []
            for i, path, img in zip(chunk, paths, decode_rgb(paths)):
                if isinstance(img, Exception):
                    if not self.skip:
                        raise DataFormatError(
                            f"cannot decode image {path}: {img} (--set skip_unreadable=true skips such images)"
                        )
                    continue
                images.append(img)
                kept.append(i)
            if images:
                crops.append(self._crop(images, rng) if self.train else center_crops(images, self.size, EVAL_CROP_PCT))
        skipped = sorted(set(indices) - set(kept))
        if not crops:
            return None, None, skipped
        x = torch.cat(crops)
        if self.train and self.augment.flip:
            x = random_flip(x, rng)
        if self.train and self.colour is not None:
            x = self._colour(x, seed)
        return x, torch.as_tensor(self.labels[kept], dtype=torch.long), skipped

    def _crop(self, images: list[torch.Tensor], rng: np.random.Generator) -> torch.Tensor:
        sizes = np.array([img.shape[-2:] for img in images])
        boxes = random_resized_boxes(rng, sizes, (self.augment.rrc_scale_min, 1.0))
        return resized_crops(images, boxes, self.size)

    def _colour(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """timm's colour stage (RandAugment or colour jitter), per image through PIL. It draws
        from ``random``, NumPy and torch: seeded from the batch's seed; in the training
        process itself (num_workers=0) they are put back afterwards."""
        from PIL import Image

        inline = get_worker_info() is None
        generator = torch.random.default_generator
        if inline:
            states = random.getstate(), np.random.get_state(), generator.get_state()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        generator.manual_seed(seed)
        try:
            hwc = x.permute(0, 2, 3, 1).numpy()
            out = [np.asarray(self.colour(Image.fromarray(img))) for img in hwc]
        finally:
            if inline:
                random.setstate(states[0])
                np.random.set_state(states[1])
                generator.set_state(states[2])
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


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


def colour_transform(spec: DatasetSpec, img_size: int):
    """timm's colour stage for the recipe (RandAugment, or colour jitter), None when it has none."""
    from timm.data.transforms_factory import transforms_imagenet_train

    _fix_timm_posterize()  # before timm builds the ops, which look theirs up once
    aug = spec.augment
    _, colour, _ = transforms_imagenet_train(
        img_size,
        auto_augment=aug.auto_augment or None,
        color_jitter=aug.color_jitter or None,  # explicit: timm's default would add 0.4
        interpolation="bicubic",
        mean=spec.mean,
        separate=True,
    )
    return colour if colour.transforms else None


def _keep(item):
    return item  # the worker already built the batch


class StreamBatches:
    """The same interface as :class:`~ltbench.data.memory.DeviceBatches`, for files on disk.

    Loaders (train, eval) are built on first use and kept, with their workers, for the
    whole run.
    """

    def __init__(
        self,
        root: Path,
        split: Split,
        spec: DatasetSpec,
        img_size: int,
        device,
        workers: int = 4,
        sampler: str = "instance",
    ):
        self.device = torch.device(device)
        self.sampler = sampler  # a name in ltbench.data.samplers.SAMPLERS (training order)
        self.split, self.root, self.spec, self.workers, self.img_size = split, root, spec, workers, img_size
        self.unreadable: set[str] = set()  # paths of the files skip_unreadable dropped
        self.colour = colour_transform(spec, img_size)
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(spec.std, device=self.device).view(1, -1, 1, 1) * 255
        self.erase = random_erasing(spec.augment.re_prob, self.device)
        self._loaders: dict[tuple, DataLoader] = {}

    def __len__(self) -> int:
        return len(self.split)

    def _loader(self, train: bool, batch_size: int) -> DataLoader:
        key = (train, batch_size)
        if key not in self._loaders:
            spec = self.spec
            ds = ImageListBatches(
                self.root, self.split, self.img_size, train, spec.augment, self.colour, spec.skip_unreadable
            )
            self._loaders[key] = DataLoader(
                ds,
                batch_size=None,  # the sampler hands out whole batches
                sampler=EpochBatchSampler(
                    len(ds), batch_size, shuffle=train, drop_last=train, labels=ds.labels, sampler=self.sampler
                ),
                num_workers=self.workers,
                collate_fn=_keep,
                # Its own generator: a new iterator then never draws from the training
                # process's torch RNG (every batch is seeded anyway).
                generator=torch.Generator(),
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0,
            )
        return self._loaders[key]

    def _to_device(self, loader: DataLoader, train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, skipped in loader:
            self.unreadable.update(self.split.paths[i] for i in skipped)
            if x is None:
                continue
            x = x.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
            if train and self.erase is not None:
                x = self.erase(x)
            yield x, y.to(self.device, non_blocking=True)

    def train_batches(
        self, batch_size: int, seed: int, epoch: int = 1, epochs: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = self._loader(True, min(batch_size, len(self) - len(self) % 2))
        # A generator: the seed is set when iteration starts, just before the loader's
        # iterator is made, so a second call cannot re-seed an epoch that has not started.
        loader.sampler.set_epoch(seed, epoch, epochs)
        yield from self._to_device(loader, train=True)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._to_device(self._loader(False, batch_size), train=False)
