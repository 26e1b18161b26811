"""One run end to end: its dependencies, training, the record and its ingest into the store.

:func:`execute_run` is the unit of work: a plain function of a picklable
:class:`~ltbench.planning.sweep.RunSpec` (planned, with every name and override checked, by
:func:`ltbench.planning.sweep.plan_runs`) that trains, evaluates, writes the run's record
atomically into its folder and ingests it into the store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..config.record import RECORD_SCHEMA, RunRecord
from ..config.specs import (
    run_config_from_dict,
)
from ..core.errors import DataError, RunSetupError, UserError
from ..core.provenance import provenance
from ..data import LTData, build_data
from ..evaluation.metrics import summarize
from ..planning.sweep import RunSpec
from ..store.records import read_record, write_record
from ..store.sqlite import ResultStore
from ..training.distributed import is_main, rank_world
from .runlock import RunLock

if TYPE_CHECKING:
    from ..training.loop import Dependencies, EpochCallback


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _base_record(spec: RunSpec, data: LTData, device: torch.device) -> RunRecord:
    cfg = spec.config
    return {  # see ltbench.config.record.RunRecord
        "schema": RECORD_SCHEMA,
        "run_id": spec.run_id,
        "method": cfg.method.name,
        "dataset": cfg.data.name,
        "budget": cfg.budget,
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "config": cfg.to_dict(),
        "config_hash": spec.run_id,
        "needs": dict(spec.need_ids),  # role -> run id of each stage consumed (its lineage)
        "variant": spec.variant,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "train_counts": data.class_counts.tolist(),
        # Per class, the validation images that best_val selects on (None: no validation set).
        "val_counts": None if data.val is None else np.bincount(data.val.labels, minlength=data.num_classes).tolist(),
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


def _dependencies(spec: RunSpec, store: ResultStore | None = None) -> Dependencies:
    from ..training.checkpoints import CHECKPOINT
    from ..training.loop import Dependencies

    found, selections = {}, {}
    ids = dict(spec.need_ids)
    wanted = {need.role: need.chosen for need in spec.config.method.stages}  # which weights, per role
    for role, run_dir in spec.needs:
        record = read_record(run_dir)
        stored = store.get(ids[role]) if store is not None and role in ids and record is None else None
        if stored and stored.get("status") == "done" and stored.get("run_dir"):
            run_dir = Path(stored["run_dir"])  # done under another --out: use it where it is
            record = read_record(run_dir)
        if record is None or record.get("status") != "done" or not (run_dir / CHECKPOINT).is_file():
            why = record.get("error") if record else "it has not run"
            raise DependencyFailed(f"its {role} stage ({run_dir}) did not finish: {why}")
        if role in ids and record.get("run_id") != ids[role]:  # never build on another lineage
            raise DependencyFailed(
                f"its {role} stage folder {run_dir} holds run {record.get('run_id')}, not {ids[role]}"
            )
        path, selections[role] = stage_weights(role, run_dir, record, wanted.get(role, "last"))
        found[role] = (run_config_from_dict(record["config"]), path)
    return Dependencies(
        found["pretrained"][1] if "pretrained" in found else None,
        found.get("teacher"),
        {role: v for role, v in found.items() if role not in ("pretrained", "teacher")},
        selections,
    )


def with_stage_folders(spec: RunSpec, store: ResultStore) -> RunSpec:
    """``spec`` with each consumed stage's folder moved to where the store says it finished,
    when its planned folder holds no record (done under another ``--out``): what a run that
    writes only its folder (no store) needs to find its stages."""
    if not spec.needs:
        return spec
    ids = dict(spec.need_ids)
    needs = []
    for role, run_dir in spec.needs:
        if role in ids and read_record(run_dir) is None:
            stored = store.get(ids[role])
            if stored and stored.get("status") == "done" and stored.get("run_dir"):
                run_dir = Path(stored["run_dir"])
        needs.append((role, run_dir))
    return dataclasses.replace(spec, needs=tuple(needs)) if tuple(needs) != spec.needs else spec


def stage_weights(role: str, run_dir: Path, record: dict[str, Any], selection: str) -> tuple[Path, dict[str, Any]]:
    """The weights file of the finished stage in ``run_dir`` (its ``record``) that ``selection``
    asks for, and what the consuming run's record says of it (``needs_selection``).

    "best_val" is the best-on-validation weights file, or the checkpoint where that epoch was the
    last; a stage without a validation set has no such epoch and gives its last (said so).

    Raises:
        DependencyFailed: the stage chose an earlier epoch but kept no weights of it (it
            finished under an ltbench that did not keep them).
    """
    from ..training.checkpoints import BEST_VAL, CHECKPOINT

    results = record.get("results") or {}
    last = (results.get("last") or {}).get("epoch")
    best = (results.get("best_val") or {}).get("epoch")
    used = {"run_id": record.get("run_id"), "selection": selection, "epoch": last, "file": CHECKPOINT}
    if selection != "best_val":
        return run_dir / CHECKPOINT, used
    if best is None:  # no validation set picked an epoch
        return run_dir / CHECKPOINT, {**used, "selection": "last", "asked": "best_val", "why": "no validation set"}
    used["epoch"] = best
    if best == last:
        return run_dir / CHECKPOINT, used
    if not (run_dir / BEST_VAL).is_file():
        raise DependencyFailed(
            f"its {role} stage {record.get('run_id', '?')[:10]} ({run_dir}) chose epoch {best} of {last} on "
            f"validation but kept no weights of it ({BEST_VAL}: it finished before ltbench kept them); re-run "
            f"that stage (ltbench run --methods {record.get('method')} ... --force), or consume its last epoch "
            f'with selection = "last" in the [[needs]] table of a recipe of your own'
        )
    return run_dir / BEST_VAL, {**used, "file": BEST_VAL}


def finished_before(specs: Sequence[RunSpec], store: ResultStore, force: bool = False) -> dict[str, dict[str, Any]]:
    """The stored records of ``specs`` already done (none with ``force``), marked ``skipped``:
    what an executor reports at once instead of running."""
    if force:
        return {}
    return {s.run_id: {**store.get(s.run_id), "skipped": True} for s in specs if store.status(s.run_id) == "done"}


def execute_run(
    spec: RunSpec,
    store: ResultStore | None,
    device: str | torch.device | None = None,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run, then store its record; skip it if already done.

    ``store`` None: the run writes only its folder (record, logits, journal entry) and never
    opens a store, as jobs on other hosts do; whoever follows the sweep ingests the record
    (the driver, or ``ltbench ingest`` / any command that syncs). "Done already" is then what
    the run folder says.

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
        UserError: the run's checkpoint is damaged (truncated); nothing was written.
    """
    done = _done_already(spec, store, force)
    if done is not None:
        return done
    if rank_world()[1] > 1:  # data-parallel ranks run it together: no lock among them
        return _execute_run(spec, store, device, force, on_epoch)
    # One process per run: a second one started at once waits here, then finds it done.
    with RunLock(spec.run_dir, on_wait=_say_waiting) as lock:
        return _execute_run(spec, store, device, force and not lock.waited, on_epoch)


