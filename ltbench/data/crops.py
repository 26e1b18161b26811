"""timm's geometric transforms on uint8 tensors: RandomResizedCrop, flip, eval resize + crop.

The crop boxes follow timm's ``RandomResizedCropAndInterpolation`` (ten tries at a random
area and log-uniform aspect ratio, then a centred fallback), drawn for a whole batch at
once. Resizing is torch's antialiased bicubic on uint8, 2-3x faster than PIL on
ImageNet-sized images and within 1-2 grey levels of it on photos (torch orders its two
passes differently, so high-contrast noise can differ by more). Small images of one size at
a small output size are resampled as a batch instead: Pillow's kernel and order (columns,
rounding, rows) as two matrix products, within a grey level of Pillow on digits too
(tested). RandomResizedCrop never draws an empty box, where timm can on images of 3 pixels
or less.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def random_resized_boxes(
    rng: np.random.Generator, sizes: np.ndarray, scale: tuple[float, float], ratio=(3 / 4, 4 / 3), tries: int = 10
) -> np.ndarray:
    """(top, left, height, width) per image of ``sizes`` (N, 2: height, width)."""
    n = len(sizes)
    h, w = sizes[:, 0].astype(np.float64), sizes[:, 1].astype(np.float64)
    area = rng.uniform(scale[0], scale[1], (n, tries)) * (h * w)[:, None]
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), (n, tries)))
    cw, ch = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    fits = (cw > 0) & (ch > 0) & (cw <= w[:, None]) & (ch <= h[:, None])
    first = fits.argmax(1)  # the first try that fits, as timm's loop stops there
    found = fits[np.arange(n), first]
    # None fits: the largest centred box within the aspect-ratio range.
    narrow, wide = w / h < min(ratio), w / h > max(ratio)
    bw = np.where(found, cw[np.arange(n), first], np.where(wide, np.round(h * max(ratio)), w))
    bh = np.where(found, ch[np.arange(n), first], np.where(narrow, np.round(w / min(ratio)), h))
    u = rng.random((n, 2))
    top = np.where(found, np.floor(u[:, 0] * (h - bh + 1)), (h - bh) // 2)
    left = np.where(found, np.floor(u[:, 1] * (w - bw + 1)), (w - bw) // 2)
    return np.stack([top, left, bh, bw], 1).astype(np.int64)


SMALL = 64  # largest side resampled as a batch; above it, image by image


def resized_crops(images: list[torch.Tensor], boxes: np.ndarray, size: int) -> torch.Tensor:
    """Each uint8 (C, H, W) image's (top, left, height, width) box resized to size x size:
    a uint8 (B, C, size, size) batch."""
    if _same_small(images, size):
        return _resample(torch.stack(images), boxes, size, crop=True)
    out = []
    for img, (top, left, h, w) in zip(images, boxes.tolist()):
        crop = img[None, :, top : top + h, left : left + w]
        out.append(F.interpolate(crop, size=(size, size), mode="bicubic", antialias=True, align_corners=False))
    return torch.cat(out)


def center_crops(images: list[torch.Tensor], size: int, crop_pct: float) -> torch.Tensor:
    """timm's eval transform on each image: shorter side to floor(size / crop_pct), then the
    centred size x size; a uint8 (B, C, size, size) batch."""
    if _same_small(images, size):
        h, w = images[0].shape[-2:]
        nh, nw, top, left = _centre(h, w, size, crop_pct)
        # The same pixels as resizing the whole image, then cropping: a box in source units.
        box = [top * h / nh, left * w / nw, size * h / nh, size * w / nw]
        return _resample(torch.stack(images), np.tile(box, (len(images), 1)), size, crop=False)
    return torch.stack([resize_center_crop(img, size, crop_pct) for img in images])


def resize_center_crop(img: torch.Tensor, size: int, crop_pct: float) -> torch.Tensor:
    """:func:`center_crops` for one image of any size."""
    h, w = img.shape[-2:]
    nh, nw, top, left = _centre(h, w, size, crop_pct)
    if (nh, nw) != (h, w):
        img = F.interpolate(img[None], size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)[0]
    return img[:, top : top + size, left : left + size]


def _centre(h: int, w: int, size: int, crop_pct: float) -> tuple[int, int, int, int]:
    """timm's eval geometry: the resized (height, width) with the shorter side at
    floor(size / crop_pct), and the top-left corner of the centred size x size crop."""
    side = math.floor(size / crop_pct)
    nh, nw = (side, int(side * w / h)) if h <= w else (int(side * h / w), side)
    return nh, nw, int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))


def _same_small(images: list[torch.Tensor], size: int) -> bool:
    # One call per image costs ~70 us of overhead whatever its size: small images of one
    # size (CIFAR, MNIST) at a small output size go through one batched resample instead,
    # whose dense weights would cost more than that when either side is large.
    shape = images[0].shape
    return max(*shape[-2:], size) <= SMALL and all(img.shape == shape for img in images)


def _bicubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = (((t - 5) * t + 8) * t - 4) * a
    return torch.where(t < 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def _weights(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int, crop: bool) -> torch.Tensor:
    """(B, out, in): PIL's antialiased bicubic weights for the span [start, start + length)
    of an axis of ``in_size`` pixels, renormalised where the kernel meets an edge: the
    span's own (``crop``: cropped, then resized, as timm's RandomResizedCrop) or the image's."""
    scale = length / out_size
    stretch = scale.clamp(min=1.0)  # a wider kernel when shrinking: the antialiasing
    centre = start[:, None] + (torch.arange(out_size) + 0.5) * scale[:, None]
    pixels = torch.arange(in_size)
    w = _bicubic(((pixels + 0.5) - centre[..., None]) / stretch[:, None, None])
    if crop:
        inside = (pixels >= start[:, None]) & (pixels < (start + length)[:, None])  # (B, in)
        w = w * inside[:, None, :]
    return w / w.sum(-1, keepdim=True)


def _resample(x: torch.Tensor, boxes, size: int, crop: bool) -> torch.Tensor:
    """Resize each image's (top, left, height, width) box of a uint8 (B, C, H, W) batch to
    size x size as Pillow does: columns first, rounded to uint8, then rows, each pass one
    batched matrix product."""
    b, c, h, w = x.shape
    top, left, bh, bw = torch.as_tensor(np.asarray(boxes), dtype=torch.float32).unbind(1)
    cols = _weights(left, bw, w, size, crop)  # (B, size, W)
    rows = _weights(top, bh, h, size, crop)  # (B, size, H)
    wide = torch.bmm(x.reshape(b, c * h, w).float(), cols.transpose(1, 2))  # (B, C*H, size)
    wide = wide.round_().clamp_(0, 255).view(b, c, h, size).transpose(1, 2).reshape(b, h, c * size)
    out = torch.bmm(rows, wide).round_().clamp_(0, 255)  # (B, size, C*size)
    return out.view(b, size, c, size).transpose(1, 2).to(torch.uint8).contiguous()


def random_flip(x: torch.Tensor, rng: np.random.Generator, p: float = 0.5) -> torch.Tensor:
    """Flip each image of a (B, C, H, W) batch horizontally with probability ``p``, in place
    (a masked copy of the whole batch costs as much as the resize at 224 px)."""
    for i in np.flatnonzero(rng.random(len(x)) < p):
        x[i] = x[i].flip(-1)
    return x
