"""What one training step computes and how a model is evaluated, per kind of method.

- :class:`Classify`: a classifier and a loss of ``(logits, target)`` (ce, la, bce, bal_bce, ldam).
- :class:`Distill`: DeiT-LT. The student's CLS and DIST heads; the frozen teacher sees the
  student's augmented, mixed batch resized to its own resolution (out-of-distribution
  distillation) and gives hard labels; from the DRW epoch the DIST term is re-weighted.
  Evaluation keeps the CLS-only, DIST-only and averaged predictions.
- :class:`MaskedPretrain`: the MAE objective of the MGP stage; nothing to evaluate.

The trainer (``ltbench.training.loop``) only calls ``loss(x, target, epoch)`` and ``evaluate``.
Training goes through ``self.forward`` (the model, or its DistributedDataParallel wrapper,
which the trainer sets); evaluation uses the bare ``self.model``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..core.registry import Registry
from ..evaluation.metrics import ClassStats, mean_class_accuracy
from .distributed import gathered


def _autocast(device: torch.device):
    # bf16 on CUDA; the CPU path stays in fp32, where autocast is slower and less exact.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def channels_last(model: torch.nn.Module, device: torch.device) -> torch.memory_format:
    """NHWC for a convolutional network on CUDA, where cuDNN's fast kernels want it (the
    model's weights are converted here; inputs follow in the objective)."""
    has_conv = any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != m.stride for m in model.modules())
    if device.type != "cuda" or not has_conv:
        return torch.contiguous_format
    model.to(memory_format=torch.channels_last)
    return torch.channels_last


