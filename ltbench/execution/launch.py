"""Run a plan in-process, as local subprocesses, or on SLURM, through submitit.

One unit of work, :class:`RunJob`, serves the three back ends: it executes one planned run
and writes that run's record into its folder and the store, so results reach the store even
if the driver that submitted them has exited.

Stages that depend on others (MGP -> fine-tune, teacher -> student) are submitted in waves,
by depth. On SLURM each wave is one job array, submitted at once with
``--dependency=afterany:<previous wave>``: SLURM holds it until the wave before has ended,
and each dependent checks its own stage's record when it starts, so one failed stage fails
its dependents only, not the whole next wave (``afterok`` on an array would hold them all).
The local executor has no dependencies, so the driver waits for each wave.

Preemption and time limits: :class:`RunJob` is a ``submitit.helpers.Checkpointable``; on
SIGUSR1 before the limit submitit requeues it, and the run resumes from its last epoch's
checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
import tomllib

from ..config.ranges import check_ranges
from ..config.specs import RecipeError, from_mapping
from ..core.atomic import write_text_atomic
from ..planning.sweep import RunSpec
from ..store.records import read_record
from ..store.sqlite import ResultStore
from .runner import execute_run

EXECUTORS = ("inline", "local", "slurm")
JOB_FILE = "job.json"


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each job; from a cluster profile (TOML ``[slurm]`` table) and the CLI."""

    partition: str = ""
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    mem_gb: int = 0  # 0: the partition's default
    time_min: int = 60
    account: str = ""
    qos: str = ""
    constraint: str = ""
    array_parallelism: int = 64
    sbatch: dict[str, Any] = field(default_factory=dict)  # any other sbatch option, e.g. {"exclusive": true}


def load_profile(path: str | Path | None, **cli: Any) -> SlurmOptions:
    """Profile values, then CLI values that were given (not None) on top."""
    table: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"cluster profile {path} not found")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise RecipeError(f"cluster profile {path}: not valid TOML ({e}); see docs/scheduling.md") from None
        table = doc.get("slurm", doc)
        if not isinstance(table, dict):
            raise RecipeError(f"cluster profile {path}: [slurm] must be a table of options, got {table!r}")
    table = {**table, **{k: v for k, v in cli.items() if v is not None}}
    where = f"cluster profile {path}" if path else "slurm options"
    options = from_mapping(SlurmOptions, table, where)
    count, nonneg = (1, None, True, True), (0, None, True, True)
    ranges = {"gpus_per_job": nonneg, "mem_gb": nonneg, "cpus_per_job": count, "time_min": count}
    check_ranges(options, {**ranges, "array_parallelism": count}, where, "")
    return options


class RunJob(submitit.helpers.Checkpointable):
    """Execute one planned run in whatever process submitit gives it."""

    def __init__(self, spec: RunSpec, store: str, device: str | None = None, threads: int = 0):
        self.spec, self.store, self.device, self.threads = spec, store, device, threads

    def __call__(self) -> dict[str, Any]:
        from ..training.distributed import init_from_submitit

        init_from_submitit()  # several tasks per job (multi-GPU): one process group
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        # Never forced here: the driver clears forced runs before submitting, so a requeued
        # job resumes from its checkpoint instead of starting over.
        # The job's log is a file: one plain line per epoch and one at the end, naming the run.
        from .progress import PlainReporter

        log = PlainReporter(sys.stderr)
        log.run_started(self.spec)
        record = execute_run(
            self.spec, ResultStore(self.store), self.device, on_epoch=lambda e, n, row: log.epoch(self.spec, e, n, row)
        )
        log.run_finished(self.spec, record)
        return {"run_id": record["run_id"], "status": record.get("status"), "error": record.get("error")}


