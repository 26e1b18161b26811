"""The training loop of one run: ViT from scratch, AdamW, warm-up + cosine, per-epoch checkpoints.

Reproducibility and resume: every random stream of epoch ``e`` (shuffling, augmentation,
Mixup/CutMix, drop path) is seeded from ``(seed, e)`` inside a context that restores the
global RNG states afterwards, and the learning rate is a function of the step count. A run
resumed from the checkpoint of epoch ``e`` therefore follows exactly the path of an
uninterrupted one.

Model selection is honest: the validation set picks the best epoch (its weights are kept and
the test set is evaluated on them once, after the last epoch; it never chooses), and the
last epoch is always kept as well.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.data import Mixup
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from ..config.specs import RunConfig
from ..data import LTData
from ..data.memory import DeviceBatches
from ..data.sources import Split
from .checkpoints import BEST_VAL, CHECKPOINT, save_atomic
from .distributed import all_mean, rank_world
from .logits import LogitKeeper
from .objectives import OBJECTIVES, MaxNorm
from .sam import SAM


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    results: dict  # {"last": stats, "best_val": stats}; stats from ClassStats.as_dict + epoch
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    resumed_from_epoch: int = 0
    unreadable: list[str] = field(default_factory=list)  # files dropped (streamed, skip_unreadable)
    logits: dict | None = None  # the record's ``logits`` entry: the stored logits file (ltbench.reports.posthoc)

    @property
    def skipped_images(self) -> int:
        return len(self.unreadable)


EpochCallback = Callable[[int, int, dict], None]


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch, NumPy and ``random`` globally inside the block, then restore them.

    timm's Mixup draws from NumPy's global RNG and drop path from torch's, so they are
    seeded here; restoring keeps the caller's streams untouched.
    """
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**63


def make_batches(data: LTData, split: Split, cfg: RunConfig, device: torch.device):
    """In-memory batches on the device for small sets, DataLoader streaming for large ones.

    Training batches follow ``cfg.train.sampler`` (:mod:`ltbench.data.samplers`)."""
    t = cfg.train
    if split.images is not None:
        return DeviceBatches(
            split.images, split.labels, cfg.data.mean, cfg.data.std, device, t.img_size, cfg.data.augment, t.sampler,
            t.views,
        )  # fmt: skip
    if t.views > 1 or t.test_views:
        key = f"views = {t.views}" if t.views > 1 else f"test_views = {t.test_views}"
        raise ValueError(f"train.{key} (method {cfg.method.name}) needs in-memory data; {cfg.data.name} is streamed")
    from ..data.stream import StreamBatches

    return StreamBatches(
        data.root, split, cfg.data, t.img_size or cfg.data.image_size, device, t.num_workers, t.sampler
    )


def _targets(cfg: RunConfig, mixup: Mixup | None, x: torch.Tensor, y: torch.Tensor):
    t = cfg.train
    if mixup is not None:
        if len(x) % 2:  # timm's Mixup flips the batch and needs an even size
            x, y = x[:-1], y[:-1]
        return mixup(x, y)
    if t.label_smoothing > 0:
        off = t.label_smoothing / cfg.data.num_classes
        soft = torch.full((len(y), cfg.data.num_classes), off, device=y.device)
        soft.scatter_(1, y[:, None], 1.0 - t.label_smoothing + off)
        return x, soft
    return x, y


@dataclass(frozen=True)
class Dependencies:
    """Outputs of earlier stages that a run builds on."""

    pretrained: Path | None = None  # an MGP checkpoint whose encoder initialises the ViT
    teacher: tuple[RunConfig, Path] | None = None  # the teacher's config and checkpoint
    stages: dict[str, tuple[RunConfig, Path]] = field(default_factory=dict)  # [[needs]] role -> (config, weights)
    # role -> which weights were loaded (run id, selection, epoch, file): the record's needs_selection
    selections: dict[str, dict] = field(default_factory=dict)


# The objective of a method whose recipe names none, by model kind.
DEFAULT_OBJECTIVE = {
    "mae": "masked_pretrain",
    "deit": "distill",
    "cnn_experts": "experts",
    "cnn_contrastive": "contrastive",
}


