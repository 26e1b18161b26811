"""TOML recipes for methods and datasets, parsed into frozen, validated specs.

A recipe is data: loading one runs no code. ``methods/*.toml`` and ``datasets/*.toml`` ship
inside the wheel; more folders can be added with ``--recipes DIR`` or the ``LTBENCH_RECIPES``
environment variable (``os.pathsep``-separated; each folder holds ``methods/`` and/or
``datasets/``; a later folder's recipe replaces a built-in one of the same name).

Files whose name starts with ``_`` are bases, not entries: a recipe may ``include`` a base
or a list of bases (one level: bases include nothing) and override any of their keys.
Unknown keys, missing keys and wrong types are errors that name the file and the key (see
:class:`RecipeError`).

A run's configuration is a :class:`RunConfig`: the method (without its other budgets), the
dataset, one training budget and the seeds. ``--set key=value`` overrides apply to its dict
form before it is validated again (:func:`apply_overrides`), and :func:`config_hash` of the
result identifies the run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from .registry import Registry

# Budget keys that only the masked-pretraining stage reads (through the budget's pretrain table).
_STAGE_ONLY = frozenset({"mask_ratio", "decoder_dim", "decoder_depth", "decoder_heads"})

# Descriptive fields: shown to users, never part of a run's identity.
_DESCRIPTIVE = frozenset({"title", "paper", "default_root"})
# How a run executes, not what it computes: left out of its identity (config_hash), so
# changing them never re-runs anything. The streamed path's augmentation is seeded per image,
# so the number of workers cannot change a result.
EXECUTION_KEYS = frozenset({"num_workers", "compile", "checkpoint_minutes"})


class RecipeError(ValueError):
    """A recipe or override that cannot be used; the message names the file and key."""


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class SplitSpec:
    """Where the test and validation sets come from.

    ``test_per_class`` > 0 carves a balanced test set (and the validation set) out of a
    source that has no test split, before the long-tail draw. With a source test split it
    must be 0. ``val_per_class`` > 0 with a source that has no validation split takes a
    balanced validation set from the training images the long tail left unused, so the
    long-tailed train set is exactly the published one; 0 with no source val split means
    no validation set (no best-on-val selection).
    """

    test_per_class: int = 0
    val_per_class: int = 0


@dataclass(frozen=True)
class LongTailSpec:
    """CIFAR-LT protocol (Cao et al., 2019): class i keeps int(n_max * (1/rho)^(i/(C-1))).

    ``n_max = 0``: the source's train split is already long-tailed (ImageNet-LT, iNat).
    """

    n_max: int = 0
    rho: float = 100.0
    profile: Literal["exp", "step"] = "exp"


@dataclass(frozen=True)
class ExpectedSpec:
    """Figures of the source's splits as published (before any long-tail draw); 0 = unchecked."""

    train_total: int = 0
    train_max: int = 0
    train_min: int = 0
    val_total: int = 0
    test_total: int = 0


