"""Batched RandAugment against timm's PIL ops, op by op, and its per-image draws."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from ltbench.data.randaugment import BatchRandAugment, _level, apply_op

MEAN = (0.5, 0.25, 0.75)
FILL = tuple(round(255 * m) for m in MEAN)


def _photos(n=4, h=20, w=24, seed=0):
    """Smooth RGB images with full-range contrast in places, as uint8 (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC)))
    return np.stack(out)


def _ours(name, images, magnitude, sign):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    n = len(x)
    m, s = torch.full((n,), float(magnitude)), torch.full((n,), float(sign))
    level = _level(name, m, s, {})
    out = apply_op(name, x, level, torch.tensor(FILL, dtype=torch.float32))
    return out.permute(0, 2, 3, 1).numpy().astype(int)


def _theirs(name, images, magnitude, sign):
    from timm.data import auto_augment as aa

    from ltbench.data.stream import _fix_timm_posterize

    _fix_timm_posterize()
    level_fn, op = aa.LEVEL_TO_ARG[name], aa.NAME_TO_OP[name]
    negate = aa._randomly_negate
    aa._randomly_negate = (lambda v: -v) if sign < 0 else (lambda v: v)
    try:
        args = level_fn(magnitude, {}) if level_fn is not None else ()
    finally:
        aa._randomly_negate = negate
    kwargs = {"fillcolor": FILL, "resample": Image.BICUBIC}
    return np.stack([np.asarray(op(Image.fromarray(img), *args, **kwargs)) for img in images]).astype(int)


EXACT = [
    "AutoContrast",
    "Equalize",
    "Invert",
    "PosterizeIncreasing",
    "Posterize",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "Color",
]


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("magnitude,sign", [(9, 1), (6.5, -1), (10, 1)])
def test_colour_ops_match_timms_pil_ops(name, magnitude, sign):
    images = _photos()
    diff = np.abs(_ours(name, images, magnitude, sign) - _theirs(name, images, magnitude, sign))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001  # float vs Pillow's fixed point: a rare 1


@pytest.mark.parametrize("magnitude,sign", [(9, 1), (6.5, -1)])
def test_sharpness_matches_pils_smooth_filter_blend(magnitude, sign):
    images = _photos()
    diff = np.abs(
        _ours("SharpnessIncreasing", images, magnitude, sign) - _theirs("SharpnessIncreasing", images, magnitude, sign)
    )
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"])
@pytest.mark.parametrize("sign", [1, -1])
def test_geometric_ops_match_timms_pil_ops(name, sign):
    images = _photos(h=32, w=32)
    ours, theirs = _ours(name, images, 9, sign), _theirs(name, images, 9, sign)
    filled = (theirs == np.array(FILL)).all(-1)
    assert filled.mean() > 0.05  # the map moves pixels out and fills them
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002  # Pillow's bicubic taps, truncated


def test_draws_are_per_image_and_follow_the_policy():
    ra = BatchRandAugment("rand-m9-mstd0.5-inc1", MEAN, 32)
    assert [op.name for op in ra.ops][:3] == ["AutoContrast", "Equalize", "Invert"] and ra.layers == 2
    x = torch.from_numpy(_photos(n=256, h=16, w=16, seed=1)).permute(0, 3, 1, 2).contiguous()
    g = torch.Generator().manual_seed(0)
    out = ra(x, g)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    changed = (out != x).flatten(1).any(1).float().mean().item()
    # Each of 2 layers fires with p = 0.5: 1/4 of images keep both layers off, and a few
    # more draw an op that leaves them as they were.
    assert 0.6 < changed < 0.85
    again = ra(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the generator decides everything
    assert not torch.equal(out, ra(x, torch.Generator().manual_seed(1)))


def test_policies_without_a_batched_version_are_refused():
    with pytest.raises(ValueError, match="RandAugment policies"):
        BatchRandAugment("v0", MEAN, 32)


def test_in_memory_batches_run_the_recipes_randaugment_and_erasing(smoke_config, digits):
    from ltbench.data.memory import DeviceBatches

    cfg = smoke_config("ce", "auto_augment=rand-m9-mstd0.5-inc1", "re_prob=0.25")
    aug, plain_aug = cfg.data.augment, smoke_config("ce").data.augment
    train = digits.train

    def epoch(a, seed):
        random.seed(seed)  # random erasing draws from `random` and torch, which fit seeds per epoch
        torch.manual_seed(seed)
        batches = DeviceBatches(train.images, train.labels, cfg.data.mean, cfg.data.std, "cpu", aug=a)
        xs, ys = zip(*batches.train_batches(32, seed))
        return torch.cat(xs), torch.cat(ys)

    x, y = epoch(aug, 3)
    x_again, y_again = epoch(aug, 3)
    plain, plain_y = epoch(plain_aug, 3)
    assert torch.equal(x, x_again) and torch.equal(y, y_again)  # the epoch's seed decides it all
    assert torch.equal(y, plain_y)  # the same order: augmentation draws after the permutation
    changed = (x != plain).flatten(1).any(1).float().mean().item()
    assert 0.6 < changed < 0.95  # two layers at p = 0.5, plus erasing at 0.25
    assert not torch.equal(epoch(aug, 4)[0][: len(x)], x)


def test_bad_policies_fail_when_the_run_is_planned(smoke_config):
    from ltbench.config.specs import RecipeError

    with pytest.raises(RecipeError, match="RandAugment policies only"):
        smoke_config("ce", "auto_augment=v0")  # AutoAugment: only on the streamed path
    with pytest.raises(RecipeError, match="not a timm policy"):
        smoke_config("ce", "auto_augment=rand-q9")