def build_objective(cfg: RunConfig, data: LTData, device: torch.device, deps: Dependencies):
    """The model and the step/evaluation logic of ``cfg``'s method: its ``objective`` (or the
    model's default, :data:`DEFAULT_OBJECTIVE`, else ``classify``) from
    :data:`ltbench.training.objectives.OBJECTIVES`, built from the stages the run consumed."""
    stages = dict(deps.stages)
    if deps.pretrained is not None:
        stages["pretrained"] = (None, deps.pretrained)
    if deps.teacher is not None:
        stages["teacher"] = deps.teacher
    name = cfg.method.objective or DEFAULT_OBJECTIVE.get(cfg.method.model, "classify")
    with seeded(cfg.seed):  # the model's initialisation
        return OBJECTIVES.get(name)(cfg, data, device, stages)


def build_optimizer(cfg: RunConfig, model: torch.nn.Module):
    t = cfg.train
    kwargs = {"momentum": t.momentum} if t.optimizer == "sgd" else {}
    if t.betas:
        kwargs["betas"] = tuple(t.betas)
    # timm's "sgd" is Nesterov; the LDAM code uses plain momentum.
    name = "momentum" if t.optimizer == "sgd" else "adamw"
    base = create_optimizer_v2(
        model,
        name,
        lr=t.scaled_lr,
        weight_decay=t.weight_decay,
        layer_decay=t.layer_decay or None,
        filter_bias_and_bn=not t.decay_norm_and_bias,
        param_group_fn=_never_decayed_apart if t.decay_norm_and_bias and _never_decayed(model) else None,
        **kwargs,
    )
    if t.uses_sam:
        return SAM(base, sam_rho(cfg, 1), model if t.sam_freeze_bn else None)
    return base


def _never_decayed(model: torch.nn.Module) -> set[str]:
    """Names of the parameters ``model`` says are never weight-decayed (timm's
    ``no_weight_decay``, e.g. LWS's scales); timm honours it only when it filters norm layers
    and biases, so ``decay_norm_and_bias`` budgets (the CNNs) take it here."""
    names = getattr(model, "no_weight_decay", None)
    return set(names()) if callable(names) else set()


def _never_decayed_apart(model: torch.nn.Module) -> list[dict]:
    """Every trainable parameter decayed at the budget's rate except :func:`_never_decayed`'s."""
    never = _never_decayed(model)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if n not in never]},
        {"params": [p for n, p in params if n in never], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]  # LWS trains its scales alone