def _say_waiting(owner: dict[str, Any], path: Path) -> None:
    import sys

    print(f"waiting: pid {owner.get('pid')} on {owner.get('host')} is running this run ({path})", file=sys.stderr)


def _check_checkpoint(run_dir: Path) -> None:
    """A checkpoint to resume from must load (weights only, memory-mapped: cheap)."""
    from ..training.checkpoints import CHECKPOINT

    path = run_dir / CHECKPOINT
    if not path.is_file():
        return
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]
    except Exception as e:  # noqa: BLE001 - truncated, garbled or not ltbench's: one answer
        raise UserError(
            f"the checkpoint {path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
            "delete it to start the run from epoch 0"
        ) from None


def _execute_run(
    spec: RunSpec,
    store: ResultStore,
    device: str | torch.device | None,
    force: bool,
    on_epoch: EpochCallback | None,
) -> dict[str, Any]:
    """:func:`execute_run` under the run's lock (the store is asked again: done meanwhile?)."""
    done = _done_already(spec, store, force)
    if done is not None:
        return done
    on_disk = None if force else read_record(spec.run_dir)
    if on_disk and on_disk.get("status") == "done" and on_disk.get("run_id") == spec.run_id:
        record = _ingest(store, on_disk)  # finished, but killed before the store heard of it
        return {**record, "skipped": True}
    if force and spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    device = torch.device(device) if device is not None else default_device()
    _check_checkpoint(spec.run_dir)
    try:
        data = build_data(spec.config.data, spec.config.data_seed, spec.data_root, spec.verify)
    except (ValueError, ImportError, OSError) as e:
        raise RunSetupError(f"{spec.label}: cannot build its data: {e}") from e
    record = _base_record(spec, data, device)
    tick = time.perf_counter()
    try:
        deps = _dependencies(spec, store)
        if deps.selections:  # which weights of each consumed stage (its run id, epoch, file)
            record["needs_selection"] = deps.selections
        from ..training.loop import fit  # here: planning needs neither timm nor the training loop

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
        if not is_main():  # data-parallel: process 0 writes the one record, failed ones too
            return record
        write_record(record, spec.run_dir)
        return _ingest(store, record)
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
    if result.logits is not None:  # an output: never part of the run's identity
        record["logits"] = result.logits
    write_record(record, spec.run_dir)
    return _ingest(store, record)


def _done_already(spec: RunSpec, store: ResultStore | None, force: bool) -> dict[str, Any] | None:
    """The stored record of a run done before, marked ``skipped`` (from its folder when there is
    no store); None when it must run."""
    if force:
        return None
    if store is None:
        on_disk = read_record(spec.run_dir)
        done = on_disk and on_disk.get("status") == "done" and on_disk.get("run_id") == spec.run_id
        return {**on_disk, "skipped": True} if done else None
    if store.status(spec.run_id) == "done":
        return {**store.get(spec.run_id), "skipped": True}
    return None


def ingest_finished(store: ResultStore, record: dict[str, Any]) -> dict[str, Any]:
    """What a driver does with a record a worker or job wrote to its folder only: index it
    (a skipped run's record is already in the store) and return it as the store gives it back."""
    if record.get("skipped") and store.status(record["run_id"]) == "done":
        return {**store.get(record["run_id"]), "skipped": True}
    clean = {k: v for k, v in record.items() if k != "skipped"}
    if clean.get("finished_at") is None:  # a placeholder (never ran): nothing to index
        return record
    out = _ingest(store, clean)
    return {**out, "skipped": True} if record.get("skipped") else out


def _ingest(store: ResultStore | None, record: dict[str, Any]) -> dict[str, Any]:
    """Index a record written to its folder; the record as the store gives it back (one type for
    fresh and skipped runs), or as written if the store stayed locked (the next command that
    reads the store ingests it from the folder) or there is no store (folder only)."""
    if store is None:
        return record
    if not store.ingest_retrying(record):
        warnings.warn(
            f"the store {store.path} stayed locked; run {record['run_id'][:10]} is safe in "
            f"{record['run_dir']} and reaches the store with the next command that reads it",
            stacklevel=2,
        )
        return record
    return store.get(record["run_id"])