@dataclass(frozen=True)
class GroupSpec:
    """Many/medium/few settings; ``index_sizes`` serve DeiT-LT's index convention."""

    index_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class AugmentSpec:
    """Batched, on-device augmentation for in-memory data."""

    crop_pad: int = 0  # random translation by up to this many pixels (zero padding)
    flip: bool = False  # horizontal flip; wrong for digits, right for natural images
    # Streamed data (timm transforms): RandAugment policy string ("" = off), random erasing.
    auto_augment: str = ""
    color_jitter: float = 0.0  # brightness/contrast/saturation strength; timm skips it under RandAugment
    re_prob: float = 0.0
    rrc_scale_min: float = 0.08  # RandomResizedCrop's smallest area fraction


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    paper: str
    version: int
    source: str  # a key of ltbench.data.sources.SOURCES
    num_classes: int
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: SplitSpec = field(default_factory=SplitSpec)
    longtail: LongTailSpec = field(default_factory=LongTailSpec)
    groups: GroupSpec = field(default_factory=GroupSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    expected: ExpectedSpec = field(default_factory=ExpectedSpec)
    storage: Literal["memory", "stream"] = "memory"  # uint8 on the device, or decoded by workers
    default_root: str = ""  # where the files are unless --root says otherwise
    file_prefix: str = ""  # split_lists source: <file_prefix>_{train,val,test}.txt
    skip_unreadable: bool = False  # streamed data: drop undecodable images (counted) instead of stopping
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> expected sha256

    def stated_imbalance(self) -> tuple[float | None, str]:
        """The imbalance ratio (largest / smallest class) this recipe states, and where it
        comes from: the long-tail draw's rho, or the published split's max / min counts
        (ImageNet-LT 1280 / 5 = 256); (None, why) when the recipe states none."""
        if self.longtail.n_max > 0:
            return self.longtail.rho, f"rho {self.longtail.rho:g} ({self.longtail.profile} profile)"
        e = self.expected
        if e.train_max and e.train_min:
            return e.train_max / e.train_min, f"published split: {e.train_max} / {e.train_min} images"
        return None, "as the split files give (not stated)"


@dataclass(frozen=True)
class TrainConfig:
    """One training budget: model size, optimisation and augmentation."""

    epochs: int
    batch_size: int
    lr: float  # base learning rate at batch size ``lr_base_batch`` (linear scaling rule)
    warmup_epochs: float
    # model (timm VisionTransformer; defaults are ViT-Tiny/16)
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    global_pool: Literal["token", "avg"] = "token"
    img_size: int = 0  # 0: the dataset's native size; otherwise images are resized
    # optimisation
    lr_base_batch: int = 512
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    grad_clip: float = 0.0  # 0: no clipping
    # augmentation and targets
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    eval_batch_size: int = 1024
    micro_batch: int = 0  # per-device samples per forward pass; smaller than the share: gradient accumulation
    num_workers: int = 4  # DataLoader workers of the streamed path (results do not depend on it)
    compile: bool = False  # torch.compile the training forward pass (worth it on GPUs, for long runs)
    checkpoint_minutes: float = 0.0  # 0: a checkpoint every epoch; else at most one per this many minutes
    # optimiser variants
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9  # sgd only
    betas: tuple[float, ...] = ()  # adamw betas; empty: torch's (0.9, 0.999); MAE uses (0.9, 0.95)
    layer_decay: float = 0.0  # layer-wise lr decay of ViT fine-tuning (LiVT: 0.75); 0 = off
    sam_rho: float = 0.0  # sharpness-aware minimisation radius; 0 = plain updates
    # SAM radius per epoch, replacing sam_rho when set: epoch e (1-based) of E uses
    # schedule[min(len - 1, (e - 1) * len // E)], i.e. the values split training evenly.
    sam_rho_schedule: tuple[float, ...] = ()
    # SAM's second pass leaves BatchNorm running statistics alone (davda54/sam's bypass_bn);
    # false: both passes update them, as the LDAM-DRW + SAM code (Saddle-LongTail) does.
    sam_freeze_bn: bool = False
    # Weight decay on norm layers and biases too (the LDAM-DRW code decays every parameter);
    # false: timm's default, no decay on them.
    decay_norm_and_bias: bool = False
    # long-tail schedule
    drw_epoch: int = 0  # after this many epochs, deferred re-weighting (LDAM-DRW, DeiT-LT); 0 = never
    # training order (ltbench.data.samplers): instance, square_root, class_balanced, progressive,
    # class_aware
    sampler: str = "instance"
    # cRT / LWS only (:data:`BN_OBJECTIVES`): the frozen backbone's BatchNorm layers in "train"
    # mode (batch statistics, running ones updated: Kang et al.'s code) or "frozen" (eval mode);
    # "" elsewhere, and then left out of the identity (``identity``), so other runs keep their ids.
    backbone_bn: Literal["", "train", "frozen"] = ""
    mixup_off_epoch: int = 0  # after this many epochs, no mixup/cutmix and hard labels; 0 = never
    # CNNs: ResNet-(6n+2) of the LDAM code for small images
    cnn_depth: int = 32
    # masked generative pretraining (MAE) stage: model dims come from above
    mask_ratio: float = 0.75
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    pretrain: dict[str, Any] = field(default_factory=dict)  # the MGP stage's overrides of this budget

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / self.lr_base_batch

    @property
    def uses_sam(self) -> bool:
        """Whether steps are SAM's two passes (a fixed rho or a per-epoch schedule)."""
        return self.sam_rho > 0 or bool(self.sam_rho_schedule)


# A name of ltbench.models.MODELS (vit, deit, cnn, mae), an entry point of ltbench.models or
# module:attr; checked when the recipe loads.
ModelKind = str


@dataclass(frozen=True)
class NeedSpec:
    """A run this method consumes (``[[needs]]`` in a recipe): ``method``'s run on the same
    data and budget, under ``role`` (what the objective does with it, e.g. ``backbone``)."""

    role: str
    method: str
    seed: int = -1  # -1: the consuming run's seed; >= 0 pins it
    # "run": ``method``'s own recipe; "pretrain": the MGP stage derived from the consuming
    # run's budget (its [pretrain] table and encoder shape; `pretrain = "mgp"` in a recipe).
    stage: Literal["run", "pretrain"] = "run"
    # Which weights of the stage are consumed: "best_val" (the epoch the validation set picked;
    # Kang et al.'s stage 2 starts from it) or "last". "" is the role's default
    # (:data:`DEFAULT_SELECTION`), filled in when the recipe loads, so the choice is part of
    # the consuming run's identity.
    selection: Literal["", "best_val", "last"] = ""

    @property
    def chosen(self) -> str:
        """The selection asked for: the recipe's, else the role's default."""
        return self.selection or DEFAULT_SELECTION.get(self.role, "last")


# Per role, the weights a consuming stage loads unless its [[needs]] says `selection`: a
# backbone its best-on-validation epoch (Kang et al.); a teacher and an MGP stage their last.
DEFAULT_SELECTION = {"backbone": "best_val"}

# The objectives that read train.backbone_bn (their builders in ltbench.objectives); they get
# "train" unless a recipe or --set says "frozen".
BN_OBJECTIVES = ("retrain_classifier", "learn_scales")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    paper: str
    version: int
    model: ModelKind
    loss: str
    budgets: dict[str, TrainConfig]
    loss_params: dict[str, Any] = field(default_factory=dict)
    pretrain: Literal["", "mgp"] = ""  # a masked generative pretraining stage first
    teacher: str = ""  # a method whose trained model is the distillation teacher
    # Seeds of the stages a run consumes: -1 (default) follows the run's own seed, so seeds
    # vary the whole lineage; a value >= 0 pins it (one teacher / pretraining for every seed).
    teacher_seed: int = -1
    pretrain_seed: int = -1
    # Per budget, the method's own augmentation on top of the dataset's (e.g. LiVT's
    # RandAugment and random erasing in its paper recipe): [augment.paper] re_prob = 0.25
    augment: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per dataset and budget, settings that differ from the budget on that dataset (e.g. the
    # teacher's ImageNet-LT schedule): [dataset_overrides.imagenet_lt.paper] epochs = 90, with
    # an optional [dataset_overrides.imagenet_lt.paper.loss_params] table. Applied by resolve()
    # after the budget and before the command's --set overrides.
    dataset_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What trains (ltbench.objectives.OBJECTIVES); "" picks it from the model (classify,
    # distill for a DeiT, masked_pretrain for the MGP stage).
    objective: str = ""
    needs: tuple[NeedSpec, ...] = ()
    # Whether `ltbench run` without --methods (the README's main job) runs it; not part of any
    # run's identity. Baselines added later stay out so the main job keeps its size and time.
    in_main_job: bool = True
    # What the weights saw before training on the benchmark's task, shown in report tables:
    # "none" (from scratch), "long_tailed_train" (pretrained on the long-tailed train set
    # itself, e.g. MGP) or "external" (other data: not comparable). Descriptive: kept out of
    # MethodConfig, so never part of a run's identity or config hash.
    pretraining_data: Literal["none", "long_tailed_train", "external"] = "none"


@dataclass(frozen=True)
class MethodConfig:
    """The part of a method that a run depends on (no budgets)."""

    name: str
    version: int
    model: ModelKind
    loss: str
    loss_params: dict[str, Any] = field(default_factory=dict)
    pretrain: Literal["", "mgp"] = ""
    teacher: str = ""
    teacher_seed: int = -1
    pretrain_seed: int = -1
    objective: str = ""
    needs: tuple[NeedSpec, ...] = ()

    @property
    def stages(self) -> tuple[NeedSpec, ...]:
        """The stages this run consumes: ``needs``, with the shorthands ``pretrain = "mgp"``
        (role ``pretrained``, the derived MGP stage) and ``teacher`` (role ``teacher``)."""
        out = self.needs
        if self.pretrain == "mgp":
            out = (NeedSpec("pretrained", "mgp_pretrain", self.pretrain_seed, "pretrain"), *out)
        if self.teacher:
            out = (*out, NeedSpec("teacher", self.teacher, self.teacher_seed))
        return out


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run's result."""

    method: MethodConfig
    data: DatasetSpec
    train: TrainConfig
    budget: str
    seed: int = 0
    data_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


# ------------------------------------------------------------------- validation


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a table, got {value!r}")
        return from_mapping(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(c) for c in typing.get_args(tp))
            raise RecipeError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a table, got {value!r}")
        _, vt = typing.get_args(tp)
        return {k: _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise RecipeError(f"{where}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecipeError(f"{where}: expected an integer, got {value!r}")
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise RecipeError(f"{where}: expected {tp.__name__}, got {value!r}")
    if tp is float and not isinstance(value, float):
        raise RecipeError(f"{where}: expected a number, got {value!r}")
    return value


def from_mapping(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown and missing keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if ":" in where else f"{where}: {name}"
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where}: missing required key {name!r}")
    return cls(**kwargs)


# ---------------------------------------------------------------------- loading


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _include_path(path: Path, name: str) -> Path:
    """Where recipe ``path``'s ``include = name`` is: next to it, else among the built-in bases
    (so that a recipe in a --recipes folder can include ``_vit.toml``, ``_cnn.toml``, ...)."""
    here = path.parent / name
    if here.is_file():
        return here
    kind = path.parent.name if path.parent.name in ("methods", "datasets") else "methods"
    builtin = builtin_recipe_dir() / kind / name
    if builtin.is_file():
        return builtin
    bases = sorted(p.name for p in (builtin_recipe_dir() / kind).glob("_*.toml") if p.name != "_template.toml")
    raise RecipeError(
        f"{path}: include {name!r} not found next to it ({here}) nor among the built-in bases "
        f"({', '.join(bases) or 'none'})"
    )


def read_toml(path: Path) -> dict[str, Any]:
    """Read a recipe, resolving one level of ``include``: next to the file first, then the
    built-in bases of its kind (``methods/_vit.toml``, ``_cnn.toml``, ``_mgp.toml``)."""
    return _merged(_layers(path))


def _merged(layers: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for _, layer in layers:  # later bases override earlier ones, the file all of them
        merged = _deep_merge(merged, layer)
    return merged


def _layers(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The files a recipe is made of, in merge order: its bases, then the recipe itself."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: not valid TOML: {e}") from None
    inc = data.pop("include", None)
    layers = []
    for name in [] if inc is None else [inc] if isinstance(inc, str) else inc:
        base_path = _include_path(path, name)
        try:
            base = tomllib.loads(base_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise RecipeError(f"{base_path}: not valid TOML: {e}") from None
        if "include" in base:
            raise RecipeError(f"{base_path}: included files may not include others (one level only)")
        layers.append((base_path, base))
    return [*layers, (path, data)]


def _check_base_budgets(path: Path, layers: list[tuple[Path, dict[str, Any]]], budgets: dict[str, Any]) -> None:
    """Types and ranges of the budget values recipe ``path`` takes from its bases (``layers``:
    :func:`_layers`), each checked against the base that gave it, so that an error names the
    file that holds the value."""
    for budget, table in budgets.items():
        if not isinstance(table, dict):
            continue
        origin: dict[Path, dict[str, Any]] = {}
        for key, value in table.items():  # the last layer that sets a key gave its value
            source = next(f for f, layer in reversed(layers) if key in (layer.get("budgets") or {}).get(budget, {}))
            if source != path:
                origin.setdefault(source, {})[key] = value
        hints = typing.get_type_hints(TrainConfig)
        for base, own in origin.items():
            where = f"{base} (included by {path}): budgets.{budget}"
            unknown = sorted(set(own) - set(hints))
            if unknown:
                raise RecipeError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(hints))}")
            values = types.SimpleNamespace(**{k: _convert(v, hints[k], f"{where}.{k}") for k, v in own.items()})
            check_ranges(values, {k: r for k, r in _TRAIN_RANGES.items() if k.split(".")[0] in own}, where, "train.")


def load_method(path: Path) -> MethodSpec:
    layers = _layers(path)
    data = _merged(layers)
    budgets = data.get("budgets")
    if not isinstance(budgets, dict) or not budgets:
        raise RecipeError(f"{path}: missing required table 'budgets' (e.g. [budgets.quick])")
    data = {**data, "budgets": {}}
    spec = from_mapping(MethodSpec, data, str(path))
    _check_base_budgets(path, layers, budgets)
    parsed = {b: from_mapping(TrainConfig, v, f"{path}: budgets.{b}") for b, v in budgets.items()}
    _check_name(spec.name, path)
    for budget in parsed:
        _check_name(budget, path, "budget")
    augment = {}
    for budget, table in spec.augment.items():
        if budget not in parsed:
            raise RecipeError(f"{path}: augment.{budget} names no budget; budgets: {', '.join(parsed)}")
        checked = from_mapping(AugmentSpec, table, f"{path}: augment.{budget}")  # keys and types
        augment[budget] = {k: getattr(checked, k) for k in table}
    for budget, t in parsed.items():
        _check_train(t, f"{path}: budgets.{budget}")
    by_dataset: dict[str, dict[str, Any]] = {}
    for ds, budget_tables in spec.dataset_overrides.items():  # from_mapping checked: tables of tables
        for budget, table in budget_tables.items():
            where = f"{path}: dataset_overrides.{ds}.{budget}"
            if budget not in parsed:
                raise RecipeError(f"{where} names no budget; budgets: {', '.join(parsed)}")
            if not isinstance(table, dict):
                raise RecipeError(f"{where}: expected a table of training settings, got {table!r}")
            train, _ = _apply_dataset_table(parsed[budget], spec.loss_params, table, where)  # keys and types
            checked = {k: getattr(train, k) for k in table if k != "loss_params"}
            if "loss_params" in table:
                checked["loss_params"] = dict(table["loss_params"])
            by_dataset.setdefault(ds, {})[budget] = checked
    _check_model(spec, path)
    _check_loss(spec, path)
    _check_objective(spec, path)
    if spec.teacher and any(n.role == "teacher" for n in spec.needs):
        raise RecipeError(f"{path}: both `teacher` and a [[needs]] role 'teacher'; keep one")
    for budget, t in parsed.items():
        _check_backbone_bn(spec.objective, t.backbone_bn, f"{path}: budgets.{budget}")
    needs = tuple(dataclasses.replace(n, selection=n.chosen) for n in spec.needs)  # the default, explicit
    return dataclasses.replace(spec, budgets=parsed, augment=augment, dataset_overrides=by_dataset, needs=needs)


def _check_backbone_bn(objective: str, value: str, where: str) -> None:
    """``backbone_bn`` is set only where a cRT / LWS objective reads it."""
    if value and objective not in BN_OBJECTIVES:
        raise RecipeError(
            f"{where}: backbone_bn={value!r}, but only the objectives {', '.join(BN_OBJECTIVES)} read it "
            f"(this method's is {objective or 'its default'}); leave it out, or scope --set to a cRT / LWS "
            "method (e.g. --set cnn_crt.backbone_bn=frozen)"
        )


def _plugin_folder(name: str, path: Path) -> None:
    """A ``module:attr`` name in a recipe outside the package may import from its folder."""
    from .registry import add_import_dir

    if ":" in name and path.parent.parent.resolve() != builtin_recipe_dir().resolve():
        add_import_dir(path.parent.parent)


def _check_named(registry, name: str, path: Path, key: str) -> None:
    """``name`` resolves in ``registry`` (registered, entry point or ``module:attr``) when the
    catalog loads; otherwise a RecipeError naming the file, the key and the choices."""
    from .registry import PluginImportError, UnknownNameError

    _plugin_folder(name, path)
    try:
        registry.get(name)
    except (UnknownNameError, PluginImportError) as e:
        raise RecipeError(f"{path}: {key}: {e}") from None


def _check_model(spec: MethodSpec, path: Path) -> None:
    from .models import MODELS

    _check_named(MODELS, spec.model, path, "model")


def _check_objective(spec: MethodSpec, path: Path) -> None:
    if spec.objective:
        from .objectives import OBJECTIVES

        _check_named(OBJECTIVES, spec.objective, path, "objective")


def _check_loss(spec: MethodSpec, path: Path) -> None:
    """The method's loss resolves (a registered name, an entry point of ``ltbench.losses`` or
    ``module:attr``) and accepts every key of its ``loss_params``: a misspelt key fails here,
    when the catalog loads, not after the data is built. Imports only the code the recipe names."""
    from .registry import PluginImportError, UnknownNameError

    _plugin_folder(spec.loss, path)
    from .losses import check_loss_params  # here: loads torch

    try:
        cls = check_loss_params(spec.loss, spec.loss_params)
    except (UnknownNameError, PluginImportError) as e:
        raise RecipeError(f"{path}: loss: {e}") from None
    except TypeError as e:  # no signature: not a class or function
        raise RecipeError(f"{path}: loss {spec.loss!r} is not a class or function of class_counts: {e}") from None
    except ValueError as e:
        raise RecipeError(f"{path}: loss_params: {e}") from None
    # Capabilities, not names: a distillation loss needs a two-token DeiT and a teacher.
    distills = bool(getattr(cls, "distills", False))
    if not spec.objective and distills != (spec.model == "deit"):
        need = "a distillation loss (one whose class sets distills = True, e.g. deit_lt)"
        why = (
            f"model 'deit' needs {need}" if spec.model == "deit" else f"loss {spec.loss!r} distils: set model = 'deit'"
        )
        raise RecipeError(f"{path}: {why}")
    if distills and not spec.teacher:
        raise RecipeError(f"{path}: loss {spec.loss!r} distils from a teacher; set teacher = '<method>'")


# Valid ranges of numeric settings, checked when a recipe loads and again after --set
# overrides: (low, high, whether low is allowed, whether high is allowed); None: unbounded.
_COUNT = (1, None, True, True)  # an integer >= 1
_NONNEG = (0, None, True, True)
_POSITIVE = (0, None, False, True)
_PROB = (0, 1, True, True)
_TRAIN_RANGES: dict[str, tuple] = {
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
    **dict.fromkeys(("label_smoothing", "drop_path", "momentum", "layer_decay"), _PROB),
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


def _check_train(t: TrainConfig, where: str) -> None:
    """Value checks that types alone do not catch: counts >= 1, the learning rate finite and
    > 0, probabilities in [0, 1] (:data:`_TRAIN_RANGES`), SAM radii > 0, a known sampler."""
    check_ranges(t, _TRAIN_RANGES, where, "train.")
    if t.pretrain:  # the MGP stage's own values (--set pretrain.epochs=0 too)
        own = {k: v for k, v in t.pretrain.items() if k in _TRAIN_RANGES}
        check_ranges(types.SimpleNamespace(**own), {k: _TRAIN_RANGES[k] for k in own}, where, "train.pretrain.")
    bad_betas = [b for b in t.betas if not (math.isfinite(b) and 0 <= b < 1)]
    if bad_betas or len(t.betas) not in (0, 2):
        raise RecipeError(f"{where}: train.betas = {list(t.betas)}; give two numbers in [0, 1), e.g. [0.9, 0.95]")
    if t.min_lr > t.lr:
        raise RecipeError(f"{where}: train.min_lr = {t.min_lr} is above train.lr = {t.lr}; lower min_lr")
    bad = [r for r in t.sam_rho_schedule if not (math.isfinite(r) and r > 0)]
    if bad:
        raise RecipeError(f"{where}: sam_rho_schedule values must be > 0, got {list(t.sam_rho_schedule)}")
    from .data.samplers import SAMPLERS  # here: ltbench.data imports this module

    if t.sampler not in SAMPLERS:
        raise RecipeError(f"{where}: {SAMPLERS.unknown_message(t.sampler)}")


def _apply_dataset_table(
    train: TrainConfig, loss_params: dict[str, Any], table: dict[str, Any], where: str
) -> tuple[TrainConfig, dict[str, Any]]:
    """``train`` and ``loss_params`` with one ``dataset_overrides.<dataset>.<budget>`` table applied."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(table) - fields - {"loss_params"})
    if unknown:
        raise RecipeError(
            f"{where}: unknown key {unknown[0]!r}; valid keys: loss_params (a table), {', '.join(sorted(fields))}"
        )
    own = {k: v for k, v in table.items() if k != "loss_params"}
    merged = from_mapping(TrainConfig, _deep_merge(_to_plain(dataclasses.asdict(train)), own), where)
    _check_train(merged, where)
    params = table.get("loss_params", {})
    if not isinstance(params, dict):
        raise RecipeError(f"{where}.loss_params: expected a table, got {params!r}")
    new = sorted(set(params) - set(loss_params))
    if new:
        raise RecipeError(
            f"{where}.loss_params: {new[0]!r} is not a loss parameter the method sets; "
            f"it sets: {', '.join(sorted(loss_params)) or '(none)'}"
        )
    return merged, {**loss_params, **params}


def load_dataset(path: Path) -> DatasetSpec:
    spec = from_mapping(DatasetSpec, read_toml(path), str(path))
    _check_name(spec.name, path)
    from .data.sources import SOURCES  # here: ltbench.data imports this module

    if spec.source not in SOURCES:  # a misspelt source fails when the recipes load, not mid-sweep
        raise RecipeError(f"{path}: source: {SOURCES.unknown_message(spec.source)}")
    if spec.file_prefix:
        _check_name(spec.file_prefix, path, "file_prefix")
    if len(spec.mean) != spec.channels or len(spec.std) != spec.channels:
        raise RecipeError(f"{path}: mean and std need {spec.channels} values (one per channel)")
    if spec.groups.index_sizes and sum(spec.groups.index_sizes) != spec.num_classes:
        raise RecipeError(f"{path}: groups.index_sizes must sum to num_classes ({spec.num_classes})")
    _check_data(spec, str(path))
    return spec


def _check_data(spec: DatasetSpec, where: str) -> None:
    """Value checks of a dataset recipe (:data:`_DATA_RANGES`): counts, rho >= 1, probabilities."""
    check_ranges(spec, _DATA_RANGES, where, "data.")
    bad = [v for v in (*spec.mean, *spec.std) if not math.isfinite(v)] or [v for v in spec.std if v <= 0]
    if bad:
        raise RecipeError(f"{where}: mean and std must be finite and std > 0, got {bad[0]!r}")


# Names become folder names of run folders: letters, digits, '_', '-', '.' and no '..'.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _plain_name(name: str) -> bool:
    return bool(SAFE_NAME.fullmatch(name)) and ".." not in name


def _check_name(name: str, path: Path, what: str = "name") -> None:
    if what == "name" and name != path.stem:
        raise RecipeError(f"{path}: name {name!r} must match the file name {path.stem!r}")
    if not _plain_name(name):
        raise RecipeError(
            f"{path}: {what} {name!r} cannot name a folder; use letters, digits, '_', '-' and '.' (no '..')"
        )


def builtin_recipe_dir() -> Path:
    """Recipes inside the installed wheel, or the repository root in a source checkout."""
    packaged = Path(__file__).parent / "_recipes"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1]


def recipe_dirs(extra: tuple[str, ...] = ()) -> tuple[Path, ...]:
    env = tuple(p for p in os.environ.get("LTBENCH_RECIPES", "").split(os.pathsep) if p)
    dirs = (builtin_recipe_dir(), *map(Path, env), *map(Path, extra))
    for d in dirs[1:]:
        if not d.is_dir():
            raise RecipeError(f"recipe folder {d} does not exist (from --recipes or LTBENCH_RECIPES)")
    return dirs


@dataclass(frozen=True)
class Catalog:
    """All known methods and datasets, with the file each came from."""

    methods: Registry[MethodSpec]
    datasets: Registry[DatasetSpec]
    origins: dict[str, Path]


@functools.lru_cache(maxsize=8)
def load_catalog(extra_dirs: tuple[str, ...] = ()) -> Catalog:
    """Parse every recipe in the built-in folders and ``extra_dirs``.

    Raises:
        RecipeError: the first malformed recipe, naming its file and key.
    """
    methods: Registry[MethodSpec] = Registry("method", targets=False)
    datasets: Registry[DatasetSpec] = Registry("dataset", targets=False)
    origins: dict[str, Path] = {}
    for root in recipe_dirs(extra_dirs):
        for sub, loader, reg in (("methods", load_method, methods), ("datasets", load_dataset, datasets)):
            for path in sorted((root / sub).glob("*.toml")):
                if path.name.startswith("_"):
                    continue
                spec = loader(path)
                reg.add(spec.name, spec, replace=True)
                origins[f"{sub}/{spec.name}"] = path
    return Catalog(methods, datasets, origins)


# ---------------------------------------------------------------- run configs


def resolve(
    method: MethodSpec,
    dataset: DatasetSpec,
    budget: str,
    seed: int = 0,
    data_seed: int = 0,
    overrides: tuple[str, ...] = (),
) -> RunConfig:
    """The run configuration for ``method`` on ``dataset`` under ``budget``, with overrides."""
    if budget not in method.budgets:
        raise RecipeError(f"method {method.name!r} has no budget {budget!r}; it has {', '.join(method.budgets)}")
    train, loss_params = method.budgets[budget], dict(method.loss_params)
    table = method.dataset_overrides.get(dataset.name, {}).get(budget)
    if table:  # the method's settings for this dataset, before the command's overrides
        where = f"method {method.name}: dataset_overrides.{dataset.name}.{budget}"
        train, loss_params = _apply_dataset_table(train, loss_params, table, where)
    mcfg = MethodConfig(
        method.name,
        method.version,
        method.model,
        method.loss,
        loss_params,
        method.pretrain,
        method.teacher,
        method.teacher_seed,
        method.pretrain_seed,
        method.objective,
        method.needs,
    )
    own = method.augment.get(budget)
    if own:  # the method's augmentation, before the command's overrides
        dataset = dataclasses.replace(dataset, augment=dataclasses.replace(dataset.augment, **own))
    cfg = RunConfig(mcfg, dataset, train, budget, seed, data_seed)
    cfg = apply_overrides(cfg, overrides) if overrides else cfg
    where = f"method {method.name}, budget {budget}" + (f" (with --set {' '.join(overrides)})" if overrides else "")
    _check_backbone_bn(method.objective, cfg.train.backbone_bn, where)
    if method.objective in BN_OBJECTIVES and not cfg.train.backbone_bn:  # the reference's, explicit
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, backbone_bn="train"))
    _check_train(cfg.train, where)
    if overrides:  # the dataset recipe was checked when it loaded
        _check_data(cfg.data, f"dataset {dataset.name} (with --set {' '.join(overrides)})")
    _check_auto_augment(cfg.data)
    return cfg


def _check_auto_augment(spec: DatasetSpec) -> None:
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


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# What --set may not change: the names a run is filed and labelled under, its seeds, and
# where its files come from. Each says how to get what the user wanted instead.
_NEW_RECIPE = "names the recipe; copy the recipe under another name into a folder given with --recipes DIR"
_FIXED = {
    "method.name": _NEW_RECIPE,
    "method.version": _NEW_RECIPE,
    "data.name": _NEW_RECIPE,
    "data.version": _NEW_RECIPE,
    "data.source": _NEW_RECIPE,
    "budget": "is chosen with --budget",
    "seed": "is chosen with --seeds",
    "data_seed": "is chosen with --data-seed",
    "data.default_root": "is a path; give the data's folder with --root",
    "data.checksums": "is what verifies the data; use --no-verify for a custom copy",
    "method.needs": "names the stages a run consumes; write a recipe (--recipes DIR)",
    "method.objective": _NEW_RECIPE,
}


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set profile=step


def _match_key(keys, key: str) -> list[str]:
    """The dotted paths among ``keys`` that override key ``key`` names: itself, else those
    ending in ``.key``, the shallowest if it is the only one (``epochs`` means train.epochs,
    not train.pretrain.epochs)."""
    matches = [k for k in keys if k == key] or [k for k in keys if k.endswith("." + key)]
    if len(matches) > 1:
        depth = min(k.count(".") for k in matches)
        shallowest = [k for k in matches if k.count(".") == depth]
        matches = shallowest if len(shallowest) == 1 else matches
    return matches


def _type_keys(cls: type, prefix: str) -> set[str]:
    """The dotted paths of a config dataclass's fields, nested dataclasses expanded."""
    hints = typing.get_type_hints(cls)
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out |= _type_keys(tp, f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out


def _method_keys(spec: MethodSpec, budget: str | None) -> set[str]:
    """The settings ``--set`` can reach in a run of ``spec``: its loss parameters, its
    budget's stage table (all budgets' when ``budget`` is None), and the keys every run has."""
    keys = _type_keys(RunConfig, "") - {"method.loss_params", "train.pretrain"}
    if spec.objective not in BN_OBJECTIVES:
        keys.discard("train.backbone_bn")  # read by cRT / LWS only
    keys |= {f"method.loss_params.{k}" for k in spec.loss_params}
    budgets = [spec.budgets[budget]] if budget in spec.budgets else list(spec.budgets.values())
    for t in budgets:
        keys |= {f"train.pretrain.{k}" for k in _flatten(t.pretrain)}
    return keys


def overrides_for(
    method: MethodSpec | str,
    overrides: typing.Sequence[str],
    selected: typing.Sequence[MethodSpec | str],
    budget: str | None = None,
) -> tuple[str, ...]:
    """The ``--set`` overrides that apply to ``method`` among the ``selected`` methods.

    A key whose first dotted part is a selected method's name is scoped to that method:
    ``la.tau=1.5`` gives ``tau=1.5`` to ``la`` and nothing to the others. Any other key
    applies to every selected method, and must then be a setting of each: with specs (not
    bare names) given, ``tau=1.5`` for ``ce`` and ``la`` is refused, naming ``ce``, which
    has no ``tau``, and saying how to scope it. Everything else is checked later by
    :func:`apply_overrides` (unknown keys, fixed fields).

    Raises:
        RecipeError: an override that is not ``key=value``, or an unscoped key that some
            selected methods lack.
    """
    name = method if isinstance(method, str) else method.name
    names = [m if isinstance(m, str) else m.name for m in selected]
    specs = [m for m in selected if not isinstance(m, str)]
    out: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value (e.g. --set train.epochs=3)")
        key, text = (s.strip() for s in item.split("=", 1))
        scope, dot, rest = key.partition(".")
        if dot and scope in names:
            if scope == name:
                out.append(f"{rest}={text}")
            continue
        if len(specs) > 1:
            has = {m.name: bool(_match_key(_method_keys(m, budget), key)) for m in specs}
            lacking = [m for m, ok in has.items() if not ok]
            if lacking and len(lacking) < len(has):
                having = [m for m, ok in has.items() if ok]
                scoped = " ".join(f"--set {m}.{key}={text}" for m in having)
                raise RecipeError(
                    f"override {item!r}: {', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no setting "
                    f"{key!r} ({', '.join(having)} {'has' if len(having) == 1 else 'have'}); "
                    f"scope it to a method with its name: {scoped}"
                )
        out.append(item)
    return tuple(out)


def stage_overrides(
    stage: MethodSpec,
    overrides: typing.Sequence[str],
    selected: typing.Sequence[MethodSpec | str],
    budget: str | None = None,
) -> tuple[str, ...]:
    """The ``--set`` overrides that reach a consumed backbone stage of method ``stage``, so that
    it is the very run that ``stage`` gives as a selected method under the same command: those
    scoped to ``stage`` by name, and the unscoped ones that name a setting ``stage`` has. An
    unscoped key it lacks (``backbone_bn``, a loss parameter of the consuming method only) and
    one scoped to another method stay with the consuming stage."""
    names = [m if isinstance(m, str) else m.name for m in selected]
    keys = _method_keys(stage, budget)
    out: list[str] = []
    for item in overrides:
        key, text = (s.strip() for s in item.split("=", 1))  # overrides_for checked key=value
        scope, dot, rest = key.partition(".")
        if dot and scope in names:
            if scope == stage.name:
                out.append(f"{rest}={text}")
        elif _match_key(keys, key):
            out.append(item)
    return tuple(out)


def apply_overrides(cfg: RunConfig, overrides: tuple[str, ...]) -> RunConfig:
    """Apply ``key=value`` overrides; a key is a dotted path or a unique last part of one.

    Example: ``rho=10``, ``data.longtail.rho=10``, ``epochs=3``, ``tau=1.05``.
    """
    d = cfg.to_dict()
    flat = _flatten(d)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value (e.g. --set train.epochs=3)")
        key, text = (s.strip() for s in item.split("=", 1))
        matches = _match_key(flat, key)
        if len(matches) != 1:
            valid = sorted(k for k in flat if k.split(".")[-1] not in _DESCRIPTIVE)
            what = "is ambiguous" if matches else "matches no setting"
            options = matches or valid
            raise RecipeError(f"override key {key!r} {what}; use one of: {', '.join(options)}")
        path = matches[0].split(".")
        fixed = _FIXED.get(matches[0]) or _FIXED.get(".".join(path[:2]))
        if fixed:
            raise RecipeError(f"override {item!r} would change {matches[0]}, which {fixed}")
        if matches[0] == "data.file_prefix" and not _plain_name(text):
            raise RecipeError(f"override {item!r}: file_prefix is a file name prefix, not a path (e.g. ImageNet_LT)")
        if len(path) == 2 and path[0] == "train" and path[1] in _STAGE_ONLY and cfg.method.model != "mae":
            raise RecipeError(
                f"override {key!r} sets {matches[0]}, which only the MGP stage uses; "
                f"set train.pretrain.{path[-1]} (e.g. --set pretrain.{path[-1]}={text})"
            )
        node = d
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = _parse_value(text)
    out = run_config_from_dict(d, "override")
    sizes, n = out.data.groups.index_sizes, out.data.num_classes
    if sizes and sum(sizes) != n:  # e.g. num_classes=3 on a dataset whose index blocks name 8,142 classes
        raise RecipeError(
            f"overrides {' '.join(overrides)}: groups.index_sizes {list(sizes)} sum to {sum(sizes)}, not "
            f"num_classes {n}; set them together (e.g. --set groups.index_sizes=[1,1,1] for 3 classes)"
        )
    return out


def run_config_from_dict(d: dict[str, Any], where: str = "config") -> RunConfig:
    """Rebuild a validated :class:`RunConfig` from its dict form (records, overrides)."""
    return from_mapping(RunConfig, d, where)


# Keys added after runs were stored, with the value that means "not used": left out of the
# identity at that value, so every run that does not use them keeps its id.
_UNUSED_AT = {"backbone_bn": ""}


def identity(x: Any) -> Any:
    """What of a config's dict form decides a result: descriptive and execution fields
    removed (and :data:`_UNUSED_AT` keys at their unused value), numbers as floats."""
    if isinstance(x, dict):
        return {
            k: identity(v)
            for k, v in x.items()
            if k not in _DESCRIPTIVE | EXECUTION_KEYS and not (k in _UNUSED_AT and v == _UNUSED_AT[k])
        }
    if isinstance(x, list):
        return [identity(v) for v in x]
    if isinstance(x, int) and not isinstance(x, bool):
        return float(x)  # --set tau=1 and the recipe's 1.0 are the same setting
    return x


def config_hash(cfg: RunConfig) -> str:
    """Stable identity of a run: SHA-256 of the canonical JSON of its :func:`identity`."""
    blob = json.dumps(identity(cfg.to_dict()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