def sam_rho(cfg: RunConfig, epoch: int) -> float:
    """SAM's radius in ``epoch`` (1-based): ``sam_rho_schedule`` split evenly over the
    epochs, else ``sam_rho``. A function of the epoch alone, so a resumed run follows it."""
    t = cfg.train
    if not t.sam_rho_schedule:
        return t.sam_rho
    n = len(t.sam_rho_schedule)
    return t.sam_rho_schedule[min(n - 1, (epoch - 1) * n // t.epochs)]


def stores_logits(objective) -> bool:
    """Whether ``objective.evaluate`` can hand back its logits (``logits_out``; a plugin's own
    ``evaluate`` may not take it, and its runs then store no logits)."""
    import inspect

    evaluate = getattr(objective, "evaluate", None)  # a pretraining stage evaluates nothing
    try:
        return evaluate is not None and "logits_out" in inspect.signature(evaluate).parameters
    except (TypeError, ValueError):
        return False


def _evaluate_only(
    objective, cfg: RunConfig, data: LTData, device: torch.device, run_dir: Path | None = None
) -> FitResult:
    """An evaluation-only stage: its parameter chosen on validation, then the test set once.
    Both selections hold that one evaluation (there is no epoch to choose). With ``run_dir``
    its test and validation logits at the chosen parameter are stored there (one more pass
    over the validation set)."""
    if data.val is None:
        raise ValueError(
            f"method {cfg.method.name} chooses tau on a validation set, and dataset {cfg.data.name} has none "
            "(set split.val_per_class)"
        )
    tick = time.perf_counter()
    t = cfg.train
    val = make_batches(data, data.val, cfg, device)
    scores = objective.choose_tau(val, t.eval_batch_size)
    keep = run_dir is not None and rank_world()[0] == 0 and stores_logits(objective)
    keeper = LogitKeeper(run_dir) if keep else None
    test_logits: dict | None = {} if keeper is not None else None
    stats = objective.evaluate(make_batches(data, data.test, cfg, device), t.eval_batch_size, test_logits)
    chosen = {"epoch": 0, "tau": objective.tau, "val_top1": scores[objective.tau], "val_scores": scores, **stats}
    result = FitResult({"last": chosen, "best_val": dict(chosen)})
    if keeper is not None:
        val_logits: dict = {}
        objective.evaluate(val, t.eval_batch_size, val_logits)
        keeper.keep(0, test_logits, val_logits)
        result.logits = keeper.finish(result.results)
    result.eval_seconds = time.perf_counter() - tick
    return result


def fit(
    cfg: RunConfig,
    data: LTData,
    run_dir: Path,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
    deps: Dependencies | None = None,
) -> FitResult:
    """Train ``cfg`` on ``data``, checkpointing into ``run_dir`` after every epoch.

    If ``run_dir`` holds a checkpoint, training resumes after its epoch.

    Args:
        cfg: the resolved run configuration.
        data: the long-tailed dataset.
        run_dir: folder for ``checkpoint.pt``.
        device: training device.
        on_epoch: called as ``on_epoch(epoch, epochs, info)`` after each epoch, with
            ``info`` the epoch's history row; an exception raised there stops training
            with the latest checkpoint on disk (that epoch's, unless
            ``train.checkpoint_minutes`` spaces checkpoints out).
        deps: checkpoints of earlier stages (MGP encoder, distillation teacher).

    Returns:
        FitResult with test statistics of the last epoch and of the best validation epoch
        (empty for a pretraining stage).

    Raises:
        NonFiniteLoss: the loss became NaN or infinite.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest conv kernels once
    run_dir.mkdir(parents=True, exist_ok=True)
    objective = build_objective(cfg, data, device, deps or Dependencies())
    if not objective.trains:
        return _evaluate_only(objective, cfg, data, device, run_dir)
    loop = _Loop.build(cfg, objective, data, device)
    loop.run_dir = run_dir
    # Stores the selections' logits (ltbench.reports.posthoc); one process writes.
    loop.keeper = LogitKeeper(run_dir, loop.rank == 0 and stores_logits(objective))
    ckpt_path = run_dir / CHECKPOINT
    result = _resume(ckpt_path, loop) if ckpt_path.exists() else FitResult(results={})
    loop.keeper.restore(result.results)  # a resumed run's best epoch so far keeps its logits
    t = cfg.train
    best_val = max((h["val_top1"] for h in result.history if h.get("val_top1") is not None), default=-1.0)
    last_save = time.monotonic()
    for epoch in range(result.resumed_from_epoch + 1, t.epochs + 1):
        tick = time.perf_counter()
        train_loss = loop.train_epoch(epoch)
        train_time = time.perf_counter() - tick
        tick = time.perf_counter()
        val_top1, best_val = loop.evaluate_and_select(epoch, result.results, best_val)
        eval_time = time.perf_counter() - tick

        result.train_seconds += train_time
        result.eval_seconds += eval_time
        # Each unreadable file once, however many epochs and evaluations met it.
        met = {path for b in (loop.train, loop.val, loop.test) if b is not None for path in b.unreadable}
        result.unreadable = sorted(met.union(result.unreadable))
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_top1": val_top1,
            "lr": loop.optimizer.param_groups[0]["lr"],
            "seconds": train_time + eval_time,
        }
        result.history.append(row)
        if loop.rank != 0:
            continue  # one process writes; the others follow the same path
        if epoch == t.epochs or time.monotonic() - last_save >= 60 * t.checkpoint_minutes:
            last_save = time.monotonic()
            _save(ckpt_path, epoch, loop, result)
        if on_epoch is not None:
            on_epoch(epoch, t.epochs, row)
    if loop.rank == 0:
        result.logits = loop.keeper.finish(result.results)
    return result


@dataclass
class _Loop:
    """What one run's epochs share: the objective, optimiser, schedule, Mixup and batches."""

    cfg: RunConfig
    objective: object
    optimizer: object
    scheduler: CosineLRScheduler
    mixup: Mixup | None
    train: object
    val: object | None
    test: object | None
    batch_size: int
    steps_per_epoch: int
    device: torch.device
    rank: int
    world: int
    keeper: LogitKeeper | None = None  # set by fit: keeps each selection's logits
    # The weights of the epoch the validation set picked, on the host, until the test set is
    # evaluated on them after the last epoch (saved in checkpoints until then).
    best_state: dict | None = None
    run_dir: Path | None = None  # set by fit: where the best-on-validation weights go (BEST_VAL)
    max_norm: MaxNorm | None = None  # train.max_norm: its radius from the weights before any step or resume

    @classmethod
    def build(cls, cfg: RunConfig, objective, data: LTData, device: torch.device) -> _Loop:
        t = cfg.train
        model = objective.model
        rank, world = rank_world()
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            objective.forward = DistributedDataParallel(model, device_ids=ids)
        if t.compile:
            objective.forward = torch.compile(objective.forward)
        optimizer = build_optimizer(cfg, model)
        train = make_batches(data, data.train, cfg, device)
        val = make_batches(data, data.val, cfg, device) if data.val is not None and objective.has_eval else None
        test = make_batches(data, data.test, cfg, device) if objective.has_eval else None
        batch_size = min(t.batch_size, len(train) - len(train) % 2)
        steps_per_epoch = len(train) // batch_size
        scheduler = CosineLRScheduler(
            optimizer.base if isinstance(optimizer, SAM) else optimizer,
            # With warmup_prefix the cosine starts after warm-up: it must end at the last step.
            t_initial=max(1, t.epochs * steps_per_epoch - round(t.warmup_epochs * steps_per_epoch)),
            lr_min=t.min_lr,
            warmup_t=round(t.warmup_epochs * steps_per_epoch),
            warmup_lr_init=min(1e-6, t.scaled_lr),
            warmup_prefix=True,
            t_in_epochs=False,
        )
        mixup = None
        if t.mixup > 0 or t.cutmix > 0:
            mixup = Mixup(
                mixup_alpha=t.mixup,
                cutmix_alpha=t.cutmix,
                label_smoothing=t.label_smoothing,
                num_classes=cfg.data.num_classes,
            )
        return cls(
            cfg,
            objective,
            optimizer,
            scheduler,
            mixup,
            train,
            val,
            test,
            batch_size,
            steps_per_epoch,
            device,
            rank,
            world,
            max_norm=MaxNorm(model, t.max_norm) if t.max_norm > 0 else None,
        )

    def train_epoch(self, epoch: int) -> float:
        """One epoch of steps; returns its mean training loss (the epoch's one host sync).

        Raises:
            NonFiniteLoss: the loss became NaN or infinite.
        """
        t, objective, optimizer, device = self.cfg.train, self.objective, self.optimizer, self.device
        rank, world = self.rank, self.world
        objective.train_mode()
        loss_sum = torch.zeros((), device=device)
        step = (epoch - 1) * self.steps_per_epoch
        hard_labels = bool(t.mixup_off_epoch) and epoch > t.mixup_off_epoch  # DeiT-LT's DRW phase
        if isinstance(optimizer, SAM):
            optimizer.rho = sam_rho(self.cfg, epoch)
        seed = _epoch_seed(self.cfg.seed, epoch)
        with seeded(seed):
            for x, y in self.train.train_batches(self.batch_size, seed, epoch, t.epochs):
                # Every process draws the same global batch (same seeds) and takes its share.
                x, target = (x, y) if hard_labels else _targets(self.cfg, self.mixup, x, y)
                x, target = x[rank::world], target[rank::world]
                micro = t.micro_batch or len(x)
                chunks = list(zip(x.split(micro), target.split(micro)))

                def closure(chunks=chunks, n=len(x)):
                    optimizer.zero_grad(set_to_none=True)
                    total = torch.zeros((), device=device)
                    for i, (xc, tc) in enumerate(chunks):
                        # Gradients sync across processes on the last micro-batch only.
                        sync = world == 1 or i == len(chunks) - 1
                        with contextlib.nullcontext() if sync else objective.forward.no_sync():
                            loss = objective.loss(xc, tc, epoch) * (len(xc) / n)
                            loss.backward()
                        total += loss.detach()
                    if t.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(objective.model.parameters(), t.grad_clip)
                    return total

                if isinstance(optimizer, SAM):
                    loss = optimizer.step(closure)
                else:
                    loss = closure()
                    optimizer.step()
                if self.max_norm is not None:
                    self.max_norm(objective.model)
                step += 1
                self.scheduler.step_update(step)
                loss_sum += loss.detach()
        train_loss = float(all_mean(loss_sum)) / self.steps_per_epoch
        if not np.isfinite(train_loss):
            raise NonFiniteLoss(
                f"training loss is {train_loss} at epoch {epoch}; lower train.lr or set train.grad_clip"
            )
        return train_loss

    def evaluate_and_select(self, epoch: int, results: dict, best_val: float) -> tuple[float | None, float]:
        """Validation accuracy of ``epoch``. When it is the best so far, the epoch's weights are
        kept (``best_val``); after the last epoch the test set is evaluated on the last weights
        (``last``) and on the kept ones, never to choose.

        Evaluating the test set once for the chosen epoch, rather than at every improvement,
        gives the same numbers for a fraction of the passes (23 improvements in 80 epochs on
        the main job's ViT)."""
        t = self.cfg.train
        val_top1 = None
        if self.val is not None:
            val_stats = self.objective.evaluate(self.val, t.eval_batch_size)
            val_top1 = sum(val_stats["correct"]) / max(sum(val_stats["total"]), 1)
        if val_top1 is not None and val_top1 > best_val:
            best_val = val_top1
            results["best_val"] = {"epoch": epoch, "val_top1": val_top1}
            self.best_state = _host_copy(self.objective.model.state_dict())
        if epoch == t.epochs and self.test is not None:
            results["last"] = {"epoch": epoch, "val_top1": val_top1, **self._evaluate_and_keep(epoch)}
            best = results.get("best_val")
            if best is not None and "correct" not in best:  # chosen, not yet evaluated on the test set
                if best["epoch"] == epoch:
                    best.update({k: v for k, v in results["last"].items() if k not in best})
                else:
                    best.update(self._evaluate_and_keep(best["epoch"], self.best_state))
                    self._keep_best(best["epoch"])
                self.best_state = None
            if self.keeper is not None:
                self.keeper.write()  # both selections' logits, on disk before the last checkpoint
        return val_top1, best_val

    def _keep_best(self, epoch: int) -> None:
        """Write the chosen epoch's weights beside the checkpoint (:data:`BEST_VAL`), before the
        last checkpoint drops them, for stages that consume this run's best-on-validation
        weights. One process writes; a run killed before its last checkpoint writes it again."""
        if self.rank == 0 and self.run_dir is not None:
            save_atomic({"epoch": epoch, "model": self.best_state}, self.run_dir / BEST_VAL)

    def _evaluate_and_keep(self, epoch: int, state: dict | None = None) -> dict:
        """Test statistics of the model (with ``state``'s weights loaded for the call, if
        given), its test and validation logits kept for the run's logits file."""
        model = self.objective.model
        current = _host_copy(model.state_dict()) if state is not None else None
        if state is not None:
            model.load_state_dict(state)
        try:
            keep = self.keeper is not None and self.keeper.enabled and epoch not in self.keeper.entries
            test_logits: dict | None = {} if keep else None
            stats = self.objective.evaluate(self.test, self.cfg.train.eval_batch_size, test_logits)
            if keep and getattr(self.objective, "test_views", 0):  # each expert on augmented test views
                seed = _epoch_seed(self.cfg.seed, 10**6 + epoch)
                test_logits["views"] = self.objective.view_logits(self.test, self.cfg.train.eval_batch_size, seed)
            if keep:
                val_logits: dict | None = None
                if self.val is not None:
                    val_logits = {}
                    self.objective.evaluate(self.val, self.cfg.train.eval_batch_size, val_logits)
                self.keeper.keep(epoch, test_logits, val_logits)
        finally:
            if current is not None:
                model.load_state_dict(current)
        return stats


def _host_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _resume(path: Path, loop: _Loop) -> FitResult:
    """Model and optimiser state from the checkpoint at ``path``; the results so far."""
    ckpt = torch.load(path, map_location=loop.device, weights_only=True)
    loop.objective.model.load_state_dict(ckpt["model"])
    loop.optimizer.load_state_dict(ckpt["optimizer"])
    loop.best_state = ckpt.get("best_model")
    return FitResult(
        ckpt["results"],
        ckpt["history"],
        ckpt["train_seconds"],
        ckpt["eval_seconds"],
        ckpt["epoch"],
        ckpt.get("unreadable", []),
    )


def _save(path: Path, epoch: int, loop: _Loop, result: FitResult) -> None:
    save_atomic(
        {
            "epoch": epoch,
            "model": loop.objective.model.state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "best_model": loop.best_state,  # None once the test set has seen the chosen epoch
            "results": result.results,
            "history": result.history,
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "unreadable": result.unreadable,
        },
        path,
    )
