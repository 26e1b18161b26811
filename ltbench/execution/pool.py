"""Runs side by side in worker processes on one machine: the inline executor's speed.

On a CPU a small model cannot keep several cores busy: on the main job's ViT, two threads
train one run only 1.36x faster than one thread (docs/performance.md). Running
``jobs`` independent runs at once, each with ``threads`` intra-op threads (default: one run
per core, one thread each), uses the cores fully and never has threads of one run spin
against another's.

Scheduling: a run starts once every stage it consumes has finished (stages of other sweeps
are read from their folders as always). Among the runs that may start, the ones that head
the longest chain of work go first (the DeiT-LT teacher before its student), except that one
worker starts with the cheapest run, so that a first result shows within a minute. A run's
cost is its epochs times the seconds per epoch that finished runs of its kind took
(:mod:`ltbench.execution.cost`; the recipe's epoch count where none has finished), used only
for this order.

Thread count is a speed setting, kept out of every run's identity on purpose: the same run
with 1 and 2 threads agrees to the usual float32 noise, not bit for bit (a reduction splits
differently). With the default of one thread per run the numbers do not depend on how many
cores a machine has.

Workers are started with ``spawn`` (never ``fork`` after torch has started its threads); each
loads torch once and keeps it for the runs it is given. ``ltbench run`` starts them before it
makes its plan (:func:`prestart`), so that their imports overlap the driver's own.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from collections.abc import Sequence
from typing import Any

# At most this many workers start before the plan says how many runs there are.
PRESTART_MAX = 4
# Workers started by prestart(): [process, task queue, None], their event queue, their threads.
_prestarted: dict[str, Any] = {}
# Workers let go, with their queues: a spawned child unpickles its queues when it has started,
# and fails if this process has dropped them by then, so they are kept until it exits.
_let_go: list = []


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def surely_cpu(device: str | None) -> bool:
    """Whether runs given ``device`` train on a CPU, decided without importing torch: ``cpu``,
    or no device picked on a machine without an NVIDIA driver. False when unsure."""
    if device is not None:
        return device == "cpu"
    return not os.path.exists("/dev/nvidiactl")


def prestart(jobs: int | None, threads: int, device: str | None) -> int:
    """Start the workers of a side-by-side run now, before the driver imports torch and makes
    its plan: the workers' own imports of torch and timm (about 7 s of CPU each on the 2-core
    reference machine) then overlap the driver's instead of following them, and the first
    run starts that much sooner. Only where the runs surely train on a CPU
    (:func:`surely_cpu`) and ``jobs`` is not 1; at most :data:`PRESTART_MAX`.
    :func:`run_side_by_side` takes them; :func:`release_prestarted` ends those left unused.

    Returns:
        How many workers started.
    """
    if _prestarted or jobs == 1 or not surely_cpu(device):
        return 0
    n = min(jobs or _cpu_count() // max(1, threads), PRESTART_MAX)
    if n < 2:
        return 0
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    _prestarted.update(workers=[_spawn(ctx, threads, events) for _ in range(n)], events=events, threads=threads)
    return n


def release_prestarted() -> None:
    """Tell prestarted workers that no run used to leave (they would end with this process anyway)."""
    _let_go_of(_prestarted.pop("workers", []), _prestarted.get("events"))
    _prestarted.clear()


def _let_go_of(workers: list, events) -> None:
    for _, tasks, _ in workers:
        tasks.put(None)
    if workers:
        _let_go.append((workers, events))


def _spawn(ctx, threads: int, events) -> list:
    tasks = ctx.SimpleQueue()
    process = ctx.Process(target=_worker, args=(threads, tasks, events), daemon=True)
    process.start()
    return [process, tasks, None]  # process, its task queue, the run it has


def on_cpu(device: str | None) -> bool:
    """Whether runs given ``device`` (None: what
    :func:`ltbench.execution.runner.default_device` picks) train on a CPU."""
    import torch

    from .runner import default_device

    return (torch.device(device) if device else default_device()).type == "cpu"


def default_jobs(n_runs: int, device: str | None, threads: int | None = None) -> int:
    """How many runs train at once by default: one per core (or per ``threads`` cores) on a
    CPU, one on a GPU (its data pipeline wants the cores); never more than there are runs."""
    if not on_cpu(device):
        return 1
    return max(1, min(n_runs, _cpu_count() // max(1, threads or 1)))


def run_cost(spec) -> float:
    """The recipe's guess of a run's work (epochs, doubled for SAM's two passes), where no
    finished run tells better (:class:`ltbench.execution.cost.CostModel`)."""
    from .cost import epochs_guess

    return epochs_guess(spec)


def schedule_order(specs: Sequence, cost=run_cost) -> list:
    """``specs`` by priority: longest chain of dependent work first (a run's ``cost`` plus the
    longest chain of runs that consume it)."""
    users: dict[Any, list] = {s.run_dir: [] for s in specs}
    for s in specs:
        for _, d in s.needs:
            if d in users:
                users[d].append(s)
    chain: dict[Any, float] = {}
    for s in reversed(list(specs)):  # plan order puts stages before their users
        chain[s.run_dir] = cost(s) + max((chain[u.run_dir] for u in users[s.run_dir]), default=0.0)
    order = sorted(range(len(specs)), key=lambda i: (-chain[specs[i].run_dir], i))
    return [specs[i] for i in order]


def _worker(threads: int, tasks, events) -> None:
    """A worker process: runs the specs it is sent until it gets None, then leaves at once
    (``os._exit``: tearing torch down takes seconds and nothing is left to flush)."""
    import threading

    import torch

    from ..training import loop as train  # noqa: F401 - timm and the loop, loaded while the driver makes its plan

    threading.Thread(target=_follow_driver, args=(os.getppid(),), daemon=True).start()
    torch.set_num_threads(threads)
    try:
        _serve(tasks, events)
    except KeyboardInterrupt:  # Ctrl-C while waiting for work: the driver says what happened
        pass
    events.close()
    events.join_thread()
    os._exit(0)


def _follow_driver(driver: int) -> None:
    """End this worker within a second of its driver's death (kill -9 leaves no one to send it
    None): the run in hand keeps its last checkpoint, and its lock is then stale and reclaimed."""
    import time

    while os.getppid() == driver:
        time.sleep(1.0)
    os._exit(1)


def _serve(tasks, events) -> None:
    """A worker's loop: run each spec sent until None, reporting events to the driver."""
    from .runner import execute_run

    while True:
        item = tasks.get()
        if item is None:
            break
        spec, device, force = item

        def on_epoch(epoch: int, total: int, row: dict, spec=spec) -> None:
            events.put(("epoch", spec.run_id, (epoch, total, row)))

        events.put(("started", spec.run_id, None))
        try:
            record = execute_run(spec, None, device, force, on_epoch)  # its folder only: the driver ingests
        except BaseException as e:  # noqa: BLE001 - handed to the driver, which decides
            events.put(("error", spec.run_id, _picklable(e)))
            if isinstance(e, KeyboardInterrupt):
                break
            continue
        events.put(("finished", spec.run_id, record))


