"""A sweep's plan on disk, and what ``--dry-run`` and ``ltbench status`` show of it.

``run`` writes the plan to ``<out>/sweeps/latest.json`` before anything starts; ``status``
reads it back and asks each run folder (record, checkpoint, job file) and, for SLURM jobs,
the scheduler's accounting what became of each stage.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any

from ..core.atomic import write_text_atomic
from ..core.errors import UserError
from ..store.records import RECORD, read_record
from ..store.sqlite import ResultStore

SWEEP_FILE = Path("sweeps") / "latest.json"
MAX_SWEEP_RUNS = 10_000  # runs (methods x datasets x seeds) of one sweep without --allow-large-sweep
_ROW_KEYS = ("run_id", "label", "run_dir")


def check_device(device: str | None) -> None:
    """Refuse a device that does not exist here (``cudaa``; ``cuda`` without a GPU; ``cuda:3``
    on a one-GPU machine) before anything is planned or written. None means "pick one"."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N (N from 0)") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is visible on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise UserError(f"--device {device}: this machine has {n} GPU(s), cuda:0 to cuda:{n - 1}")
        return
    if dev.type == "mps" and torch.backends.mps.is_available():
        return
    raise UserError(f"--device {device}: not available on this machine; use cpu or cuda")


def check_plan_args(args: dict[str, Any]) -> None:
    """Checks of a sweep's own arguments (the recipes check their values): names given,
    seeds and the data seed >= 0 integers, at most :data:`MAX_SWEEP_RUNS` runs unless
    ``allow_large_sweep``."""
    for key, flag in (("methods", "--methods"), ("data", "--data")):
        names = args.get(key)
        if names is not None and not [n for n in names if str(n).strip()]:
            raise UserError(f"{flag} names nothing; give comma-separated names, or leave {flag} out")
    seeds = list(args.get("seeds") or ())
    if not seeds:
        raise UserError("no seeds; give --seeds 0 or 0-4")
    for what, values in (("seed", seeds), ("data seed", [args.get("data_seed", 0)])):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                flag = "--seeds" if what == "seed" else "--data-seed"
                raise UserError(f"{flag}: {what} {v!r} is not an integer >= 0; e.g. {flag} 0")
    runs = len(seeds) * len(args.get("methods") or [None]) * len(args.get("data") or [None])
    if runs > MAX_SWEEP_RUNS and not args.get("allow_large_sweep"):
        raise UserError(
            f"the sweep has {runs:,} runs, more than {MAX_SWEEP_RUNS:,}; pass --allow-large-sweep if you mean it"
        )


def check_writable_dir(folder: str | Path, flag: str = "--out") -> Path:
    """Make ``folder`` (and its parents) and check that a file can be created in it; else a
    one-line :class:`UserError` naming it. Leaves nothing behind."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file, not a folder; pass {flag} DIR")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ltbench-probe.{os.getpid()}.{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST):
            raise
        raise UserError(f"cannot write in {flag} {folder} ({e.strerror}); pass {flag} DIR on a writable disk") from None
    return folder


def save_sweep(specs, out_dir: Path) -> Path:
    """Write the plan to ``out_dir/sweeps/latest.json`` (atomically) and return its path."""
    path = Path(out_dir) / SWEEP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "run_id": s.run_id,
            "label": s.label,
            "run_dir": str(s.run_dir),
            "needs": [[role, str(d)] for role, d in s.needs],
        }
        for s in specs
    ]
    return write_text_atomic(path, json.dumps(rows, indent=1))


def load_sweep(out_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``out_dir``'s sweep file, checked: a missing, unreadable or damaged file is
    a :class:`UserError` naming it."""
    path = Path(out_dir) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no sweep at {path}; start one with `ltbench run` (or pass --out DIR)")
    fix = "run the sweep's `ltbench run` command again (it rewrites the file; finished runs are skipped)"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the sweep file {path} ({e}); {fix}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"the sweep file {path} is not valid JSON ({e}); {fix}") from None
    if not isinstance(rows, list):
        raise UserError(f"the sweep file {path} holds {type(rows).__name__}, not a list of runs; {fix}")
    for i, row in enumerate(rows):
        missing = [k for k in _ROW_KEYS if not isinstance(row, dict) or not isinstance(row.get(k), str)]
        if missing:
            raise UserError(f"the sweep file {path}: run {i} lacks {missing[0]!r} (or is not a table); {fix}")
    return rows


