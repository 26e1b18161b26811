"""Crash and concurrency checks of ltbench, measured: the numbers in docs/reliability.md.

    python benchmarks/reliability.py                       # defaults: about 2-3 minutes on 2 cores
    python benchmarks/reliability.py --writers 8 --records 200 --twice 5 --kills 10 --json out.json

Three experiments, each on fresh folders under a temporary directory:

1. writers: N processes ingest M records each into one store at once (plus a reader
   polling it). Counted: records lost (not in the store), records corrupt (stored bytes
   differ from what was ingested), and SQLite's integrity check.
2. twice: the same tiny run started twice at once, R times. Counted: how many times it
   trained (one process must wait and skip it), failed records, lock and temp files left.
3. kills: a tiny sweep (two methods, two seeds on digits_lt) is killed with SIGKILL at a
   random moment, K times, each then resumed with the same command. Counted: sweeps whose
   per-class results differ from an uninterrupted reference run, and stale locks left.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["run", "--methods", "ce,bal_bce", "--data", "digits_lt", "--budget", "smoke", "--seeds", "0-1"]
SWEEP += ["--set", "epochs=3", "--device", "cpu"]
TINY = ["run", "--methods", "ce", "--data", "digits_lt", "--budget", "smoke", "--set", "epochs=2", "--device", "cpu"]


def _record(run_id: str, writer: int, i: int) -> dict:
    from ltbench.config.record import RECORD_SCHEMA

    counts = [50 + (i % 7), 20, 5]
    return {
        "schema": RECORD_SCHEMA,
        "run_id": run_id,
        "method": f"m{writer}",
        "dataset": "toy",
        "budget": "smoke",
        "seed": i,
        "data_seed": 0,
        "status": "done",
        "error": None,
        "started_at": f"2026-01-01T00:00:{i % 60:02d}+00:00",
        "finished_at": f"2026-01-01T00:01:{i % 60:02d}+00:00",
        "train_counts": counts,
        "results": {"last": {"epoch": 1, "correct": [i % 10, writer, 1], "total": [10, 10, 10]}},
        "metrics": {"last": {"top1": (i % 10 + writer + 1) / 30}},
        "run_dir": f"/nowhere/toy/m{writer}/{run_id}",
    }


def _writer(store: str, writer: int, records: int) -> None:
    from ltbench.store.sqlite import ResultStore

    db = ResultStore(store)
    for i in range(records):
        if not db.ingest_retrying(_record(f"{writer:04d}{i:08d}", writer, i), attempts=20, wait=0.2):
            raise SystemExit(f"writer {writer}: the store stayed locked")


def _reader(store: str, stop) -> None:
    from ltbench.store.sqlite import ResultStore

    while not stop.is_set():
        try:
            ResultStore(store, readonly=True).summary_rows()
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            print(f"reader: {type(e).__name__}: {e}", file=sys.stderr)
        time.sleep(0.05)


def writers(tmp: Path, n: int, records: int) -> dict:
    """N processes ingesting into one store at once, and a reader."""
    from ltbench.store.sqlite import ResultStore

    store = str(tmp / "writers.db")
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    reader = ctx.Process(target=_reader, args=(store, stop))
    procs = [ctx.Process(target=_writer, args=(store, w, records)) for w in range(n)]
    tick = time.perf_counter()
    for p in procs:
        p.start()
    time.sleep(0.5)
    reader.start()
    for p in procs:
        p.join()
    stop.set()
    reader.join()
    seconds = time.perf_counter() - tick
    db = ResultStore(store, readonly=True)
    stored = {r["run_id"]: r for r in db.records()}
    lost = corrupt = 0
    for w in range(n):
        for i in range(records):
            want = _record(f"{w:04d}{i:08d}", w, i)
            got = stored.get(want["run_id"])
            if got is None:
                lost += 1
                continue
            got = json.loads(json.dumps(got, default=lambda a: a.tolist()))
            corrupt += any(got.get(k) != want[k] for k in want)
    with sqlite3.connect(store) as con:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    return {
        "writers": n,
        "records_each": records,
        "stored": len(stored),
        "lost": lost,
        "corrupt": corrupt,
        "integrity_check": integrity,
        "writer_exit_codes": sorted({p.exitcode for p in procs}),
        "seconds": round(seconds, 1),
    }


def _ltbench(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "ltbench", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
    )


def _records(out: Path) -> dict[str, dict]:
    found = {}
    for path in sorted((out / "runs").rglob("record.json")):
        r = json.loads(path.read_text())
        found[r["run_id"]] = r
    return found


def twice(tmp: Path, repeats: int) -> dict:
    """The same tiny run started twice at once."""
    trained_once = failed = leftovers = 0
    for k in range(repeats):
        out = tmp / f"twice{k}"
        args = [*TINY, "--store", str(out / "ltbench.db"), "--out", str(out)]
        procs = [_ltbench(args, tmp) for _ in range(2)]
        errs = [p.communicate(timeout=600)[1].decode() for p in procs]
        codes = [p.returncode for p in procs]
        records = _records(out)
        trained = sum("skipped" not in e for e in errs)  # the other one finds it done: "skipped"
        trained_once += trained == 1 and codes == [0, 0] and len(records) == 1
        failed += sum(r["status"] != "done" for r in records.values())
        leftovers += len(list(out.rglob("*.lock"))) + len(list(out.rglob("*.tmp")))
    return {"repeats": repeats, "trained_once": trained_once, "failed_records": failed, "lock_or_tmp_left": leftovers}


def kills(tmp: Path, trials: int, seed: int) -> dict:
    """kill -9 at random moments of a tiny sweep, then resume: identical results?"""
    rng = random.Random(seed)
    ref = tmp / "reference"
    tick = time.perf_counter()
    p = _ltbench([*SWEEP, "--store", str(ref / "ltbench.db"), "--out", str(ref)], tmp)
    p.communicate(timeout=900)
    full = time.perf_counter() - tick
    want = _records(ref)
    identical = killed = 0
    moments = []
    for k in range(trials):
        out = tmp / f"killed{k}"
        args = [*SWEEP, "--store", str(out / "ltbench.db"), "--out", str(out)]
        moment = rng.uniform(0.2, 0.95) * full
        p = _ltbench(args, tmp, start_new_session=True)
        try:
            p.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            killed += 1
        p.communicate()
        moments.append(round(moment, 1))
        p = _ltbench(args, tmp)  # resume: the same command
        p.communicate(timeout=900)
        got = _records(out)
        same = set(got) == set(want) and p.returncode == 0
        for run_id, r in got.items():
            w = want.get(run_id, {})
            for sel, res in (w.get("results") or {}).items():
                other = (r.get("results") or {}).get(sel, {})
                same &= all(res[key] == other.get(key) for key in ("correct", "total"))
            same &= r.get("metrics") == w.get("metrics")
        identical += bool(same)
    stale = sum(len(list((tmp / f"killed{k}").rglob("*.lock"))) for k in range(trials))
    return {
        "trials": trials,
        "killed_mid_sweep": killed,
        "kill_moments_s": moments,
        "sweep_seconds": round(full, 1),
        "runs_per_sweep": len(want),
        "identical_after_resume": identical,
        "locks_left": stale,
    }


def main() -> None:
    """Run the three experiments and print (and optionally write) their numbers as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=6)
    parser.add_argument("--records", type=int, default=100, help="records per writer")
    parser.add_argument("--twice", type=int, default=3, help="times the same run is started twice at once")
    parser.add_argument("--kills", type=int, default=4, help="sweeps killed with SIGKILL and resumed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ltbench-reliability-") as tmp:
        tmp = Path(tmp)
        out = {
            "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "writers": writers(tmp, args.writers, args.records),
            "twice": twice(tmp, args.twice),
            "kills": kills(tmp, args.kills, args.seed),
        }
    out["total_seconds"] = round(time.perf_counter() - tick, 1)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