class Classify:
    has_eval = True
    trains = True  # False: an evaluation-only stage (PosthocTransform)
    stores_heads = False  # True: every head's logits go to the logits file too (experts)

    def train_mode(self) -> None:
        """Put what trains in train mode (frozen parts of a decoupling stage stay in eval)."""
        self.model.train()

    def __init__(
        self,
        model: torch.nn.Module,
        criterion: torch.nn.Module,
        num_classes: int,
        drw_epoch: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.model, self.criterion, self.num_classes, self.drw_epoch = model, criterion, num_classes, drw_epoch
        self.forward = model
        self.memory_format = memory_format

    def reweight(self, epoch: int) -> bool:
        # Epochs count from 1: drw_epoch = 160 of 200 re-weights the last 40, as the LDAM code.
        return bool(self.drw_epoch) and epoch > self.drw_epoch

    def loss(self, x: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        if hasattr(self.criterion, "set_reweight"):
            self.criterion.set_reweight(self.reweight(epoch))
        with _autocast(x.device):
            return self.criterion(self.forward(x.contiguous(memory_format=self.memory_format)), target)

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.model(x.contiguous(memory_format=self.memory_format))
        calibrated = getattr(self.criterion, "calibrated", None)  # e.g. LDAM's scale s
        return {"main": calibrated(z) if calibrated is not None else z}

    @torch.inference_mode()
    def evaluate(self, batches, batch_size: int, logits_out: dict | None = None) -> dict:
        """Per-class correct/total and calibration bins; extra heads under ``heads``.

        With ``logits_out``, the main prediction's logits (``[N, C]``, on the device) and labels
        are put there as ``logits`` and ``labels`` (stored by :mod:`ltbench.reports.posthoc`, in float32):
        the very tensors whose argmax the statistics counted, in their dtype (float32 on CPU, bf16
        under CUDA autocast, which converts to float32 exactly), so the stored logits reproduce
        the record's counts exactly."""
        self.model.eval()
        stats: dict[str, ClassStats] = {}
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        heads: dict[str, list[torch.Tensor]] = {}
        with _autocast(batches.device):
            for x, y in batches.eval_batches(batch_size):
                for name, z in self.logits(x).items():
                    stats.setdefault(name, ClassStats(self.num_classes, batches.device)).update(z, y)
                    if name == "main" and logits_out is not None:  # the tensor counted, not rounded
                        kept.append((z.detach(), y))
                    elif self.stores_heads and logits_out is not None:
                        heads.setdefault(name, []).append(z.detach())
        if logits_out is not None and kept:
            logits_out["logits"] = torch.cat([z for z, _ in kept])
            logits_out["labels"] = torch.cat([y for _, y in kept])
            if heads:  # (heads, N, C), in the order the objective names them
                logits_out["heads"] = {name: torch.cat(zs) for name, zs in heads.items()}
        out = stats.pop("main").as_dict()
        if stats:
            out["heads"] = {name: s.as_dict() for name, s in stats.items()}
        return out


class Distill(Classify):
    def __init__(
        self, model, criterion, num_classes: int, teacher: torch.nn.Module, teacher_size: int, drw_epoch: int = 0
    ):
        super().__init__(model, criterion, num_classes, drw_epoch)
        self.teacher, self.teacher_size = teacher.eval(), teacher_size
        self.teacher_format = channels_last(teacher, next(teacher.parameters()).device)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def loss(self, x: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        with torch.no_grad(), _autocast(x.device):
            seen = (
                x
                if x.shape[-1] == self.teacher_size
                else F.interpolate(x, size=(self.teacher_size, self.teacher_size), mode="bilinear", align_corners=False)
            )
            teacher_logits = self.teacher(seen.contiguous(memory_format=self.teacher_format))
        with _autocast(x.device):
            cls, dist = self.forward(x)
            return self.criterion(cls, dist, target, teacher_logits, reweight=self.reweight(epoch))

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.model.forward_features(x)
        cls, dist = self.model.head(feats[:, 0]), self.model.head_dist(feats[:, 1])
        return {"main": (cls + dist) / 2, "cls": cls, "dist": dist}


class MultiExpert(Classify):
    """A model whose forward gives one logit slice per expert, ``(E, B, C)``: the loss sees
    them all; evaluation predicts with their mean (RIDE without its router; SADE before its
    test-time aggregation) and keeps each expert's statistics under ``heads``
    (``expert0``, ``expert1``, ...) and each expert's logits in the logits file.

    With ``test_views`` > 0, :meth:`view_logits` gives every expert's logits on that many
    augmented views of each test image, which SADE's test-time aggregation learns from
    (:mod:`ltbench.training.test_time`)."""

    stores_heads = True

    def __init__(self, *args, test_views: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.test_views = test_views

    def _experts(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x.contiguous(memory_format=self.memory_format))
        calibrated = getattr(self.criterion, "calibrated", None)
        return calibrated(z) if calibrated is not None else z

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self._experts(x)
        return {"main": z.mean(0), **{f"expert{i}": ze for i, ze in enumerate(z)}}

    @torch.inference_mode()
    def view_logits(self, batches, batch_size: int, seed: int) -> torch.Tensor:
        """Every expert's logits on ``test_views`` augmented views of each image of ``batches``
        (in-memory batches: :meth:`ltbench.data.memory.DeviceBatches.view_batches`), as a
        ``(V, E, N, C)`` tensor; the views are drawn from ``seed``."""
        self.model.eval()
        out = []
        with _autocast(batches.device):
            for x, _ in batches.view_batches(batch_size, self.test_views, seed):
                b, v = x.shape[:2]
                z = self._experts(x.flatten(0, 1))  # (E, B*V, C)
                out.append(z.unflatten(1, (b, v)).permute(2, 0, 1, 3))  # (V, E, B, C)
        return torch.cat(out, dim=2)


class Contrastive(Classify):
    """A contrastive model on a batch of views ``(B, V, C, H, W)`` (``train.views``): the loss
    sees the model's outputs (logits, projections, prototypes, keys and queue); after the loss
    the step's keys enter the model's queue, where it has one: with several processes, every
    process's keys and labels (gathered in rank order, as MoCo's code does), so each queue
    holds the whole batch's keys. Evaluation is the classifier on plain images."""

    def loss(self, x: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError("a contrastive objective needs a batch of views: set train.views = 2")
        with _autocast(x.device):
            out = self.forward(x)
            loss = self.criterion(out, target)
        if "keys" in out:
            self.model.enqueue(gathered(out["keys"].detach()), gathered(target))
        return loss


class MaskedPretrain:
    has_eval = False
    trains = True

    def train_mode(self) -> None:
        self.model.train()

    def __init__(self, mae: torch.nn.Module):
        self.model = self.forward = mae

    def loss(self, x: torch.Tensor, target: torch.Tensor, epoch: int) -> torch.Tensor:
        with _autocast(x.device):
            return self.forward(x)[0]


# ------------------------------------------------------------------ decoupling (Kang et al.)
# Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020,
# arXiv:1910.09217. Each starts from a trained classifier (the run's ``backbone`` stage) whose
# representation stays fixed.


def classifier_name(model: torch.nn.Module, cosine: bool = False) -> str:
    """The attribute holding the model's final linear layer (``fc`` of a ResNet, ``head`` of a ViT).

    ``cosine``: a cosine classifier (``NormedLinear``) counts too, for a stage that trains the
    classifier further rather than re-initialising it or reading its weight norms.

    Raises:
        ValueError: the model has no plain linear classifier (a cosine one cannot be re-used).
    """
    from .models.resnet_cifar import NormedLinear

    kinds = (torch.nn.Linear, NormedLinear) if cosine else torch.nn.Linear
    for name in ("fc", "head"):
        if isinstance(getattr(model, name, None), kinds):
            return name
    raise ValueError(
        f"{type(model).__name__} has no linear classifier (fc or head); decoupling needs one "
        "(an LDAM backbone's cosine classifier is not)"
    )


def freeze(model: torch.nn.Module) -> None:
    """No gradients for ``model``'s parameters (its BatchNorm statistics are ``train_mode``'s choice)."""
    for p in model.parameters():
        p.requires_grad_(False)


# How a cRT / LWS stage treats its frozen backbone's BatchNorm layers (``train.backbone_bn``):
# "train" normalises with each class-balanced batch's statistics and updates the running ones,
# as Kang et al.'s code does (every network in train mode, frozen weights); "frozen" keeps the
# statistics of representation learning (eval mode), ltbench's behaviour before.
BACKBONE_BN = ("train", "frozen")


def backbone_train_mode(model: torch.nn.Module, backbone_bn: str) -> None:
    """Frozen backbone in eval mode (no dropout, no drop path), its BatchNorm layers in train
    mode when ``backbone_bn`` is "train"."""
    model.eval()
    if backbone_bn == "train":
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.train()


class RetrainClassifier(Classify):
    """cRT: a new linear classifier, trained on the frozen backbone's features (with the
    recipe's sampler: class-aware in the reference code). The backbone's BatchNorm layers
    follow ``backbone_bn`` (:data:`BACKBONE_BN`)."""

    def __init__(
        self, model: torch.nn.Module, criterion, num_classes: int, drw_epoch: int = 0, backbone_bn: str = "train"
    ):
        if backbone_bn not in BACKBONE_BN:
            raise ValueError(f"backbone_bn={backbone_bn!r}; use one of {', '.join(BACKBONE_BN)}")
        freeze(model)
        name = classifier_name(model)
        old = getattr(model, name)
        setattr(model, name, torch.nn.Linear(old.in_features, old.out_features).to(old.weight.device))
        self.head_name, self.backbone_bn = name, backbone_bn
        super().__init__(model, criterion, num_classes, drw_epoch)

    def train_mode(self) -> None:
        backbone_train_mode(self.model, self.backbone_bn)
        getattr(self.model, self.head_name).train()


class ScaledLogits(torch.nn.Module):
    """LWS's model: the backbone's logits times a learned per-class scale f_j (initially 1).
    Kang et al. scale the weight vectors w_j; scaling the logit also scales the bias."""

    def __init__(self, model: torch.nn.Module, num_classes: int):
        super().__init__()
        self.inner = model
        self.scale = torch.nn.Parameter(torch.ones(num_classes, device=next(model.parameters()).device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.scale

    def no_weight_decay(self) -> set[str]:
        """The scales are never weight-decayed (``training.loop.build_optimizer``), whatever the
        budget's ``decay_norm_and_bias``: decay would pull them towards 0, not towards 1."""
        return {"scale"}


class LearnScales(Classify):
    """LWS: the backbone and its classifier frozen, one scale per class learned. The
    backbone's BatchNorm layers follow ``backbone_bn`` (:data:`BACKBONE_BN`)."""

    def __init__(
        self, model: torch.nn.Module, criterion, num_classes: int, drw_epoch: int = 0, backbone_bn: str = "train"
    ):
        if backbone_bn not in BACKBONE_BN:
            raise ValueError(f"backbone_bn={backbone_bn!r}; use one of {', '.join(BACKBONE_BN)}")
        classifier_name(model)  # a linear classifier to scale
        freeze(model)
        self.backbone_bn = backbone_bn
        super().__init__(ScaledLogits(model, num_classes), criterion, num_classes, drw_epoch)

    def train_mode(self) -> None:
        backbone_train_mode(self.model.inner, self.backbone_bn)  # the scales have no mode


class FinetuneClassifier(Classify):
    """The stage-1 classifier trained further (not re-initialised, unlike cRT) on the frozen
    backbone's features, optionally with a learned per-class scale of its logits: MiSLAS's
    stage 2 (classifier + scales, label-aware smoothing, class-balanced batches) and weight
    balancing's (classifier only, a class-balanced loss, MaxNorm). The backbone's BatchNorm
    layers follow ``backbone_bn`` (:data:`BACKBONE_BN`; "train" is MiSLAS's shift learning
    of the statistics)."""

    def __init__(
        self,
        model: torch.nn.Module,
        criterion,
        num_classes: int,
        drw_epoch: int = 0,
        backbone_bn: str = "train",
        scales: bool = False,
    ):
        if backbone_bn not in BACKBONE_BN:
            raise ValueError(f"backbone_bn={backbone_bn!r}; use one of {', '.join(BACKBONE_BN)}")
        name = classifier_name(model, cosine=True)  # trained further: a cosine one (GCL's) too
        freeze(model)
        for p in getattr(model, name).parameters():
            p.requires_grad_(True)
        self.head_name, self.backbone_bn, self.backbone = name, backbone_bn, model
        super().__init__(ScaledLogits(model, num_classes) if scales else model, criterion, num_classes, drw_epoch)

    def train_mode(self) -> None:
        backbone_train_mode(self.backbone, self.backbone_bn)
        getattr(self.backbone, self.head_name).train()


class MaxNorm:
    """Weight balancing's MaxNorm (Alshammari et al.; the authors' ``MaxNorm_via_PGD``): a
    radius ``r = n_min + fraction * (n_max - n_min)`` from the per-class weight norms of
    ``model``'s linear classifier when this is built (``setPerLayerThresh``), then after every
    step each class's weight vector longer than ``r`` is scaled back to ``r`` (projected
    gradient descent). The bias is left alone, as there."""

    def __init__(self, model: torch.nn.Module, fraction: float):
        norms = self._head(model).weight.detach().flatten(1).norm(dim=1)
        self.radius = float(norms.min() + fraction * (norms.max() - norms.min()))

    @staticmethod
    def _head(model: torch.nn.Module) -> torch.nn.Module:
        inner = getattr(model, "inner", model)  # an LWS / MiSLAS scaled model: its classifier
        return getattr(inner, classifier_name(inner))

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> None:
        w = self._head(model).weight
        norms = w.flatten(1).norm(dim=1).clamp(min=self.radius)
        w.mul_((self.radius / norms).view(-1, *([1] * (w.ndim - 1))))


class PosthocTransform(Classify):
    """An evaluation-only stage: the backbone's features through a classifier transformed with
    one parameter ``tau``, chosen on the validation set (mean per-class accuracy; the test set
    never chooses), then evaluated on test. Nothing trains.

    ``transform(features, weight, bias, tau)`` gives the logits.
    """

    trains = False

    def __init__(self, model: torch.nn.Module, num_classes: int, transform, taus, default_tau: float):
        name = classifier_name(model)
        head = getattr(model, name)
        self.weight = head.weight.detach().clone()
        self.bias = None if head.bias is None else head.bias.detach().clone()
        setattr(model, name, torch.nn.Identity())  # the model now gives features
        freeze(model)
        self.transform, self.taus, self.tau = transform, tuple(taus), default_tau
        super().__init__(model, None, num_classes)

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.model(x.contiguous(memory_format=self.memory_format)).float()
        # The transform in float32 outside autocast, as choose_tau runs it on validation: tau is
        # chosen at the precision the test set is evaluated in (evaluate runs this under bf16).
        with torch.autocast(x.device.type, enabled=False):
            return {"main": self.transform(feats, self.weight, self.bias, self.tau)}

    @torch.inference_mode()
    def choose_tau(self, batches, batch_size: int) -> dict[str, float]:
        """Pick ``tau`` by mean per-class accuracy on ``batches`` (the validation set); the
        first of equal scores in grid order wins. Returns the score of each tau tried."""
        self.model.eval()
        feats, labels = [], []
        with _autocast(batches.device):  # the precision the test set is evaluated in
            for x, y in batches.eval_batches(batch_size):
                feats.append(self.model(x.contiguous(memory_format=self.memory_format)).float())
                labels.append(y)
        f, y = torch.cat(feats), torch.cat(labels)
        totals = torch.bincount(y, minlength=self.num_classes)
        scores = {}
        for tau in self.taus:
            with torch.autocast(f.device.type, enabled=False):  # float32, as in logits (test)
                pred = self.transform(f, self.weight, self.bias, tau).argmax(1)
            hits = torch.bincount(y[pred == y], minlength=self.num_classes)
            scores[tau] = mean_class_accuracy(hits.tolist(), totals.tolist())  # exact: ties stay ties
        self.tau = max(self.taus, key=lambda t: scores[t])  # max keeps the first of ties
        return scores


def tau_normalised(feats, weight, bias, tau: float) -> torch.Tensor:
    """tau-normalisation: w_j / ||w_j||^tau, bias dropped (Kang et al.)."""
    w = weight / weight.norm(dim=1, keepdim=True).pow(tau)
    return feats @ w.t()


def logit_adjusted(log_prior: torch.Tensor):
    """Post-hoc logit adjustment (Menon et al., ICLR 2021): z - tau * log(pi)."""

    def transform(feats, weight, bias, tau: float) -> torch.Tensor:
        z = feats @ weight.t() + (0 if bias is None else bias)
        return z - tau * log_prior.to(z.device)

    return transform


# 0, 0.1, ..., 2.0: Kang et al.'s tau_norm.py sweeps np.linspace(0, 2, 21) (validation chose
# tau > 1 in 3 of 3 runs of a 0..1 grid, at its edge).
TAU_NORM_GRID = tuple(round(0.1 * i, 1) for i in range(21))
LOGIT_ADJUST_GRID = tuple(round(0.25 * i, 2) for i in range(13))  # 0, 0.25, ..., 3.0


# ------------------------------------------------------------------- objectives by name
# A recipe's ``objective`` names one of these; each builds its objective from the run's config,
# its data, the device and the stages it consumed (``stages``: role -> (config, checkpoint)).
# ``roles`` are the [[needs]] roles it requires, checked when the plan is made.

OBJECTIVES: Registry[Callable] = Registry("objective", entry_points="ltbench.objectives")
OBJECTIVE_ROLES: dict[str, tuple[str, ...]] = {}


def objective(name: str, roles: tuple[str, ...] = ()):
    def deco(build: Callable) -> Callable:
        OBJECTIVES.add(name, build)
        OBJECTIVE_ROLES[name] = roles
        return build

    return deco


def load_stage_model(stages: dict, role: str, device: torch.device) -> torch.nn.Module:
    """The trained model of the stage consumed as ``role``, built from that stage's config."""
    from .models import build_model

    cfg, checkpoint = stages[role]
    model = build_model(cfg)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    return model.to(device)


def _criterion(cfg, data, device):
    from .losses import build_loss

    return build_loss(cfg.method.loss, data.class_counts, **cfg.method.loss_params).to(device)


@objective("classify")
def _classify(cfg, data, device, stages):
    """A classifier from scratch, or from an MGP encoder (``pretrained``), and its loss."""
    from .checkpoints import load_pretrained_encoder
    from .models import build_model

    model = build_model(cfg)
    if "pretrained" in stages:
        load_pretrained_encoder(model, stages["pretrained"][1])
    model = model.to(device)
    return Classify(model, _criterion(cfg, data, device), cfg.data.num_classes, cfg.train.drw_epoch,
                    channels_last(model, device))  # fmt: skip


@objective("experts")
def _experts(cfg, data, device, stages):
    """A multi-expert model (``cnn_experts``) and a loss of all its experts' logits."""
    from .models import build_model

    model = build_model(cfg).to(device)
    return MultiExpert(model, _criterion(cfg, data, device), cfg.data.num_classes, cfg.train.drw_epoch,
                       channels_last(model, device), test_views=cfg.train.test_views)  # fmt: skip


@objective("contrastive")
def _contrastive(cfg, data, device, stages):
    """A contrastive model (``cnn_contrastive``) on two-view batches and its loss."""
    from .distributed import rank_world
    from .models import build_model

    t, world = cfg.train, rank_world()[1]
    share = t.batch_size // world
    if t.queue_size and world > 1 and (t.batch_size % world or (t.micro_batch and share % t.micro_batch)):
        # Every process gathers every process's keys at each forward: the shares (and their
        # micro-batches) must be equal, or the processes' collective calls stop matching.
        raise ValueError(
            f"a queue of keys over {world} processes needs batch_size ({t.batch_size}) divisible by "
            f"them and each share ({share}) by micro_batch ({t.micro_batch}); change --set batch_size or micro_batch"
        )
    model = build_model(cfg).to(device)
    return Contrastive(model, _criterion(cfg, data, device), cfg.data.num_classes, cfg.train.drw_epoch)


@objective("distill", roles=("teacher",))
def _distill(cfg, data, device, stages):
    """DeiT-LT: the student DeiT and the frozen teacher of the ``teacher`` stage."""
    from .models import build_model, input_size

    if "teacher" not in stages:
        raise ValueError(f"method {cfg.method.name} distils from a teacher; set `teacher` in its recipe")
    model = build_model(cfg).to(device)
    teacher = load_stage_model(stages, "teacher", device)
    teacher_size = input_size(stages["teacher"][0])
    return Distill(model, _criterion(cfg, data, device), cfg.data.num_classes, teacher, teacher_size,
                   cfg.train.drw_epoch)  # fmt: skip


@objective("masked_pretrain")
def _masked_pretrain(cfg, data, device, stages):
    """The MGP stage: MAE on the encoder the fine-tuning runs will use (no classifier head:
    it would be an unused parameter, and DDP refuses those)."""
    from .models import build_model
    from .models.mae import MaskedAutoencoder

    t = cfg.train
    encoder = build_model(cfg)  # the "mae" model: the encoder without a head
    mae = MaskedAutoencoder(encoder, t.decoder_dim, t.decoder_depth, t.decoder_heads, t.mask_ratio)
    return MaskedPretrain(mae.to(device))


def _on_backbone(stage_class, **kwargs) -> Callable:
    """The builder of a stage that trains on the consumed ``backbone`` run (cRT, LWS, MiSLAS,
    weight balancing): its model, the run's loss and ``train.backbone_bn``."""

    def build(cfg, data, device, stages):
        model = load_stage_model(stages, "backbone", device)
        bn = cfg.train.backbone_bn or "train"
        return stage_class(model, _criterion(cfg, data, device), cfg.data.num_classes, backbone_bn=bn, **kwargs)

    return build


objective("retrain_classifier", roles=("backbone",))(_on_backbone(RetrainClassifier))
objective("learn_scales", roles=("backbone",))(_on_backbone(LearnScales))
objective("finetune_classifier", roles=("backbone",))(_on_backbone(FinetuneClassifier))
objective("finetune_scaled_classifier", roles=("backbone",))(_on_backbone(FinetuneClassifier, scales=True))


@objective("tau_norm", roles=("backbone",))
def _tau_norm(cfg, data, device, stages):
    model = load_stage_model(stages, "backbone", device)
    return PosthocTransform(model, cfg.data.num_classes, tau_normalised, TAU_NORM_GRID, 1.0)


@objective("posthoc_logit_adjust", roles=("backbone",))
def _posthoc_la(cfg, data, device, stages):
    counts = torch.as_tensor(data.class_counts, dtype=torch.float32)
    # A class with no training image gets no adjustment (log 0 would make it win everywhere).
    log_prior = torch.where(counts > 0, (counts / counts.sum()).log(), torch.zeros_like(counts))
    transform = logit_adjusted(log_prior)
    model = load_stage_model(stages, "backbone", device)
    return PosthocTransform(model, cfg.data.num_classes, transform, LOGIT_ADJUST_GRID, 1.0)
