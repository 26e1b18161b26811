"""timm's RandAugment on whole uint8 batches, on the device, with per-image draws.

timm parses the policy string (``rand-m9-mstd0.5-inc1``: the ops, their probability,
magnitude and its noise, the number of layers) and this module reads the ops it built. Each
image then draws, as timm's PIL version does per image: which op each layer applies (uniform
with replacement, or timm's weights without), whether it fires (probability ``p``), its
magnitude (Gaussian noise, clipped) and its sign. The images that drew an op are gathered
and transformed together, so a batch costs a few dozen tensor calls whatever its size.

The ops follow Pillow's arithmetic (look-up tables, blends that truncate, Pillow's grey
weights, 3x3 smoothing with the border kept, affine maps sampled at pixel centres with
Pillow's bicubic taps and the fill colour outside), so results match timm's PIL ops to
floating-point rounding: a pixel in a thousand may differ by one grey level. Tests compare
every op with timm's.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

_GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # Image.blend: degenerate + factor * (x - degenerate), clipped, then truncated to uint8.
    return (degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)).clamp_(0, 255).floor_()


def _grey(x: torch.Tensor) -> torch.Tensor:
    # Pillow's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16.
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.floor((19595 * r + 38470 * g + 7471 * b + 32768) / 65536)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(256, dtype=x.dtype, device=x.device).expand(x.shape[0], x.shape[1], 256)


def _histograms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, c = x.shape[:2]
    flat = x.reshape(n * c, -1).long()
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, flat, torch.ones_like(flat))
    return hist.view(n, c, 256), flat.amax(1).view(n, c)


def auto_contrast_lut(x: torch.Tensor, level=None) -> torch.Tensor:
    # ImageOps.autocontrast: each channel's [min, max] stretched to [0, 255], truncated.
    lo, hi = x.amin((2, 3))[..., None], x.amax((2, 3))[..., None]
    scale = 255.0 / (hi - lo).clamp(min=1)
    i = _identity(x)
    return torch.where(hi > lo, (i * scale - lo * scale).floor().clamp(0, 255), i)


def equalize_lut(x: torch.Tensor, level=None) -> torch.Tensor:
    # ImageOps.equalize, per channel: a step of (pixels - count of the top value) // 255.
    hist, top = _histograms(x)
    last = hist.gather(2, top[..., None])
    step = (x.shape[2] * x.shape[3] - last) // 255
    before = hist.cumsum(2) - hist  # pixels below each value
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp(max=255).to(x.dtype)
    flat = ((hist > 0).sum(2, keepdim=True) <= 1) | (step == 0)
    return torch.where(flat, _identity(x), lut)


def invert_lut(x: torch.Tensor, level=None) -> torch.Tensor:
    return 255 - _identity(x)


def posterize_lut(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    # bits <= 0 gives black, as the Pillow of the papers did (see stream._posterize).
    bits = bits.view(-1, 1, 1)
    drop = 2.0 ** (8 - bits.clamp(0, 8))
    i = _identity(x)
    return torch.where(bits <= 0, torch.zeros_like(i), torch.floor(i / drop) * drop)


def solarize_lut(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    i = _identity(x)
    return torch.where(i >= threshold.view(-1, 1, 1), 255 - i, i)


def solarize_add_lut(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    i = _identity(x)
    return torch.where(i < 128, (i + add.view(-1, 1, 1)).clamp(max=255), i)


def apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map each image's channel through its own 256-entry table: (N, C, 256)."""
    n, c, h, w = x.shape
    return lut.gather(2, x.reshape(n, c, h * w).long()).view(n, c, h, w)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    # ImageFilter.SMOOTH (3x3, centre 5, / 13), rounded; Pillow's 3x3 filters keep the border.
    c = x.shape[1]
    kernel = torch.ones(c, 1, 3, 3, dtype=x.dtype, device=x.device)
    kernel[:, :, 1, 1] = 5
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel / 13, groups=c).add_(0.5).floor_().clamp_(0, 255)
    return out


# What each enhancement blends away from: ImageEnhance's "degenerate" image.
_DEGENERATE = {
    "grey": lambda x: _grey(x).expand_as(x),
    "mean": lambda x: torch.floor(_grey(x).mean((1, 2, 3), keepdim=True) + 0.5).expand_as(x),
    "black": torch.zeros_like,
    "smooth": _smooth,
}
_BLEND = {
    name + suffix: kind
    for name, kind in (("Color", "grey"), ("Contrast", "mean"), ("Brightness", "black"), ("Sharpness", "smooth"))
    for suffix in ("", "Increasing")
}
_LUT = {
    "AutoContrast": auto_contrast_lut,
    "Equalize": equalize_lut,
    "Invert": invert_lut,
    "Posterize": posterize_lut,
    "PosterizeIncreasing": posterize_lut,
    "PosterizeOriginal": posterize_lut,
    "Solarize": solarize_lut,
    "SolarizeIncreasing": solarize_lut,
    "SolarizeAdd": solarize_add_lut,
}