def _picklable(error: BaseException) -> BaseException:
    import pickle

    try:
        pickle.dumps(error)
        return error
    except Exception:  # noqa: BLE001 - whatever it was, its text survives
        return RuntimeError(f"{type(error).__name__}: {error}")


def run_side_by_side(
    specs: Sequence,
    store: str,
    device: str | None,
    force: bool,
    reporter,
    jobs: int,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Execute ``specs`` in ``jobs`` worker processes, each run with ``threads`` threads.

    From a script, call this (or ``ltbench.run(jobs=...)``) under ``if __name__ == "__main__":``,
    as any code that starts processes with ``spawn``.

    Args:
        specs: planned runs (stages before their users, as :func:`ltbench.planning.sweep.plan_runs` gives).
        store: the results store's path. Workers write only their run folders; this process
            (the driver) ingests each finished record, so one process writes the store.
        reporter: receives ``run_started`` / ``epoch`` / ``run_finished`` in this process
            (:mod:`ltbench.execution.progress`).

    Returns:
        One record per spec, in the order of ``specs``.

    Raises:
        RunSetupError: a run's data could not be built; the runs already going are finished
            and stored first, no new one starts.
        KeyboardInterrupt: Ctrl-C; every running run keeps its latest checkpoint.
    """
    from ..config.record import placeholder
    from ..core.errors import RunSetupError
    from ..store.access import connect_store
    from .cost import CostModel
    from .runner import finished_before, ingest_finished, with_stage_folders

    db = connect_store(store)
    records = finished_before(specs, db, force)
    todo = [s for s in specs if s.run_id not in records]
    for s in specs:
        if s.run_id in records:
            reporter.run_finished(s, records[s.run_id])
    waiting_on = {s.run_id: {rid for _, rid in s.need_ids} & {t.run_id for t in todo} for s in todo}
    cost = CostModel.from_records(r for d in {s.config.data.name for s in todo} for r in db.records(dataset=d))
    order = schedule_order(todo, cost)
    by_id = {s.run_id: s for s in todo}
    ctx = multiprocessing.get_context("spawn")
    wanted = min(jobs, len(todo))
    if _prestarted.get("threads") == threads:
        workers, events = _prestarted.pop("workers"), _prestarted.pop("events")
        _prestarted.clear()
        _let_go_of(workers[wanted:], events)
        workers = workers[:wanted]
    else:
        release_prestarted()
        workers, events = [], ctx.Queue()
    workers += [_spawn(ctx, threads, events) for _ in range(wanted - len(workers))]
    setup_error: BaseException | None = None
    first = True
    try:
        while True:
            idle = [w for w in workers if w[2] is None]
            ready = [s for s in order if not waiting_on[s.run_id]] if setup_error is None else []
            if first and len(ready) > 1 and len(idle) > 1:
                # One worker starts with the cheapest run: a first result within a minute.
                cheapest = min(ready, key=cost)
                ready = [*[s for s in ready if s is not cheapest][: len(idle) - 1], cheapest]
            first = False
            for worker, spec in zip(idle, ready):
                order.remove(spec)
                worker[2] = spec.run_id
                worker[1].put((with_stage_folders(spec, db), device, force))
            if not any(w[2] for w in workers):
                break
            try:
                kind, run_id, payload = events.get(timeout=1.0)
            except queue_module.Empty:
                for w in workers:
                    if w[2] is not None and not w[0].is_alive():  # killed (OOM, signal): no record
                        spec = by_id[w[2]]
                        records[spec.run_id] = placeholder(
                            spec, "failed", f"its worker died (exit code {w[0].exitcode})"
                        )
                        reporter.run_finished(spec, records[spec.run_id])
                        w[2] = None
                        for other in waiting_on.values():
                            other.discard(spec.run_id)
                continue
            spec = by_id[run_id]
            if kind == "started":
                reporter.run_started(spec)
            elif kind == "epoch":
                reporter.epoch(spec, *payload)
            else:
                for w in workers:
                    if w[2] == run_id:
                        w[2] = None
                for other in waiting_on.values():
                    other.discard(run_id)
                if kind == "finished":
                    records[run_id] = ingest_finished(db, payload)
                    reporter.run_finished(spec, records[run_id])
                elif isinstance(payload, KeyboardInterrupt):
                    raise KeyboardInterrupt
                elif isinstance(payload, RunSetupError):
                    setup_error = setup_error or payload
                else:
                    raise payload
    finally:
        for process, tasks, _ in workers:
            if process.is_alive():
                tasks.put(None)
        for process, _, _ in workers:
            process.join(timeout=5)
            if process.is_alive():  # interrupted mid-run: its checkpoint is on disk
                process.terminate()
                process.join()
    if setup_error is not None:
        raise setup_error
    return [records.get(s.run_id) or placeholder(s, "failed", "did not run") for s in specs]


__all__ = ["default_jobs", "prestart", "release_prestarted", "run_cost", "run_side_by_side", "schedule_order"]
