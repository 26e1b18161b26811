"""The frozen dataclasses a TOML recipe parses into: methods, datasets, budgets, stages.

Parsing is typed: :func:`from_mapping` converts a TOML table into a spec, and unknown keys,
missing keys and wrong types are errors that name the file and the key (see
:class:`RecipeError`).

A run's configuration is a :class:`RunConfig`: the method (without its other budgets), the
dataset, one training budget and the seeds. ``--set key=value`` overrides apply to its dict
form before it is validated again (:func:`apply_overrides`), and :func:`config_hash` of the
result identifies the run.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

# Budget keys that only the masked-pretraining stage reads (through the budget's pretrain table).
STAGE_ONLY_KEYS = frozenset({"mask_ratio", "decoder_dim", "decoder_depth", "decoder_heads"})


# Descriptive fields: shown to users, never part of a run's identity.
DESCRIPTIVE_KEYS = frozenset({"title", "paper", "default_root"})


# How a run executes, not what it computes: left out of its identity (config_hash), so
# changing them never re-runs anything. The streamed path's augmentation is seeded per image,
# so the number of workers cannot change a result.
EXECUTION_KEYS = frozenset({"num_workers", "compile", "checkpoint_minutes"})


class RecipeError(ValueError):
    """A recipe or override that cannot be used; the message names the file and key."""


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
    # MaxNorm (weight balancing), 0: off. In (0, 1]: after every step each class's classifier
    # weight vector longer than r = n_min + max_norm * (n_max - n_min) is scaled back to r, the
    # n the per-class norms before the first step (the authors' per-layer threshold)
    max_norm: float = 0.0
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
    # model "cnn_experts": experts, and stages (of 3) shared by all of them (RIDE's design)
    num_experts: int = 3
    shared_stages: int = 1
    # views of each training image per step, augmented independently (contrastive methods:
    # batches of shape (B, V, C, H, W)); 1: plain batches
    views: int = 1
    # views of each test image, augmented as in training, on which every expert's logits are
    # stored (model "cnn_experts"): SADE's test-time aggregation learns its expert weights on
    # them (report --shift --shift-counts subsets); 0: none
    test_views: int = 0
    # model "cnn_contrastive": projection dimension, queue of momentum keys (0: none) and the
    # key encoder's momentum (PaCo's MoCo)
    feat_dim: int = 128
    queue_size: int = 0
    key_momentum: float = 0.999
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


# A name of ltbench.training.models.MODELS (vit, deit, cnn, mae), an entry point of ltbench.models or
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
BN_OBJECTIVES = ("retrain_classifier", "learn_scales", "finetune_classifier", "finetune_scaled_classifier")


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
    # What trains (ltbench.training.objectives.OBJECTIVES); "" picks it from the model (classify,
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
        return to_plain(self)


def to_plain(obj: Any) -> Any:
    """Dataclasses as dicts, tuples as lists, recursively: what ``dataclasses.asdict`` then a
    tuple-to-list pass give, without asdict's deep copy of every leaf (a sweep of thousands of
    runs hashes each config twice)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def convert(value: Any, tp: Any, where: str) -> Any:
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
        return tuple(convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a table, got {value!r}")
        _, vt = typing.get_args(tp)
        return {k: convert(v, vt, f"{where}.{k}") for k, v in value.items()}
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


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` merged into ``base``, tables into tables (neither is changed)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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
            kwargs[name] = convert(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where}: missing required key {name!r}")
    return cls(**kwargs)


# Names become folder names of run folders: letters, digits, '_', '-', '.' and no '..'.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def plain_name(name: str) -> bool:
    return bool(SAFE_NAME.fullmatch(name)) and ".." not in name


def run_config_from_dict(d: dict[str, Any], where: str = "config") -> RunConfig:
    """Rebuild a validated :class:`RunConfig` from its dict form (records, overrides)."""
    return from_mapping(RunConfig, d, where)