def _cubic(d: torch.Tensor) -> torch.Tensor:
    # The 4 tap weights of Pillow's transform bicubic (Geometry.c), a cubic with a = -1.
    d2, d3 = d * d, d * d * d
    return torch.stack([-d + 2 * d2 - d3, 1 - 2 * d2 + d3, d + d2 - d3, -d2 + d3], -1)


def affine(x: torch.Tensor, matrix: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.transform(AFFINE, BICUBIC)``: ``matrix`` (N, 2, 3) maps output pixel
    centres to input coordinates, in pixels. Points outside the image get ``fill``; the
    4 x 4 neighbours of the others are clamped to the image, weighted as Pillow weights
    them and truncated to integers, as Pillow does."""
    n, c, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=x.dtype, device=x.device) + 0.5,
        torch.arange(w, dtype=x.dtype, device=x.device) + 0.5,
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, h * w, 3)
    source = (points @ matrix.transpose(1, 2)).view(n, h, w, 2)  # (x, y) in input pixels
    inside = (source[..., 0] >= 0) & (source[..., 0] < w) & (source[..., 1] >= 0) & (source[..., 1] < h)
    sx, sy = source[..., 0] - 0.5, source[..., 1] - 0.5  # to pixel indices
    x0, y0 = sx.floor(), sy.floor()
    wx, wy = _cubic(sx - x0), _cubic(sy - y0)  # (N, H, W, 4)
    taps = torch.arange(-1, 3, device=x.device)
    cols = (x0.long()[..., None] + taps).clamp(0, w - 1)
    rows = (y0.long()[..., None] + taps).clamp(0, h - 1)
    # All 16 taps in one gather, from uint8 (the values are whole numbers: exact, 4x fewer bytes).
    index = (rows[..., :, None] * w + cols[..., None, :]).view(n, 1, h * w * 16)
    near = x.to(torch.uint8).reshape(n, c, h * w).gather(2, index.expand(n, c, h * w * 16))
    weight = (wy[..., :, None] * wx[..., None, :]).view(n, 1, h * w, 16)
    out = (near.view(n, c, h * w, 16) * weight).sum(-1).view(n, c, h, w).clamp_(0, 255).floor_()
    return torch.where(inside[:, None], out, fill.view(1, -1, 1, 1))


def _rotation(degrees: torch.Tensor, h: int, w: int) -> torch.Tensor:
    # Image.rotate: counter-clockwise about the centre (w / 2, h / 2).
    angle = -torch.deg2rad(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2, h / 2
    return torch.stack(
        [
            torch.stack([cos, sin, cx - cos * cx - sin * cy], -1),
            torch.stack([-sin, cos, cy + sin * cx - cos * cy], -1),
        ],
        1,
    )


def _matrix(name: str, level: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if name == "Rotate":
        return _rotation(level, h, w)
    m = torch.zeros(len(level), 2, 3, dtype=level.dtype, device=level.device)
    m[:, 0, 0] = m[:, 1, 1] = 1
    if name == "ShearX":
        m[:, 0, 1] = level
    elif name == "ShearY":
        m[:, 1, 0] = level
    elif name == "TranslateXRel":
        m[:, 0, 2] = level * w
    else:  # TranslateYRel
        m[:, 1, 2] = level * h
    return m


def _level(name: str, m: torch.Tensor, s: torch.Tensor, hparams: dict) -> torch.Tensor:
    """The op's argument from magnitude ``m`` in [0, mmax] and sign ``s`` in {-1, 1}, per
    image, as timm's level functions compute it."""
    u = m / 10
    if name == "Rotate":
        return s * u * 30
    if name in ("ShearX", "ShearY"):
        return s * u * 0.3
    if name in ("TranslateXRel", "TranslateYRel"):
        return s * u * hparams.get("translate_pct", 0.45)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return u * 1.8 + 0.1
    if name.endswith("Increasing") and name[: -len("Increasing")] in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (1 + s * u * 0.9).clamp(min=0.1)
    if name == "Posterize":
        return torch.floor(u * 4)
    if name == "PosterizeIncreasing":
        return 4 - torch.floor(u * 4)
    if name == "PosterizeOriginal":
        return torch.floor(u * 4) + 4
    if name == "Solarize":
        return torch.floor(u * 256).clamp(max=256)
    if name == "SolarizeIncreasing":
        return 256 - torch.floor(u * 256).clamp(max=256)
    if name == "SolarizeAdd":
        return torch.floor(u * 110).clamp(max=128)
    return m  # AutoContrast, Equalize, Invert take none


def apply_op(name: str, x: torch.Tensor, level: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """One op on every image of a float (N, C, H, W) batch in [0, 255], with per-image levels."""
    if name in _LUT:
        return apply_lut(x, _LUT[name](x, level))
    if name in _BLEND:
        return _blend(_DEGENERATE[_BLEND[name]](x), x, level)
    return affine(x, _matrix(name, level, *x.shape[-2:]), fill)


class BatchRandAugment:
    """timm's RandAugment policy ``config`` (e.g. ``rand-m9-mstd0.5-inc1``) on uint8 batches.

    Args:
        config: timm's RandAugment string.
        mean: the dataset's per-channel mean in [0, 1]; geometric ops fill with it, as timm
            does with ``img_mean``.
        img_size: the images' size, for timm's hyper-parameters (``translate_const``).
    """

    def __init__(self, config: str, mean, img_size: int):
        from timm.data.auto_augment import rand_augment_transform

        if not config.startswith("rand"):
            raise ValueError(
                f"auto_augment={config!r}: in-memory data runs timm's RandAugment policies ('rand-...') only"
            )
        hparams = {
            "translate_const": int(img_size * 0.45),
            "img_mean": tuple(min(255, round(255 * m)) for m in mean),
        }
        policy = rand_augment_transform(config, hparams)
        unknown = [op.name for op in policy.ops if op.name not in {*_LUT, *_BLEND, *_GEOMETRIC}]
        if unknown:
            raise ValueError(f"auto_augment={config!r}: ops {unknown} have no batched version; use the streamed path")
        self.ops = policy.ops
        self.layers = policy.num_layers
        self.weights = None if policy.choice_weights is None else torch.as_tensor(policy.choice_weights)
        self.fill = torch.tensor(hparams["img_mean"], dtype=torch.float32)
        self.prob = torch.tensor([op.prob for op in self.ops])

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a uint8 (B, C, H, W) batch; every draw comes from ``generator``.

        Within a layer each image applies at most one op. Each op's parameters are computed
        on the images that drew it; then one table look-up (point ops), one blend
        (enhancements) and one resampling (geometric ops) apply the layer.
        """
        n, dev, gdev = len(x), x.device, generator.device

        def draw(fn, *args):
            return fn(*args, generator=generator, device=gdev).to(dev)

        out = x.float()
        if self.weights is None:
            choice = draw(torch.randint, 0, len(self.ops), (n, self.layers))
        else:  # timm's weighted choice is without replacement
            w = self.weights.to(gdev).expand(n, -1)
            choice = torch.multinomial(w, self.layers, replacement=False, generator=generator).to(dev)
        fill = self.fill.to(dev)
        eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=dev)
        for layer in range(self.layers):
            fires, noise, uniform, flip = (draw(fn, n) for fn in (torch.rand, torch.randn, torch.rand, torch.rand))
            sign = torch.where(flip > 0.5, -1.0, 1.0)
            lut = _identity(out).clone()
            factor, degenerate = torch.ones(n, device=dev), torch.zeros_like(out)
            matrix, moved = eye.repeat(n, 1, 1), torch.zeros(n, dtype=torch.bool, device=dev)
            # Images grouped by the op they drew (K: none fired), with one host sync.
            drawn = torch.where(fires <= self.prob.to(dev)[choice[:, layer]], choice[:, layer], len(self.ops))
            order = drawn.argsort(stable=True)
            counts = torch.bincount(drawn, minlength=len(self.ops) + 1).tolist()
            starts = [0, *itertools.accumulate(counts)]
            for k, op in enumerate(self.ops):
                if counts[k] == 0:
                    continue
                idx = order[starts[k] : starts[k + 1]]
                if op.magnitude_std == float("inf"):  # timm's mstd > 100: uniform in [0, magnitude]
                    m = uniform[idx] * op.magnitude
                else:
                    m = op.magnitude + op.magnitude_std * noise[idx]
                level = _level(op.name, m.clamp(0, op.magnitude_max or 10), sign[idx], op.hparams)
                mine = out[idx]
                if op.name in _LUT:
                    lut[idx] = _LUT[op.name](mine, level)
                elif op.name in _BLEND:
                    factor[idx] = level
                    degenerate[idx] = _DEGENERATE[_BLEND[op.name]](mine)
                else:
                    matrix[idx] = _matrix(op.name, level, *out.shape[-2:])
                    moved[idx] = True
            # Each image took at most one op: a table, a blend and a resampling leave the
            # others exactly as they were (identity table, factor 1, not resampled).
            out = _blend(degenerate, apply_lut(out, lut), factor)
            picked = moved.nonzero().flatten()
            if len(picked):
                out[picked] = affine(out[picked], matrix[picked], fill)
        return out.to(torch.uint8)
