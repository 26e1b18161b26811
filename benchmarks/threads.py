"""Runs side by side or one at a time, on an idle and on a loaded machine.

Times one short sweep (`ltbench run`, subprocess, fresh store each time) under each
(jobs, threads) setting, first with the machine to itself, then with a competing
`ltbench bench` (torch's default threads) running all along, and reports wall time, the CPU
seconds the sweep used and the time to its first finished run. Anyone can run it:

    python benchmarks/threads.py                       # ce, la, cnn_ce, cnn_la; 10 epochs each
    python benchmarks/threads.py --methods ce,cnn_ce --epochs 5 --json benchmarks/results/threads.json

Numbers from one machine are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = ((1, 2), (2, 1))  # (jobs, threads): one run at a time on 2 threads; two runs, 1 thread each


def _sweep(methods: str, epochs: int, jobs: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "ltbench", "run", "--methods", methods, "--set", f"epochs={epochs}"]
        cmd += ["--jobs", str(jobs), "--threads", str(threads), "--out", tmp, "--store", f"{tmp}/s.db"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        first = None
        for line in proc.stderr:
            if first is None and re.search(r"\] done in ", line):
                first = time.perf_counter() - start
        if proc.wait() != 0:
            raise SystemExit(f"sweep failed: {' '.join(cmd)}")
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"jobs": jobs, "threads": threads, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "first_s": first}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="ce,la,cnn_ce,cnn_la")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    rows = []
    for load in ("idle", "loaded"):
        competitor = None
        if load == "loaded":  # another torch job with its default threads, all along
            competitor = subprocess.Popen(
                [sys.executable, "-m", "ltbench", "bench", "--epochs", "10000", "--reference-workers", "0"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(15)  # past its start-up
        try:
            for jobs, threads in SETTINGS:
                row = {"machine": load, **_sweep(args.methods, args.epochs, jobs, threads)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    result = {
        "methods": args.methods,
        "epochs": args.epochs,
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