def waves(specs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """Runs grouped by dependency depth: a run's stages are all in earlier waves."""
    depth: dict[Path, int] = {}
    for s in specs:  # plan order puts every stage before its users
        depth[s.run_dir] = 1 + max((depth[d] for _, d in s.needs), default=-1)
    out: list[list[RunSpec]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for s in specs:
        out[depth[s.run_dir]].append(s)
    return out


def make_executor(kind: str, folder: Path, slurm: SlurmOptions) -> submitit.Executor:
    if kind == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(
            timeout_min=slurm.time_min, gpus_per_node=slurm.gpus_per_job, cpus_per_task=slurm.cpus_per_job
        )
        return ex
    if kind != "slurm":
        raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    ex = submitit.SlurmExecutor(folder=str(folder))
    extra = dict(slurm.sbatch)
    for key in ("account", "qos", "constraint"):
        if getattr(slurm, key):
            extra[key] = getattr(slurm, key)
    params = dict(
        time=slurm.time_min,
        cpus_per_task=slurm.cpus_per_job,
        array_parallelism=slurm.array_parallelism,
        additional_parameters=extra,
    )
    if slurm.partition:
        params["partition"] = slurm.partition
    if slurm.gpus_per_job:
        params["gpus_per_node"] = slurm.gpus_per_job
        params["ntasks_per_node"] = slurm.gpus_per_job  # one data-parallel process per GPU
    if slurm.mem_gb:
        params["mem"] = f"{slurm.mem_gb}GB"
    ex.update_parameters(**params)
    return ex


def _write_job(spec: RunSpec, job: submitit.Job, kind: str, folder: Path) -> None:
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "executor": kind,
        "job_id": job.job_id,
        "folder": str(folder),
        "submitted_at": time.time(),
        "stdout": str(job.paths.stdout),
        "stderr": str(job.paths.stderr),
    }
    write_text_atomic(spec.run_dir / JOB_FILE, json.dumps(info))


def submit(
    specs: Sequence[RunSpec],
    store: str | Path,
    kind: str,
    folder: Path,
    slurm: SlurmOptions | None = None,
    device: str | None = None,
    force: bool = False,
    wait: bool = True,
    on_done: Callable[[RunSpec, dict], None] | None = None,
) -> list[submitit.Job]:
    """Submit ``specs`` to the ``local`` or ``slurm`` back end, wave by wave.

    Runs already done are not submitted (unless ``force``). With ``wait`` the driver polls
    until every job has ended and calls ``on_done(spec, record)`` for each.

    Returns:
        The submitted jobs.
    """
    slurm = slurm or SlurmOptions()
    folder = Path(folder)
    db = ResultStore(store)
    executor = make_executor(kind, folder, slurm)
    todo = [[s for s in wave if force or db.status(s.run_id) != "done"] for wave in waves(specs)]
    if force:  # start over: the jobs themselves only ever resume or skip
        for s in specs:
            db.forget(s.run_id)
            if s.run_dir.exists():
                shutil.rmtree(s.run_dir)
    jobs: list[submitit.Job] = []
    pending: list[tuple[RunSpec, submitit.Job]] = []
    threads = slurm.cpus_per_job
    # Locally the driver is the queue: as many jobs at once as GPUs, or as CPU jobs fit the cores.
    side_by_side = (
        slurm.gpus_per_job
        and max(1, _gpu_count() // slurm.gpus_per_job)
        or max(1, (os.cpu_count() or 1) // max(slurm.cpus_per_job, 1))
    )
    previous = None
    for wave in filter(None, todo):
        if kind == "local":
            for start in range(0, len(wave), side_by_side):
                _wait_all(pending, on_done)
                chunk = wave[start : start + side_by_side]
                chunk_jobs = []
                for i, s in enumerate(chunk):
                    if slurm.gpus_per_job:  # each job its own GPUs, not all of them GPU 0
                        g = slurm.gpus_per_job
                        executor.update_parameters(visible_gpus=list(range(i * g, (i + 1) * g)))
                    chunk_jobs.append(executor.submit(RunJob(s, str(store), device, threads)))
                pending = list(zip(chunk, chunk_jobs))
                jobs += chunk_jobs
                for s, job in pending:
                    _write_job(s, job, kind, folder)
            continue
        if previous is not None:
            extra = {**executor.parameters.get("additional_parameters", {}), "dependency": f"afterany:{previous}"}
            executor.update_parameters(additional_parameters=extra)
        with executor.batch():
            wave_jobs = [executor.submit(RunJob(s, str(store), device, threads)) for s in wave]
        for s, job in zip(wave, wave_jobs):
            _write_job(s, job, kind, folder)
        previous = wave_jobs[0].job_id.split("_")[0]
        jobs += wave_jobs
        pending += list(zip(wave, wave_jobs))
    if wait:
        _wait_all(pending, on_done)
    return jobs


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _wait_all(pending: list[tuple[RunSpec, submitit.Job]], on_done) -> None:
    left = list(pending)
    while left:
        still = []
        for spec, job in left:
            if job.done():
                record = read_record(spec.run_dir) or {"status": "failed", "error": _job_error(job)}
                if on_done is not None:
                    on_done(spec, record)
            else:
                still.append((spec, job))
        left = still
        if left:
            time.sleep(1.0)


def _job_error(job: submitit.Job) -> str:
    try:
        job.result()
    except Exception as e:  # noqa: BLE001 - whatever killed the job is the message
        return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return "the job ended without writing a record"


__all__ = ["EXECUTORS", "RunJob", "SlurmOptions", "load_profile", "submit", "waves"]
