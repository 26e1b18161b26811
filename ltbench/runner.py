"""Plan and execute benchmark runs: methods x datasets x seeds under one budget.

:func:`plan_runs` resolves every run's configuration before anything starts, so a bad name,
recipe or override fails the whole command with nothing written. :func:`execute_run` is the
unit of work: a plain function of a picklable :class:`RunSpec` that trains, evaluates,
writes the run's record atomically into its folder and ingests it into the store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data import LTData, build_data
from .distributed import is_main, rank_world
from .errors import DataError, RunSetupError
from .metrics import summarize
from .provenance import provenance
from .recipes import (
    Catalog,
    MethodConfig,
    RecipeError,
    RunConfig,
    TrainConfig,
    config_hash,
    from_mapping,
    load_catalog,
    resolve,
    run_config_from_dict,
)
from .store import DEFAULT_OUT, RECORD_SCHEMA, ResultStore, read_record, write_record
from .train import CHECKPOINT, Dependencies, EpochCallback, fit

DEFAULT_DATASET = "mnist_lt"


@dataclass(frozen=True)
class RunSpec:
    """One run: its resolved configuration and where it writes."""

    config: RunConfig
    run_id: str
    run_dir: Path
    data_root: str | None = None  # where the dataset's files are; None: the recipe's default_root
    verify: bool = True  # check found figures and checksums against the recipe
    needs: tuple[tuple[str, Path], ...] = ()  # (role, run folder) of the stages this one builds on
    overrides: tuple[str, ...] = ()  # the user's --set values, to name the variant in tables

    @property
    def label(self) -> str:
        c = self.config
        return f"{c.method.name} on {c.data.name} ({c.budget}, seed {c.seed})"


def plan_runs(
    methods: Sequence[str] = ("ce",),
    datasets: Sequence[str] = (DEFAULT_DATASET,),
    budget: str = "quick",
    seeds: Sequence[int] = (0,),
    data_seed: int = 0,
    overrides: Sequence[str] = (),
    out_dir: Path = DEFAULT_OUT,
    catalog: Catalog | None = None,
    data_root: str | None = None,
    verify: bool = True,
) -> list[RunSpec]:
    """Resolve every run of the sweep, in dataset, method, seed order.

    Raises:
        UnknownNameError: a method or dataset that no recipe defines.
        RecipeError: a budget the method lacks, or a bad override.
    """
    catalog = catalog or load_catalog()
    method_specs = [catalog.methods.get(m) for m in methods]
    dataset_specs = [catalog.datasets.get(d) for d in datasets]
    planned: dict[str, RunSpec] = {}  # run_id -> spec; a shared stage appears once, before its users
    for ds in dataset_specs:
        for ms in method_specs:
            for seed in seeds:
                cfg = resolve(ms, ds, budget, seed, data_seed, tuple(overrides))
                spec = _add_with_stages(cfg, planned, catalog, Path(out_dir), data_root, verify)
                planned[spec.run_id] = dataclasses.replace(spec, overrides=tuple(overrides))
    return list(planned.values())


def _add_with_stages(
    cfg: RunConfig, planned: dict[str, RunSpec], catalog: Catalog, out_dir: Path, data_root: str | None, verify: bool
) -> RunSpec:
    needs = []
    if cfg.method.pretrain == "mgp":
        needs.append(
            ("pretrained", _add_with_stages(pretrain_config(cfg), planned, catalog, out_dir, data_root, verify))
        )
    if cfg.method.teacher:
        needs.append(
            ("teacher", _add_with_stages(teacher_config(cfg, catalog), planned, catalog, out_dir, data_root, verify))
        )
    h = config_hash(cfg)
    if not verify:  # a custom, unverified copy of the data is another run than the official files
        h = hashlib.sha256(f"{h}:unverified".encode()).hexdigest()
    if h not in planned:
        run_dir = (
            out_dir / "runs" / cfg.data.name / cfg.method.name / f"{cfg.budget}-s{cfg.seed}-d{cfg.data_seed}-{h[:10]}"
        )
        planned[h] = RunSpec(cfg, h, run_dir, data_root, verify, tuple((role, dep.run_dir) for role, dep in needs))
    return planned[h]


# Budget keys that shape the ViT encoder and so carry over from fine-tuning to its MGP stage.
_ENCODER_KEYS = (
    "img_size",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "eval_batch_size",
    "num_workers",
)


def pretrain_config(cfg: RunConfig) -> RunConfig:
    """The MGP stage of ``cfg``: encoder shape from the budget, the rest from its ``pretrain``
    table. Fine-tuning settings are left out, so methods sharing an encoder share the stage."""
    t = cfg.train
    if not t.pretrain:
        raise RecipeError(
            f"method {cfg.method.name}, budget {cfg.budget}: a pretrain stage needs "
            f"[budgets.{cfg.budget}.pretrain] (epochs, batch_size, lr, warmup_epochs, ...)"
        )
    table = {**{k: getattr(t, k) for k in _ENCODER_KEYS}, **t.pretrain}
    train = from_mapping(TrainConfig, table, f"method {cfg.method.name}: budgets.{cfg.budget}.pretrain")
    method = MethodConfig("mgp_pretrain", 1, "mae", "mae")
    # MAE's own augmentation: RandomResizedCrop(0.2-1) and flip, none of fine-tuning's
    # RandAugment or random erasing (streamed data; in-memory sets keep their batched ones).
    aug = dataclasses.replace(cfg.data.augment, auto_augment="", re_prob=0.0, rrc_scale_min=0.2)
    return RunConfig(
        method, dataclasses.replace(cfg.data, augment=aug), train, cfg.budget, seed=0, data_seed=cfg.data_seed
    )


def teacher_config(cfg: RunConfig, catalog: Catalog) -> RunConfig:
    """The teacher run: its own recipe and budget on the same data, with a fixed seed.

    The student method's own augmentation (its ``[augment.<budget>]``) is taken back off:
    the teacher trains with the dataset's, as the papers' teachers were trained apart.
    """
    teacher = catalog.methods.get(cfg.method.teacher)
    data = cfg.data
    own = catalog.methods.get(cfg.method.name).augment.get(cfg.budget)
    if own:
        base = catalog.datasets.get(cfg.data.name).augment
        data = dataclasses.replace(
            data, augment=dataclasses.replace(data.augment, **{k: getattr(base, k) for k in own})
        )
    return resolve(teacher, data, cfg.budget, cfg.method.teacher_seed, cfg.data_seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _base_record(spec: RunSpec, data: LTData, device: torch.device) -> dict[str, Any]:
    cfg = spec.config
    return {
        "schema": RECORD_SCHEMA,
        "run_id": spec.run_id,
        "method": cfg.method.name,
        "dataset": cfg.data.name,
        "budget": cfg.budget,
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "config": cfg.to_dict(),
        "config_hash": spec.run_id,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "train_counts": data.class_counts.tolist(),
        "index_sizes": list(cfg.data.groups.index_sizes) or None,
        "group_convention": "threshold",
        "effective_batch": min(cfg.train.batch_size, len(data.train) - len(data.train) % 2),
        "world_size": rank_world()[1],  # processes sharing each step; the effective batch stays the recipe's
        "provenance": {
            **provenance(device, data.fingerprint()),
            "data_root": str(data.root) if data.root else None,
            "data_verified": data.verified,
            "data_files": data.files,
        },
        "run_dir": str(spec.run_dir),
        "overrides": list(spec.overrides),
        "started_at": _now(),
    }


class DependencyFailed(RuntimeError):
    """A stage this run builds on did not finish."""


def _dependencies(spec: RunSpec) -> Dependencies:
    found = {}
    for role, run_dir in spec.needs:
        record = read_record(run_dir)
        if record is None or record.get("status") != "done" or not (run_dir / CHECKPOINT).is_file():
            why = record.get("error") if record else "it has not run"
            raise DependencyFailed(f"its {role} stage ({run_dir}) did not finish: {why}")
        found[role] = (run_config_from_dict(record["config"]), run_dir / CHECKPOINT)
    return Dependencies(found["pretrained"][1] if "pretrained" in found else None, found.get("teacher"))


def execute_run(
    spec: RunSpec,
    store: ResultStore,
    device: str | torch.device | None = None,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run, then store its record; skip it if already done.

    A run that fails while training (NaN loss, a crash) is stored as ``failed`` with its
    error and returned; Ctrl-C propagates and leaves the latest checkpoint (the last epoch's,
    or with ``train.checkpoint_minutes`` the last one saved), from which the same command
    resumes.

    Returns:
        The run's record as the store gives it back (per-class vectors as read-only NumPy
        arrays; ``json.dumps(record, default=numpy.ndarray.tolist)`` writes it), with
        ``"skipped": True`` when it was already done.

    Raises:
        RunSetupError: the run could not start; nothing was written to the store.
    """
    if not force and store.status(spec.run_id) == "done":
        return {**store.get(spec.run_id), "skipped": True}
    if force and spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    device = torch.device(device) if device is not None else default_device()
    try:
        data = build_data(spec.config.data, spec.config.data_seed, spec.data_root, spec.verify)
    except (ValueError, ImportError, OSError) as e:
        raise RunSetupError(f"{spec.label}: cannot build its data: {e}") from e
    record = _base_record(spec, data, device)
    tick = time.perf_counter()
    try:
        deps = _dependencies(spec)
        result = fit(spec.config, data, spec.run_dir, device, on_epoch, deps)
    except (KeyboardInterrupt, RunSetupError):
        raise
    except DataError as e:  # bad input found while streaming (an undecodable image): not a result
        raise RunSetupError(f"{spec.label}: {e}") from e
    except Exception as e:  # noqa: BLE001 - any training failure becomes a failed record
        record.update(
            status="failed",
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
            finished_at=_now(),
            timings={"total_seconds": time.perf_counter() - tick},
        )
        write_record(record, spec.run_dir)
        store.ingest(record)
        return store.get(spec.run_id)
    if not is_main():  # data-parallel: process 0 writes the one record
        return record
    counts = record["train_counts"]
    record.update(
        status="done",
        error=None,
        results=result.results,
        metrics={sel: summarize(r["correct"], r["total"], counts, r.get("calib")) for sel, r in result.results.items()},
        history=result.history,
        timings={
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "total_seconds": time.perf_counter() - tick,
            "resumed_from_epoch": result.resumed_from_epoch,
        },
        skipped_images=result.skipped_images,
        unreadable_images=result.unreadable,
        finished_at=_now(),
    )
    write_record(record, spec.run_dir)
    store.ingest(record)
    return store.get(spec.run_id)  # one type for fresh and skipped runs
