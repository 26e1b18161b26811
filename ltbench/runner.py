"""Plan and execute benchmark runs: methods x datasets x seeds under one budget.

:func:`plan_runs` resolves every run's configuration before anything starts, so a bad name,
recipe or override fails the whole command with nothing written. :func:`execute_run` is the
unit of work: a plain function of a picklable :class:`RunSpec` that trains, evaluates,
writes the run's record atomically into its folder and ingests it into the store.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data import LTData, build_data
from .errors import DataError, RunSetupError
from .metrics import summarize
from .provenance import provenance
from .recipes import Catalog, RunConfig, config_hash, load_catalog, resolve
from .store import DEFAULT_OUT, RECORD_SCHEMA, ResultStore, write_record
from .train import EpochCallback, fit

DEFAULT_DATASET = "mnist_lt"


@dataclass(frozen=True)
class RunSpec:
    """One run: its resolved configuration and where it writes."""

    config: RunConfig
    run_id: str
    run_dir: Path
    data_root: str | None = None  # where the dataset's files are; None: the recipe's default_root
    verify: bool = True  # check found figures and checksums against the recipe

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
    specs = []
    for ds in dataset_specs:
        for ms in method_specs:
            for seed in seeds:
                cfg = resolve(ms, ds, budget, seed, data_seed, tuple(overrides))
                h = config_hash(cfg)
                run_dir = Path(out_dir) / "runs" / cfg.data.name / cfg.method.name / f"{budget}-s{seed}-d{data_seed}-{h[:10]}"
                specs.append(RunSpec(cfg, h, run_dir, data_root, verify))
    return specs


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
        "provenance": {**provenance(device, data.fingerprint()), "data_root": str(data.root) if data.root else None,
                       "data_verified": data.verified, "data_files": data.files},
        "run_dir": str(spec.run_dir),
        "started_at": _now(),
    }


def execute_run(
    spec: RunSpec,
    store: ResultStore,
    device: str | torch.device | None = None,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run, then store its record; skip it if already done.

    A run that fails while training (NaN loss, a crash) is stored as ``failed`` with its
    error and returned; Ctrl-C propagates and leaves the last epoch's checkpoint, from which
    the same command resumes.

    Returns:
        The run's record (the stored one when skipped, with ``"skipped": True``).

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
        result = fit(spec.config, data, spec.run_dir, device, on_epoch)
    except (KeyboardInterrupt, RunSetupError):
        raise
    except DataError as e:  # bad input found while streaming (an undecodable image): not a result
        raise RunSetupError(f"{spec.label}: {e}") from e
    except Exception as e:  # noqa: BLE001 - any training failure becomes a failed record
        record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(),
                      finished_at=_now(), timings={"total_seconds": time.perf_counter() - tick})
        write_record(record, spec.run_dir)
        store.ingest(record)
        return record
    counts = record["train_counts"]
    record.update(
        status="done",
        error=None,
        results=result.results,
        metrics={sel: summarize(r["correct"], r["total"], counts, r.get("calib"))
                 for sel, r in result.results.items()},
        history=result.history,
        timings={"train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
                 "total_seconds": time.perf_counter() - tick, "resumed_from_epoch": result.resumed_from_epoch},
        skipped_images=result.skipped_images,
        finished_at=_now(),
    )
    write_record(record, spec.run_dir)
    store.ingest(record)
    return record