def plan_rows(specs, store: ResultStore | None) -> list[dict[str, Any]]:
    """What a run would do: each stage, its dependencies, and whether it is done already."""
    by_dir = {str(s.run_dir): s for s in specs}
    rows = []
    for s in specs:
        done = store is not None and store.status(s.run_id) == "done"
        rows.append(
            {
                "label": s.label,
                "run_id": s.run_id[:10],
                "epochs": s.config.train.epochs,
                "needs": [f"{role}: {by_dir[str(d)].label}" for role, d in s.needs],
                "action": "skip (done)" if done else ("resume" if (s.run_dir / "checkpoint.pt").exists() else "run"),
            }
        )
    return rows


def _slurm_state(job: dict) -> str | None:
    if job.get("executor") != "slurm":
        return None
    try:
        import submitit

        return submitit.SlurmJob(job["folder"], job["job_id"]).state
    except Exception:  # noqa: BLE001 - no accounting reachable: say nothing rather than guess
        return None


def stage_state(run_dir: Path) -> dict[str, Any]:
    """queued / running (epoch) / done / failed (last line of the error, log) / cancelled / not started."""
    try:
        record = read_record(run_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"the record {run_dir / RECORD} is damaged ({e}); delete it and run the sweep again") from None
    job_path = run_dir / "job.json"
    try:
        job = json.loads(job_path.read_text()) if job_path.is_file() else {}
    except (OSError, ValueError) as e:
        raise UserError(f"the job file {job_path} is damaged ({e}); delete it and run the sweep again") from None
    if not isinstance(job, dict) or (record is not None and not isinstance(record, dict)):
        bad = job_path if not isinstance(job, dict) else run_dir / RECORD
        raise UserError(f"{bad} is not a JSON table; delete it and run the sweep again")
    log = job.get("stderr")
    if record is not None:
        error = str(record.get("error") or "").strip().splitlines()
        state = record.get("status", "unknown")
        return {"state": state, "detail": error[-1] if error else "", "log": log or str(run_dir / RECORD)}
    epoch = None
    if (run_dir / "checkpoint.pt").is_file():
        import torch

        # mmap: read the epoch without loading the weights (a ViT-B checkpoint is about 1 GB).
        try:
            ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True, mmap=True)
            epoch = int(ckpt["epoch"])
        except Exception as e:  # noqa: BLE001 - truncated, not a checkpoint, unsafe: all one answer
            return {
                "state": "damaged",
                "detail": f"checkpoint.pt cannot be read ({type(e).__name__}); delete it to restart the run",
                "log": str(run_dir / "checkpoint.pt"),
            }
    slurm = _slurm_state(job)
    if slurm is not None and slurm.startswith("CANCELLED"):
        return {"state": "cancelled", "detail": slurm, "log": log}
    if slurm in ("PENDING", "REQUEUED"):
        return {"state": "queued", "detail": slurm, "log": log}
    if slurm == "RUNNING" or (slurm is None and epoch is not None and job):
        return {"state": "running", "detail": f"epoch {epoch or 0}", "log": log}
    if slurm is not None and slurm not in ("COMPLETED",):
        return {"state": "failed", "detail": f"the job ended {slurm} without a record", "log": log}
    if epoch is not None:
        return {"state": "interrupted", "detail": f"epoch {epoch}; the same command resumes it", "log": log}
    return {"state": "queued" if job else "not started", "detail": "", "log": log}


def status_rows(out_dir: Path) -> list[dict[str, Any]]:
    """One row per run of ``out_dir``'s latest sweep: label, run id and :func:`stage_state`."""
    return [
        {"label": row["label"], "run_id": row["run_id"][:10], **stage_state(Path(row["run_dir"]))}
        for row in load_sweep(out_dir)
    ]
