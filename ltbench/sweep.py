"""A sweep's plan on disk, and what ``--dry-run`` and ``ltbench status`` show of it.

``run`` writes the plan to ``<out>/sweeps/latest.json`` before anything starts; ``status``
reads it back and asks each run folder (record, checkpoint, job file) and, for SLURM jobs,
the scheduler's accounting what became of each stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .store import RECORD, ResultStore, read_record

SWEEP_FILE = Path("sweeps") / "latest.json"


def save_sweep(specs, out_dir: Path) -> Path:
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
    path = Path(out_dir) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no sweep at {path}; start one with `ltbench run` (or pass --out DIR)")
    return json.loads(path.read_text())


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
    record = read_record(run_dir)
    job_path = run_dir / "job.json"
    job = json.loads(job_path.read_text()) if job_path.is_file() else {}
    log = job.get("stderr")
    if record is not None:
        error = (record.get("error") or "").strip().splitlines()
        return {"state": record["status"], "detail": error[-1] if error else "", "log": log or str(run_dir / RECORD)}
    epoch = None
    if (run_dir / "checkpoint.pt").is_file():
        import torch

        # mmap: read the epoch without loading the weights (a ViT-B checkpoint is about 1 GB).
        ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True, mmap=True)
        epoch = ckpt["epoch"]
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
    return [
        {"label": row["label"], "run_id": row["run_id"][:10], **stage_state(Path(row["run_dir"]))}
        for row in load_sweep(out_dir)
    ]
