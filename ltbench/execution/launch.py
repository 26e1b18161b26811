"""Run a plan in-process, as local subprocesses, or on SLURM, through submitit.

One unit of work, :class:`RunJob`, serves the three back ends: it executes one planned run
and writes that run's record into its folder (and the runs folder's journal), never the store:
one process on one host writes the store, the driver while it follows the jobs, or after it
``ltbench ingest`` and every command that reads the store (they sync it from the folders).
So a sweep over a network file system (NFS, Lustre, GPFS) never has jobs on many nodes
locking one SQLite file, and the driver may exit at any time (``--no-wait``).

Stages that depend on others (MGP -> fine-tune, teacher -> student) are submitted in waves,
by depth. On SLURM each wave is one job array, or several under the cluster's ``MaxArraySize``
(:mod:`ltbench.execution.arrays`: how they split and share the ``%N`` cap), submitted at once
with ``--dependency=afterany:<every array of the previous wave>``: SLURM holds it until the
wave before has ended, and each dependent checks its own stage's record when it starts, so one
failed stage fails its dependents only, not the whole next wave (``afterok`` on an array would
hold them all). The local executor has no dependencies, so the driver waits for each wave.

Data parallelism: a job runs ``nodes`` x tasks per node processes (one per GPU, or
``tasks_per_node`` on a CPU), which :func:`ltbench.training.distributed.init_from_submitit`
joins into one process group.

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
from ..store.access import connect_store
from ..store.records import read_record
from .arrays import SLURM_DEFAULT_MAX_ARRAY_SIZE, dependency, plan_wave, slurm_max_array_size
from .runner import execute_run, ingest_finished, with_stage_folders

EXECUTORS = ("inline", "local", "slurm")
JOB_FILE = "job.json"


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each job; from a cluster profile (TOML ``[slurm]`` table) and the CLI."""

    partition: str = ""
    gpus_per_job: int = 0  # GPUs per node; each node of a job runs one data-parallel task per GPU
    cpus_per_job: int = 2  # CPUs of each task (and its torch threads)
    mem_gb: int = 0  # 0: the partition's default
    time_min: int = 60
    account: str = ""
    qos: str = ""
    constraint: str = ""
    array_parallelism: int = 64  # --max-parallel: jobs running at once over the whole sweep (SLURM's %N)
    max_array_size: int = 0  # the cluster's MaxArraySize; 0: ask scontrol (SLURM's default 1001 if it cannot say)
    nodes: int = 1  # nodes per job; one process group spans all their tasks
    tasks_per_node: int = 1  # CPU jobs: data-parallel tasks per node (with GPUs: one per GPU)
    sbatch: dict[str, Any] = field(default_factory=dict)  # any other sbatch option, e.g. {"exclusive": true}

    @property
    def tasks_per_job_node(self) -> int:
        """Processes each node of a job runs: one per GPU, else ``tasks_per_node``."""
        return self.gpus_per_job or self.tasks_per_node


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
    where = f"cluster profile {path}" if path else "slurm options"
    table = _parallel_alias(dict(table), where)
    table = {**table, **{k: v for k, v in cli.items() if v is not None}}
    options = from_mapping(SlurmOptions, table, where)
    count, nonneg = (1, None, True, True), (0, None, True, True)
    ranges = {"gpus_per_job": nonneg, "mem_gb": nonneg, "cpus_per_job": count, "time_min": count}
    counts = {"array_parallelism": count, "nodes": count, "tasks_per_node": count, "max_array_size": nonneg}
    check_ranges(options, {**ranges, **counts}, where, "")
    if options.max_array_size == 1:
        raise RecipeError(
            f"{where}: max_array_size = 1 leaves no room for an array task; give the cluster's "
            "MaxArraySize (`scontrol show config | grep MaxArraySize`) or 0 to ask scontrol"
        )
    if options.gpus_per_job and options.tasks_per_node not in (1, options.gpus_per_job):
        raise RecipeError(
            f"{where}: tasks_per_node = {options.tasks_per_node} with gpus_per_job = {options.gpus_per_job}; "
            "a GPU job runs one task per GPU of each node, so leave tasks_per_node out (it is for CPU jobs)"
        )
    return options


