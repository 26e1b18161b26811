"""Valid ranges of numeric settings and the value checks of recipes and overrides."""

from __future__ import annotations

import math
import types
from typing import Any

from .specs import BN_OBJECTIVES, DatasetSpec, RecipeError, TrainConfig


def check_backbone_bn(objective: str, value: str, where: str) -> None:
    """``backbone_bn`` is set only where a cRT / LWS objective reads it."""
    if value and objective not in BN_OBJECTIVES:
        raise RecipeError(
            f"{where}: backbone_bn={value!r}, but only the objectives {', '.join(BN_OBJECTIVES)} read it "
            f"(this method's is {objective or 'its default'}); leave it out, or scope --set to a cRT / LWS "
            "method (e.g. --set cnn_crt.backbone_bn=frozen)"
        )


# Valid ranges of numeric settings, checked when a recipe loads and again after --set
# overrides: (low, high, whether low is allowed, whether high is allowed); None: unbounded.
_COUNT = (1, None, True, True)  # an integer >= 1


_NONNEG = (0, None, True, True)


_POSITIVE = (0, None, False, True)


_PROB = (0, 1, True, True)


TRAIN_RANGES: dict[str, tuple] = {
    **dict.fromkeys(
        (
            "epochs",
            "batch_size",
            "patch_size",
            "embed_dim",
            "depth",
            "num_heads",
            "lr_base_batch",
            "eval_batch_size",
            "cnn_depth",
            "num_experts",
            "views",
            "feat_dim",
            "shared_stages",
            "decoder_dim",
            "decoder_depth",
            "decoder_heads",
        ),
        _COUNT,
    ),
    **dict.fromkeys(
        (
            "warmup_epochs",
            "img_size",
            "micro_batch",
            "num_workers",
            "checkpoint_minutes",
            "drw_epoch",
            "mixup_off_epoch",
            "grad_clip",
            "queue_size",
            "test_views",
            "weight_decay",
            "mixup",
            "cutmix",
            "sam_rho",
            "min_lr",
        ),
        _NONNEG,
    ),
    "lr": _POSITIVE,
    "mlp_ratio": _POSITIVE,
    **dict.fromkeys(("label_smoothing", "drop_path", "momentum", "layer_decay", "max_norm", "key_momentum"), _PROB),
    "mask_ratio": (0, 1, True, False),
}


_DATA_RANGES: dict[str, tuple] = {
    "num_classes": _COUNT,
    "image_size": _COUNT,
    "channels": _COUNT,
    "split.test_per_class": _NONNEG,
    "split.val_per_class": _NONNEG,
    "longtail.n_max": _NONNEG,
    "longtail.rho": (1, None, True, True),
    "augment.crop_pad": _NONNEG,
    "augment.color_jitter": _NONNEG,
    "augment.re_prob": _PROB,
    "augment.rrc_scale_min": (0, 1, False, True),
}


def _range_text(low, high, low_ok: bool, high_ok: bool, integer: bool) -> str:
    kind = "an integer" if integer else "a finite number"
    if high is None:
        return f"{kind} {'>=' if low_ok else '>'} {low}"
    return f"{kind} in {'[' if low_ok else '('}{low}, {high}{']' if high_ok else ')'}"


def check_ranges(obj: Any, ranges: dict[str, tuple], where: str, prefix: str) -> None:
    """Each dotted field of ``obj`` named in ``ranges`` is finite and within its range.

    Raises:
        RecipeError: naming ``where`` (the recipe file, or the method, budget and --set
            overrides), the key, the value and the valid range.
    """
    for key, (low, high, low_ok, high_ok) in ranges.items():
        value = obj
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # the types are checked by from_mapping
        ok = math.isfinite(value)
        ok = ok and (value >= low if low_ok else value > low)
        ok = ok and (high is None or (value <= high if high_ok else value < high))
        if not ok:
            valid = _range_text(low, high, low_ok, high_ok, isinstance(value, int))
            raise RecipeError(f"{where}: {prefix}{key} = {value!r} is out of range; it must be {valid}")


def check_train(t: TrainConfig, where: str) -> None:
    """Value checks that types alone do not catch: counts >= 1, the learning rate finite and
    > 0, probabilities in [0, 1] (:data:`TRAIN_RANGES`), SAM radii > 0 (the
    sampler's name is checked against its registry by :mod:`ltbench.planning.catalog`)."""
    check_ranges(t, TRAIN_RANGES, where, "train.")
    if t.pretrain:  # the MGP stage's own values (--set pretrain.epochs=0 too)
        own = {k: v for k, v in t.pretrain.items() if k in TRAIN_RANGES}
        check_ranges(types.SimpleNamespace(**own), {k: TRAIN_RANGES[k] for k in own}, where, "train.pretrain.")
    bad_betas = [b for b in t.betas if not (math.isfinite(b) and 0 <= b < 1)]
    if bad_betas or len(t.betas) not in (0, 2):
        raise RecipeError(f"{where}: train.betas = {list(t.betas)}; give two numbers in [0, 1), e.g. [0.9, 0.95]")
    if t.views > 1 and (t.mixup or t.cutmix or t.label_smoothing):
        raise RecipeError(
            f"{where}: train.views = {t.views} takes hard labels; set mixup, cutmix and label_smoothing to 0"
        )
    if t.test_views == 1:
        raise RecipeError(
            f"{where}: train.test_views = 1; test-time aggregation compares two or more views (or 0: none)"
        )
    if t.min_lr > t.lr:
        raise RecipeError(f"{where}: train.min_lr = {t.min_lr} is above train.lr = {t.lr}; lower min_lr")
    bad = [r for r in t.sam_rho_schedule if not (math.isfinite(r) and r > 0)]
    if bad:
        raise RecipeError(f"{where}: sam_rho_schedule values must be > 0, got {list(t.sam_rho_schedule)}")


def check_data(spec: DatasetSpec, where: str) -> None:
    """Value checks of a dataset recipe (:data:`_DATA_RANGES`): counts, rho >= 1, probabilities."""
    check_ranges(spec, _DATA_RANGES, where, "data.")
    bad = [v for v in (*spec.mean, *spec.std) if not math.isfinite(v)] or [v for v in spec.std if v <= 0]
    if bad:
        raise RecipeError(f"{where}: mean and std must be finite and std > 0, got {bad[0]!r}")


def check_auto_augment(spec: DatasetSpec) -> None:
    """A bad policy string fails here, before any run starts, not mid-sweep."""
    policy = spec.augment.auto_augment
    if not policy:
        return
    if spec.storage == "memory" and not policy.startswith("rand-"):
        raise RecipeError(
            f"dataset {spec.name}: auto_augment={policy!r}; in-memory data runs timm's RandAugment "
            "policies only, e.g. auto_augment=rand-m9-mstd0.5-inc1"
        )
    from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform

    build = {"rand": rand_augment_transform, "augmix": augment_and_mix_transform}.get(
        policy.split("-")[0], auto_augment_transform
    )
    try:
        build(policy, {"img_mean": (124, 116, 104)})
    except (AssertionError, KeyError, ValueError) as e:
        raise RecipeError(
            f"dataset {spec.name}: auto_augment={policy!r} is not a timm policy ({e or 'unknown section'}); "
            "e.g. rand-m9-mstd0.5-inc1"
        ) from None
