"""In-memory data on the training device: uint8 storage, batched augmentation.

After airbench's CifarLoader: the whole set sits on the device as uint8, each epoch is a
random permutation (or a class-aware draw, see
:mod:`ltbench.data.samplers`) sliced into batches, and augmentation (random translation, flip,
RandAugment, resize, normalisation, random erasing) runs on whole batches, never per sample.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..config.specs import AugmentSpec
from .samplers import epoch_indices

AUGMENT_CHUNK = 1024  # images per RandAugment call


class DeviceBatches:
    """Batches of one split, kept on ``device`` as uint8 and normalised on the fly.

    Args:
        images: uint8 array (N, C, H, W).
        labels: int array (N,).
        mean, std: per-channel normalisation in [0, 1] pixel units.
        device: where the data and batches live.
        out_size: resize batches to this square size (0 keeps the native size).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean,
        std,
        device,
        out_size: int = 0,
        aug: AugmentSpec | None = None,
        sampler: str = "instance",
        views: int = 1,
    ):
        self.aug = aug or AugmentSpec()
        self.views = views  # > 1: each training image augmented this many times, (B, V, C, H, W)
        self.sampler = sampler  # a name in ltbench.data.samplers.SAMPLERS
        self.unreadable: set[str] = set()  # the streamed path's dropped files; none here
        self.x = torch.as_tensor(images, device=device)
        self.y = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.out_size = out_size
        self.randaugment = None
        if self.aug.auto_augment:
            from .randaugment import BatchRandAugment

            self.randaugment = BatchRandAugment(self.aug.auto_augment, mean, images.shape[-1])
        self.erase = random_erasing(self.aug.re_prob, self.device)

    def __len__(self) -> int:
        return len(self.y)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        if self.out_size and self.out_size != x.shape[-1]:
            x = F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
        return x

    def train_batches(
        self, batch_size: int, seed: int, epoch: int = 1, epochs: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented batches; the last incomplete batch is dropped.

        The order comes from the sampler (``epoch`` of ``epochs``, 1-based, for the
        progressive one); ``instance`` is a plain seeded permutation.
        """
        n = len(self)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        batch_size = min(batch_size, n - n % 2)  # timm's Mixup needs an even batch
        perm = epoch_indices(self.sampler, self.y, generator, epoch, epochs).to(self.device)
        starts = range(0, n - batch_size + 1, batch_size)
        # RandAugment runs on several batches at once: its cost is mostly per call.
        per_call = max(1, AUGMENT_CHUNK // batch_size) if self.randaugment is not None else 1
        for first in range(0, len(starts), per_call):
            indices = [perm[start : start + batch_size] for start in starts[first : first + per_call]]
            views = [self._augment(indices, batch_size, generator) for _ in range(self.views)]
            for i, idx in enumerate(indices):
                x = views[0][i] if self.views == 1 else torch.stack([v[i] for v in views], dim=1)
                yield x, self.y[idx]

    def _augment(self, indices, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        """One augmented, normalised view of each batch of ``indices`` (one random draw each)."""
        xs = [self._shift_and_flip(self.x[idx], generator) for idx in indices]
        if self.randaugment is not None:  # at the native size, before any upsampling
            xs = self.randaugment(torch.cat(xs), generator).split(batch_size)
        out = []
        for x in xs:
            x = self._finish(x)
            if self.erase is not None:  # on the normalised batch, as timm's prefetcher does
                x = self.erase(x)
            out.append(x)
        return out

    def _shift_and_flip(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.aug.crop_pad:
            x = random_translate(x, self.aug.crop_pad, generator)
        if self.aug.flip:
            x = random_flip(x, generator)
        return x

    def view_batches(self, batch_size: int, views: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image in order, augmented ``views`` times as in training: ``(B, V, C, H, W)``
        batches and their labels, one seeded stream (the same views on every call)."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        for start in range(0, len(self), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(self)), device=self.device)
            drawn = [self._augment([idx], len(idx), generator)[0] for _ in range(views)]
            yield torch.stack(drawn, dim=1), self.y[idx]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self._finish(self.x[start : start + batch_size]), self.y[start : start + batch_size]


def _rand(shape, generator: torch.Generator, device, high: int) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=generator, device=generator.device).to(device)


def random_translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels in x and y, filling with zeros (one gather)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = _rand((b,), generator, x.device, 2 * pad + 1)
    dx = _rand((b,), generator, x.device, 2 * pad + 1)
    rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] + dx[:, None]  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip a random half of the batch horizontally."""
    mask = _rand((x.shape[0],), generator, x.device, 2).bool().view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(3), x)


def random_erasing(prob: float, device):
    """timm's RandomErasing as DeiT and MAE's fine-tuning run it ("pixel": the erased box is
    filled with normal noise from torch's generator, which each epoch seeds); None when off."""
    if prob <= 0:
        return None
    from timm.data.random_erasing import RandomErasing

    return RandomErasing(prob, mode="pixel", device=device)
