"""A simulated sweep of thousands of runs, end to end, without training: plan, SLURM submission
(sbatch replaced by echo, so no cluster is needed), the jobs' records written to their folders,
the driver's ingest, ``sync`` with and without the runs folder's journal, ``results`` and the
report. The jobs are simulated by writing synthetic records (made-up numbers, the real record
layout), so what is measured is ltbench's own overhead at scale.

    python benchmarks/sweep_scale.py --runs 2000 --out benchmarks/results/sweep_scale.json

Prints a table and writes the figures as JSON (with the machine's CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np

METHODS = ["ce", "la", "bce", "bal_bce"]  # one-stage recipes of the main job


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _timed(fn):
    tick = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tick


def _fake_sbatch():
    """sbatch replaced by echo of a new job id; returns the calls list and the patch."""
    import submitit

    calls: list[int] = []

    def command(self, path):
        calls.append(1)
        return ["echo", f"Submitted batch job {1000 + len(calls)}"]

    return calls, mock.patch.object(submitit.SlurmExecutor, "_make_submission_command", command)


def simulate(runs: int, tmp: Path) -> dict:
    from ltbench.bench import synthetic_record
    from ltbench.execution.launch import SlurmOptions, submit
    from ltbench.execution.runner import ingest_finished
    from ltbench.planning.sweep import plan_runs
    from ltbench.store.access import synced_store
    from ltbench.store.records import JOURNAL, read_record, write_record
    from ltbench.store.sqlite import ResultStore
    from ltbench.store.sync import pending_records, walk_records

    seeds = range(-(-runs // len(METHODS)))
    out, store = tmp / "out", tmp / "out" / "ltbench.db"
    from ltbench.planning.catalog import load_catalog

    catalog, catalog_s = _timed(load_catalog)  # recipes and their plugins (imports torch once)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def plan():
        return plan_runs(METHODS, ["digits_lt"], "smoke", list(seeds), out_dir=out, catalog=catalog)[:runs]

    specs, plan_s = _timed(plan)
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    tracemalloc.start()  # a second plan, for its memory (tracing slows it: not timed)
    plan()
    plan_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    ResultStore(store)
    calls, patch = _fake_sbatch()
    said = {}
    with patch:
        jobs, submit_s = _timed(
            lambda: submit(
                specs, store, "slurm", out / "jobs", SlurmOptions(max_array_size=1001, array_parallelism=64),
                wait=False, on_submitted=lambda s: said.update(text=s.describe()),
            )
        )  # fmt: skip
    rng = np.random.default_rng(0)

    def finish_all():  # what the jobs write: each its record and journal entry
        for i, spec in enumerate(specs):
            c = spec.config
            record = synthetic_record(i, c.data.num_classes, len(METHODS), rng, str(spec.run_dir))
            record.update(run_id=spec.run_id, method=c.method.name, dataset=c.data.name, budget=c.budget, seed=c.seed)
            write_record(record, spec.run_dir)

    _, jobs_write_s = _timed(finish_all)
    db = ResultStore(store)
    _, ingest_s = _timed(lambda: [ingest_finished(db, read_record(s.run_dir)) for s in specs])
    known = list(_known(store))
    runs_dir = out / "runs"
    nothing_new, sync_journal_s = _timed(lambda: pending_records(runs_dir, known))
    walked, sync_walk_s = _timed(lambda: walk_records(runs_dir, known))
    assert not nothing_new and not walked
    # A store that lacks every run (jobs finished, nobody ingested yet): the first sync reads them all.
    fresh = tmp / "fresh.db"
    ResultStore(fresh)
    _, first_sync_s = _timed(lambda: synced_store(fresh, out))
    from ltbench import api

    rows, results_s = _timed(lambda: api.results(store, out))
    assert len(rows) == runs
    _, report_s = _timed(lambda: api.report(store, tmp / "report", runs=out, html=True))
    entries = len(list((runs_dir / JOURNAL).iterdir()))
    return {
        "runs": runs,
        "cpu": _cpu(),
        "load_catalog_s": round(catalog_s, 2),
        "plan_s": round(plan_s, 2),
        "plan_peak_python_mb": round(plan_peak_mb, 1),
        "plan_rss_growth_mb": round(rss_mb, 1),
        "submit_s": round(submit_s, 2),
        "sbatch_calls": len(calls),
        "jobs_submitted": len(jobs),
        "submitted": said.get("text", ""),
        "jobs_write_records_s": round(jobs_write_s, 2),
        "driver_ingest_s": round(ingest_s, 2),
        "sync_nothing_new_journal_s": round(sync_journal_s, 3),
        "sync_nothing_new_walk_s": round(sync_walk_s, 3),
        "first_sync_all_new_s": round(first_sync_s, 2),
        "journal_entries": entries,
        "results_s": round(results_s, 2),
        "report_s": round(report_s, 2),
    }


def _known(store: Path):
    import sqlite3

    with sqlite3.connect(store) as db:
        yield from db.execute("SELECT run_id, run_dir, status, finished_at FROM runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = simulate(args.runs, Path(tmp))
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