def _parallel_alias(table: dict[str, Any], where: str) -> dict[str, Any]:
    """A profile's ``max_parallel`` is ``array_parallelism`` (the CLI's --max-parallel)."""
    if "max_parallel" not in table:
        return table
    value = table.pop("max_parallel")
    if table.get("array_parallelism", value) != value:
        raise RecipeError(
            f"{where}: max_parallel = {value!r} and array_parallelism = {table['array_parallelism']!r} are "
            "one setting (jobs at once over the sweep); keep one of them"
        )
    return {**table, "array_parallelism": value}


class RunJob(submitit.helpers.Checkpointable):
    """Execute one planned run in whatever process submitit gives it, writing only its run
    folder (record, logits, journal entry): a job on another node never opens the store,
    whose file locks a network file system cannot be trusted with. The driver ingests what
    the job wrote (:func:`submit` with ``wait``), or ``ltbench ingest`` and every command
    that reads the store do (they sync it from the run folders)."""

    def __init__(self, spec: RunSpec, device: str | None = None, threads: int = 0):
        self.spec, self.device, self.threads = spec, device, threads

    def __call__(self) -> dict[str, Any]:
        from ..training.distributed import init_from_submitit

        init_from_submitit(self.device)  # several tasks per job: one process group (gloo for --device cpu)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        # Never forced here: the driver clears forced runs before submitting, so a requeued
        # job resumes from its checkpoint instead of starting over.
        # The job's log is a file: one plain line per epoch and one at the end, naming the run.
        from .progress import PlainReporter

        log = PlainReporter(sys.stderr)
        log.run_started(self.spec)
        record = execute_run(self.spec, None, self.device, on_epoch=lambda e, n, row: log.epoch(self.spec, e, n, row))
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
    """A submitit executor for ``kind`` (``local`` or ``slurm``) with each job's resources."""
    if kind == "local":
        if slurm.nodes > 1:
            raise ValueError(f"nodes = {slurm.nodes} needs --executor slurm; the local executor has one machine")
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(
            timeout_min=slurm.time_min,
            gpus_per_node=slurm.gpus_per_job,
            cpus_per_task=slurm.cpus_per_job,
            tasks_per_node=slurm.tasks_per_job_node,
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
    if slurm.tasks_per_job_node > 1 or slurm.gpus_per_job:
        params["ntasks_per_node"] = slurm.tasks_per_job_node  # one data-parallel process per GPU
    if slurm.nodes > 1:
        params["nodes"] = slurm.nodes
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


@dataclass
class Submissions:
    """What the driver handed the scheduler: jobs, and the calls (sbatch, or local subprocesses) it took."""

    kind: str
    jobs: int = 0
    calls: int = 0  # sbatch calls on SLURM: one per array or single job
    arrays: int = 0  # calls that were job arrays (two or more tasks)
    max_array_tasks: int = 0  # SLURM: tasks an array may hold (MaxArraySize - 1)
    max_parallel: int = 0  # SLURM: jobs running at once over the whole sweep

    def describe(self) -> str:
        """One line for the driver's output."""
        if self.kind != "slurm":
            return f"submitted {_n(self.jobs, 'job')} to the {self.kind} executor ({_n(self.calls, 'submission')})"
        arrays = (
            f"{_n(self.arrays, 'job array')} of at most {self.max_array_tasks} tasks" if self.arrays else "no arrays"
        )
        return (
            f"submitted {_n(self.jobs, 'job')} to SLURM in {_n(self.calls, 'sbatch call')} "
            f"({arrays}; at most {_n(self.max_parallel, 'job')} at once)"
        )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
    on_submitted: Callable[[Submissions], None] | None = None,
) -> list[submitit.Job]:
    """Submit ``specs`` to the ``local`` or ``slurm`` back end, wave by wave.

    Runs already done are not submitted (unless ``force``). On SLURM a wave is split into job
    arrays under the cluster's ``MaxArraySize`` (:mod:`ltbench.execution.arrays`). Once all is
    submitted, ``on_submitted`` gets the count of jobs and submissions; with ``wait`` the driver
    then polls until every job has ended and calls ``on_done(spec, record)`` for each.

    Returns:
        The submitted jobs.
    """
    slurm = slurm or SlurmOptions()
    folder = Path(folder)
    db = connect_store(store)
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

    def job_of(spec: RunSpec) -> RunJob:  # stages done under another --out: where the store says
        return RunJob(with_stage_folders(spec, db), device, threads)

    done = Submissions(kind, max_parallel=slurm.array_parallelism)
    if kind == "slurm" and any(todo):
        done.max_array_tasks = _max_array_size(slurm) - 1
    # Locally the driver is the queue: as many jobs at once as GPUs, or as CPU jobs fit the cores.
    side_by_side = (
        slurm.gpus_per_job
        and max(1, _gpu_count() // slurm.gpus_per_job)
        or max(1, (os.cpu_count() or 1) // max(slurm.cpus_per_job * slurm.tasks_per_job_node, 1))
    )
    previous: list[str] = []  # SLURM ids of the previous wave's arrays and single jobs
    for index, wave in enumerate(filter(None, todo)):
        if kind == "local":
            for start in range(0, len(wave), side_by_side):
                _wait_all(pending, on_done, db)
                chunk = wave[start : start + side_by_side]
                chunk_jobs = []
                for i, s in enumerate(chunk):
                    if slurm.gpus_per_job:  # each job its own GPUs, not all of them GPU 0
                        g = slurm.gpus_per_job
                        executor.update_parameters(visible_gpus=list(range(i * g, (i + 1) * g)))
                    chunk_jobs.append(executor.submit(job_of(s)))
                pending = list(zip(chunk, chunk_jobs))
                jobs += chunk_jobs
                done.jobs, done.calls = done.jobs + len(chunk_jobs), done.calls + len(chunk_jobs)
                for s, job in pending:
                    _write_job(s, job, kind, folder)
            continue
        submitted, previous = _submit_slurm_wave(executor, wave, index, previous, done, job_of)
        for s, job in submitted:
            _write_job(s, job, kind, folder)
        jobs += [job for _, job in submitted]
        pending += submitted
    if on_submitted is not None and done.jobs:
        on_submitted(done)
    if wait:
        _wait_all(pending, on_done, db)
    return jobs


def _max_array_size(slurm: SlurmOptions) -> int:
    """The setting, else what the reachable cluster says, else SLURM's default."""
    return slurm.max_array_size or slurm_max_array_size() or SLURM_DEFAULT_MAX_ARRAY_SIZE


def _submit_slurm_wave(
    executor: submitit.Executor,
    wave: list[RunSpec],
    index: int,
    previous: list[str],
    done: Submissions,
    job_of: Callable[[RunSpec], RunJob],
) -> tuple[list[tuple[RunSpec, submitit.Job]], list[str]]:
    """One wave as job arrays, each after every array of ``previous`` (and its lane's last one).

    Returns:
        (spec, job) of each run submitted, and the SLURM ids of this wave's arrays.
    """
    base = {k: v for k, v in executor.parameters.get("additional_parameters", {}).items() if k != "dependency"}
    submitted: list[tuple[RunSpec, submitit.Job]] = []
    ids: list[str] = []
    for chunk in plan_wave(index, len(wave), done.max_array_tasks + 1, done.max_parallel):
        after = dependency(previous + ([ids[chunk.after]] if chunk.after is not None else []))
        executor.update_parameters(
            array_parallelism=chunk.parallelism,
            additional_parameters={**base, "dependency": after} if after else base,
        )
        runs = [wave[i] for i in chunk.runs]
        with executor.batch():
            chunk_jobs = [executor.submit(job_of(s)) for s in runs]
        ids.append(chunk_jobs[0].job_id.split("_")[0])
        done.jobs, done.calls, done.arrays = done.jobs + len(runs), done.calls + 1, done.arrays + (len(runs) > 1)
        submitted += list(zip(runs, chunk_jobs))
    return submitted, ids


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _wait_all(pending: list[tuple[RunSpec, submitit.Job]], on_done, db) -> None:
    """Follow ``pending`` jobs until each has ended; ingest each record a job wrote into the
    store ``db`` (this process is its one writer) and hand it to ``on_done``."""
    left = list(pending)
    while left:
        still = []
        for spec, job in left:
            if job.done():
                record = read_record(spec.run_dir)
                if record is not None and record.get("run_id") == spec.run_id and record.get("finished_at"):
                    record = ingest_finished(db, record)
                else:  # killed, cancelled or out of time before it wrote a record
                    record = {"status": "failed", "error": _job_error(job)}
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


__all__ = ["EXECUTORS", "RunJob", "SlurmOptions", "Submissions", "load_profile", "make_executor", "submit", "waves"]
