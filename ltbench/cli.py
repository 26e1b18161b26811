"""The ``ltbench`` command line: a thin layer over :mod:`ltbench.api`.

Each subcommand parses its arguments and calls one documented library function. Bad input
(an unknown name, a malformed recipe or override) exits with status 2 and a message that
names the input and the fix; a run that fails exits with status 1; Ctrl-C with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import sqlite3
import sys
from collections.abc import Sequence

from ._version import __version__

EPILOGS = {
    "run": """examples:
  ltbench run                                   # every method on mnist_lt, quick budget
  ltbench run --methods ce,bal_bce --data digits_lt --budget smoke
  ltbench run --methods la --seeds 0-2 --set tau=1.5 --set rho=100
  ltbench run --methods bal_bce,deit_lt --data cifar10_lt --root ~/data/cifar --seeds 0-4 \
      --executor slurm --partition gpu --gpus-per-job 1 --time-min 720
  ltbench run --jobs 1 --threads 2 --log tensorboard   # one run at a time; curves in TensorBoard
""",
    "status": """examples:
  ltbench status
  ltbench status --out results --json
""",
    "list": """examples:
  ltbench list
  ltbench list methods '*bce*'
  ltbench list datasets --json
""",
    "data": """examples:
  ltbench data describe mnist_lt
  ltbench data describe cifar100_lt --root ~/data/cifar --set rho=50
  ltbench data describe places_lt --root /data/places365 --json
  ltbench data download cifar10_lt --root ~/data/cifar     # needs a network
""",
    "bench": """examples:
  ltbench bench                                 # ce on mnist_lt, quick budget, 5 epochs
  ltbench bench --method cnn_ce --epochs 5 --json results/bench.json
  ltbench bench --report-runs 10000             # the report over 10,000 stored runs
""",
    "results": """examples:
  ltbench results
  ltbench results --json --store results/ltbench.db
""",
    "show": """examples:
  ltbench show 3fa9c2                           # a unique prefix of the run id
  ltbench show 3fa9c2 --json > run.json
""",
    "reproduce": """examples:
  ltbench reproduce 3fa9c2                      # into results/reproduce/<id>, then compare
  ltbench reproduce 3fa9c2 --out /tmp/again --device cpu
""",
    "ingest": """examples:
  ltbench ingest results/runs                   # every record.json below, into the store
  ltbench ingest /scratch/old_sweep --store results/ltbench.db
""",
    "report": """examples:
  ltbench report                                # results/report/table.tex, table.md, per_class.png
  ltbench report --convention oltr --selection best_val --out paper/tables
  ltbench report --data cifar100_lt --budget paper --baseline ce
  ltbench report --data cifar100_lt --metric error  # error rates (%), as CIFAR papers quote them
  ltbench report --shift                        # also shift.tex/.md/.csv/.png: forward/uniform/backward test sets
  ltbench report --shift --posthoc              # also posthoc.*: post-hoc LA; shift.* gain '+ known prior' rows
""",
    "analyze": """examples:
  ltbench analyze dc11e2 5256d8 c3be6f          # deit_lt, ce, cnn_ce side by side: results/analysis/
  ltbench analyze dc11e2 --images 0 --device cuda --out /tmp/analysis   # every test image
""",
}


def parse_seeds(text: str, limit: int | None = None) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (inclusive) or a mix: ``"0-2,7"``; seeds are >= 0.

    The ranges are counted before any list is made, so ``0-100000000`` fails at once: more
    than ``limit`` seeds (default :data:`ltbench.sweep.MAX_SWEEP_RUNS`) is an error.
    """
    from .sweep import MAX_SWEEP_RUNS

    limit = MAX_SWEEP_RUNS if limit is None else limit
    ranges: list[tuple[int, int]] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, dash, hi = part.partition("-") if "-" in part[1:] else (part, "", part)
            if part.startswith("-") or (dash and hi.startswith("-")):
                raise argparse.ArgumentTypeError(f"bad seed list {text!r}: seeds are >= 0; use e.g. 0,1,2 or 0-4")
            ranges.append((int(lo), int(hi)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}; use e.g. 0,1,2 or 0-4") from None
    for lo, hi in ranges:
        if hi < lo:
            raise argparse.ArgumentTypeError(f"bad seed range {lo}-{hi} in {text!r}: it is empty; write {hi}-{lo}")
    count = sum(hi - lo + 1 for lo, hi in ranges)
    if not count:
        raise argparse.ArgumentTypeError("empty seed list; use e.g. 0,1,2 or 0-4")
    if count > limit:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r} is {count:,} seeds, more than {limit:,}; pass --allow-large-sweep if you mean it"
        )
    return [seed for lo, hi in ranges for seed in range(lo, hi + 1)]


def _at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}; give an integer >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give comma-separated names, or leave the option out")
    return names


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default="results/ltbench.db", help="SQLite results store (default: %(default)s)")


def _add_runs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runs",
        default=None,
        metavar="DIR",
        help="a run's --out: finished records the store lacks are ingested first (default: the store's folder)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltbench", description="Benchmark harness for long-tailed recognition.")
    parser.add_argument("--version", action="version", version=f"ltbench {__version__}")
    parser.add_argument(
        "--recipes",
        action="append",
        default=[],
        metavar="DIR",
        help="extra recipe folder with methods/ and datasets/ (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOGS[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add("run", "Train, evaluate and store methods x datasets x seeds.")
    p.add_argument("--methods", type=_names, default=None, help="comma-separated (default: all)")
    p.add_argument("--data", type=_names, default=None, help="comma-separated datasets (default: mnist_lt)")
    p.add_argument("--budget", default="quick", help="smoke | quick | paper (default: %(default)s)")
    # Parsed by _cmd_run, which knows --allow-large-sweep: 0-100000000 is refused before any list is made.
    p.add_argument("--seeds", default="0", help="training seeds: 0,1,2 or 0-4 (default: 0)")
    p.add_argument(
        "--allow-large-sweep", action="store_true", help="allow more than 10,000 runs in one sweep (seeds x methods)"
    )
    p.add_argument("--data-seed", type=_at_least(0), default=0, help="seed of the long-tail draw (default: 0)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. epochs=5, rho=100, tau=1.05 (repeatable)",
    )
    _add_store(p)
    p.add_argument("--out", default="results", help="folder for run folders (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--force", action="store_true", help="re-run runs that are already done")
    p.add_argument("--root", default=None, help="folder with the dataset's files (default: the recipe's)")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="accept data whose figures or checksums differ from the recipe (recorded as unverified)",
    )
    p.add_argument(
        "--executor",
        default="inline",
        choices=("inline", "local", "slurm"),
        help="inline: this process; local: submitit subprocesses; slurm: job arrays (default: %(default)s)",
    )
    p.add_argument(
        "--jobs",
        type=_at_least(1),
        default=None,
        help="inline: runs trained at once, each in a worker process (default: $LTBENCH_JOBS, else one per "
        "CPU core, one on a GPU)",
    )
    p.add_argument(
        "--threads",
        type=_at_least(1),
        default=None,
        help="intra-op threads per run on a CPU (default: 1, so numbers do not depend on the core count; "
        "not part of a run's identity)",
    )
    p.add_argument(
        "--log",
        type=_names,
        default=[],
        metavar="TRACKERS",
        help="also log curves and results to tensorboard and/or wandb (comma-separated; files under --out)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan (stages, dependencies, done) and run nothing")
    p.add_argument("--no-wait", action="store_true", help="local/slurm: exit once the jobs are submitted")
    g = p.add_argument_group("job resources (local and slurm executors; a profile's [slurm] table, then these)")
    g.add_argument(
        "--cluster-profile", default=None, metavar="TOML", help="file with a [slurm] table of the options below"
    )
    g.add_argument("--partition")
    g.add_argument("--gpus-per-job", type=_at_least(0))
    g.add_argument("--cpus-per-job", type=_at_least(1))
    g.add_argument("--mem-gb", type=_at_least(0))
    g.add_argument("--time-min", type=_at_least(1))
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--constraint")
    g.add_argument("--array-parallelism", type=_at_least(1))

    p = add("status", "Show each stage of the latest sweep: queued, running, done, failed.")
    p.add_argument("--out", default="results", help="the run's --out folder (default: %(default)s)")
    p.add_argument("--json", action="store_true")

    p = add("list", "Show registered methods and datasets.")
    p.add_argument("kind", nargs="?", default="all", choices=("all", "methods", "datasets"))
    p.add_argument("pattern", nargs="?", default="*", help="shell wildcard on names")
    p.add_argument("--json", action="store_true")

    p = add("data", "Describe a dataset from its labels, or download one.")
    p.add_argument("action", choices=("describe", "download"))
    p.add_argument("name", help="a dataset name (see `ltbench list datasets`)")
    p.add_argument("--root", default=None, help="folder with the dataset's files (default: the recipe's)")
    p.add_argument("--data-seed", type=_at_least(0), default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")

    p = add("bench", "Measure training speed against the model's limit and a per-sample reference loop.")
    p.add_argument("--method", default="ce")
    p.add_argument("--data", default="mnist_lt")
    p.add_argument("--budget", default="quick")
    p.add_argument("--epochs", type=_at_least(1), default=5)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default=None)
    p.add_argument("--reference-workers", type=_at_least(0), default=2, help="DataLoader workers of the reference loop")
    p.add_argument("--root", default=None, help="folder with the dataset's files (streamed datasets)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    p.add_argument(
        "--report-runs",
        type=_at_least(0),
        default=0,
        metavar="N",
        help="instead: time ingesting N synthetic runs and writing their report",
    )

    p = add("results", "List stored runs with their metrics.")
    _add_store(p)
    _add_runs(p)
    p.add_argument("--json", action="store_true")

    p = add("show", "Show one run's full record: config, per-class results, provenance, lineage.")
    p.add_argument("run_id", help="a run id, or a unique prefix of one")
    _add_store(p)
    _add_runs(p)
    p.add_argument("--json", action="store_true", help="the whole record as JSON")

    p = add("reproduce", "Re-run a stored run from its record alone and compare the results.")
    p.add_argument("run_id", help="a run id, or a unique prefix of one")
    _add_store(p)
    p.add_argument(
        "--out", default=None, help="folder for the re-run and its store (default: reproduce/<id> by the store)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--json", action="store_true")

    p = add("ingest", "Add every record.json under a folder to the store (idempotent).")
    p.add_argument("folder", help="a folder holding run folders, e.g. results/runs")
    _add_store(p)

    p = add("report", "Write LaTeX and Markdown tables and plots from the store.")
    _add_store(p)
    p.add_argument("--out", default=None, help="output folder (default: report/ next to the store)")
    p.add_argument(
        "--convention",
        default="threshold",
        choices=("threshold", "oltr", "index"),
        help="many/medium/few convention (default: %(default)s)",
    )
    p.add_argument(
        "--selection",
        default="last",
        choices=("last", "best_val"),
        help="model selection: last epoch or best on validation (default: %(default)s)",
    )
    p.add_argument("--methods", type=_names, default=None, help="comma-separated (default: all stored)")
    p.add_argument("--data", type=_names, default=None, help="comma-separated datasets (default: all stored)")
    p.add_argument("--budget", default=None, help="one budget (default: all, in separate column blocks)")
    p.add_argument("--baseline", default=None, help="paired t-test of every method against this one")
    p.add_argument(
        "--metric",
        default="accuracy",
        choices=("accuracy", "error"),
        help="table cells: accuracy, or error = 100 - accuracy, lowest best, as CIFAR papers (default: %(default)s)",
    )
    p.add_argument(
        "--shift",
        action="store_true",
        help="also write accuracy under shifted test distributions (forward-r / uniform / backward-r): shift.*",
    )
    p.add_argument(
        "--posthoc",
        action="store_true",
        help="also write post-hoc logit adjustment from stored logits (tau chosen on validation): posthoc.*; "
        "with --shift, a '+ known prior' row per method in shift.*",
    )
    _add_runs(p)

    p = add("analyze", "Attention distance per block and effective rank of CLS/DIST features, from a run's weights.")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="run ids, or unique prefixes of them")
    _add_store(p)
    p.add_argument("--out", default=None, help="output folder (default: analysis/ next to the store)")
    p.add_argument(
        "--images", type=int, default=500, metavar="N", help="test images per run, 0 for all (default: %(default)s)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--root", default=None, help="the dataset's files, if they moved since the run")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def _jobs_and_threads(args) -> tuple[int | None, int | None]:
    """``--jobs`` and ``--threads`` resolved: on a CPU one thread per run and, unless set (or
    ``LTBENCH_JOBS``), one run per core; on a GPU one run at a time with torch's threads."""
    import os

    from .errors import UserError

    jobs = args.jobs
    if jobs is None and os.environ.get("LTBENCH_JOBS"):
        try:
            jobs = _at_least(1)(os.environ["LTBENCH_JOBS"])
        except argparse.ArgumentTypeError as e:
            raise UserError(f"LTBENCH_JOBS: {e}; set it to how many runs train at once, or unset it") from None
    from .pool import on_cpu

    threads = args.threads or (1 if on_cpu(args.device) else None)
    return jobs, threads  # jobs None: one per core (ltbench.pool.default_jobs)


def _cmd_run(args, console) -> int:
    import os

    from . import pool

    if args.executor == "inline" and not args.dry_run:
        # The workers import torch while this process does (checked and sized again below).
        env_jobs = os.environ.get("LTBENCH_JOBS", "")
        pool.prestart(args.jobs or (int(env_jobs) if env_jobs.isdigit() else None), args.threads or 1, args.device)
    try:
        return _run(args, console)
    finally:
        pool.release_prestarted()


def _run(args, console) -> int:
    from . import api
    from .errors import UserError
    from .sweep import check_device

    try:
        seeds = parse_seeds(args.seeds, limit=2**62 if args.allow_large_sweep else None)
    except argparse.ArgumentTypeError as e:
        raise UserError(str(e)) from None
    check_device(args.device)  # before anything is planned or written
    from .trackers import check_trackers

    check_trackers(args.log)  # an unknown or missing tracker stops a dry run too
    jobs, threads = _jobs_and_threads(args)
    # The arguments that define the plan, shared by --dry-run and the run itself.
    common = dict(
        methods=args.methods,
        data=args.data,
        budget=args.budget,
        seeds=seeds,
        data_seed=args.data_seed,
        overrides=args.overrides,
        store=args.store,
        out_dir=args.out,
        recipes=args.recipes,
        root=args.root,
        verify=not args.no_verify,
        allow_large_sweep=args.allow_large_sweep,
    )
    if args.dry_run:
        rows = api.plan(**common)
        _print_rows(
            console,
            f"plan ({args.executor} executor): {len(rows)} stages",
            rows,
            ("label", "run_id", "epochs", "needs", "action"),
        )
        return 0
    slurm = None
    if args.executor != "inline":
        from .launch import SlurmOptions, load_profile

        resources = {f.name: getattr(args, f.name) for f in dataclasses.fields(SlurmOptions) if hasattr(args, f.name)}
        slurm = load_profile(args.cluster_profile, **resources)
    records = api.run(
        **common,
        jobs=jobs,
        threads=threads,
        log=args.log,
        device=args.device,
        force=args.force,
        console=console,
        executor=args.executor,
        slurm=slurm,
        wait=not args.no_wait,
    )
    failed = [r for r in records if r["status"] == "failed"]
    for r in failed:
        console.print(
            f"[red]failed[/red] {r['method']} on {r['dataset']} (seed {r['seed']}): {r['error']}"
            f"\n  log: {r['run_dir']}/record.json"
        )
    return 1 if failed else 0


def _print_rows(console, title: str, rows: list[dict], columns) -> None:
    """A table of rows: rich's in a terminal, Markdown at full width elsewhere (a log, a pipe)."""
    from rich.table import Table

    cells = [
        ["; ".join(map(str, v)) if isinstance(v := r.get(c, ""), list) else str(v or "") for c in columns] for r in rows
    ]
    if not console.is_terminal:
        lines = [title, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        console.file.write("\n".join(lines) + "\n")
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console.print(table)


def _cmd_bench(args, console) -> int:
    from pathlib import Path

    from .bench import bench_report, benchmark, write_json
    from .sweep import check_device

    check_device(args.device)
    if args.report_runs:
        result = bench_report(args.report_runs)
        _print_rows(
            console,
            "ltbench bench --report-runs",
            [{"label": k, "value": v} for k, v in result.items()],
            ("label", "value"),
        )
        return 0
    result = benchmark(
        args.method,
        args.data,
        args.budget,
        args.epochs,
        tuple(args.overrides),
        args.device,
        args.reference_workers,
        args.root,
        tuple(args.recipes),
    )
    rows = [{"label": k, "value": v} for k, v in result.items() if not isinstance(v, dict)]
    rows += [
        {"label": f"{k}.{kk}", "value": vv} for k, v in result.items() if isinstance(v, dict) for kk, vv in v.items()
    ]
    _print_rows(console, "ltbench bench", rows, ("label", "value"))
    if args.json:
        console.print(f"wrote {write_json(result, Path(args.json))}")
    return 0


def _cmd_status(args, console) -> int:
    from . import api

    rows = api.status(args.out)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_rows(console, f"latest sweep in {args.out}", rows, ("label", "state", "detail", "log"))
    return 1 if any(r["state"] in ("failed", "cancelled", "damaged") for r in rows) else 0


def _cmd_list(args, console) -> int:
    from rich.table import Table

    from . import api

    found = api.list_recipes(args.kind, args.pattern, args.recipes)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for kind, rows in found.items():
        table = Table(title=kind)
        if kind == "methods":
            for col in ("name", "title", "paper", "budgets (epochs)"):
                table.add_column(col)
            for m in rows:
                budgets = ", ".join(f"{b} ({v['epochs']})" for b, v in m["budgets"].items())
                table.add_row(m["name"], m["title"], m["paper"], budgets)
        else:
            for col in ("name", "title", "classes", "size", "imbalance", "paper"):
                table.add_column(col)
            for d in rows:
                table.add_row(
                    d["name"],
                    d["title"],
                    str(d["classes"]),
                    str(d["image_size"]),
                    "–"
                    if d["imbalance"] is None
                    else f"{d['imbalance']:.0f}" + (f" ({d['profile']})" if d["profile"] else " (split files)"),
                    d["paper"],
                )
        console.print(table)
    return 0


def _cmd_results(args, console) -> int:
    from rich.table import Table

    from . import api

    rows = api.results(args.store, args.runs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"runs in {args.store}")
    cols = (
        "method",
        "dataset",
        "budget",
        "seed",
        "status",
        "last.top1",
        "last.many",
        "last.medium",
        "last.few",
        "best_val.top1",
        "last.ece",
    )
    for c in cols:
        table.add_column(c)
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("–" if v is None else f"{100 * v:.1f}" if "." in c else str(v))
        table.add_row(*cells)
    console.print(table)
    return 0


def _cmd_report(args, console) -> int:
    from . import api

    paths = api.report(
        args.store,
        args.out,
        args.convention,
        args.selection,
        args.methods,
        args.data,
        args.budget,
        args.baseline,
        args.runs,
        shift=args.shift,
        metric=args.metric,
        posthoc=args.posthoc,
    )
    for kind, path in paths.items():
        console.print(f"{kind:9s} {path}")
    md = paths.get("markdown")
    if md is not None:
        console.print(md.read_text(), markup=False, highlight=False)
    return 0


def _to_json(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _cmd_show(args, console) -> int:
    from rich.table import Table
    from rich.tree import Tree

    from . import api

    record = api.show(args.run_id, args.store, args.runs)
    if args.json:
        print(json.dumps(record, indent=1, default=_to_json))
        return 0
    r = record
    console.print(
        f"[bold]{r['method']}[/bold] on {r['dataset']}, budget {r['budget']}, "
        f"seed {r['seed']}, data seed {r['data_seed']}"
    )
    console.print(f"run {r['run_id']}", highlight=False)  # 64 characters: a line of its own
    console.print(f"status {r['status']}, variant {(r.get('variant') or '')[:10]}", highlight=False)
    console.print(f"folder {r.get('run_dir')}", highlight=False)
    if r.get("overrides"):
        console.print(f"overrides: {' '.join(r['overrides'])}", highlight=False)
    if r.get("error"):
        console.print(f"[red]error:[/red] {r['error']}", highlight=False)

    def grow(node, branch):
        for need in node["needs"]:
            text = f"{need['role']}: {need['label']} [{need['run_id'][:10]}] {need['status']}"
            grow(need, branch.add(text))

    top = record["lineage"]
    tree = Tree(f"{top['label']} [{top['run_id'][:10]}] {top['status']}")
    grow(top, tree)
    console.print("lineage:")
    console.print(tree)
    metrics = r.get("metrics") or {}
    if metrics:
        table = Table(title="test top-1 % (threshold groups)")
        names = ("many", "medium", "few", "top1", "ece")
        for col in ("selection", *names):
            table.add_column(col, justify="left" if col == "selection" else "right")
        for sel, m in metrics.items():
            table.add_row(sel, *("–" if m.get(k) is None else f"{100 * m[k]:.1f}" for k in names))
        console.print(table)
    last = (r.get("results") or {}).get("last")
    if last is not None:
        n = len(r["train_counts"])
        per = Table(title=f"per class, last epoch ({n} classes)")
        for col in ("class", "train", "val", "test", "correct", "acc %"):
            per.add_column(col, justify="left" if col == "class" else "right")
        val = r.get("val_counts") or [None] * n
        shown = min(n, 100)
        for c in range(shown):
            total, correct = int(last["total"][c]), int(last["correct"][c])
            acc = "–" if total == 0 else f"{100 * correct / total:.1f}"
            per.add_row(
                str(r["class_names"][c]),
                str(r["train_counts"][c]),
                str(val[c] if val[c] is not None else "–"),
                str(total),
                str(correct),
                acc,
            )
        console.print(per)
        if shown < n:
            console.print(f"(first {shown} of {n} classes; --json has them all)")
    console.print("config:")
    console.print_json(json.dumps(r.get("config") or {}))
    console.print("provenance:")
    console.print_json(json.dumps(r.get("provenance") or {}, default=_to_json))
    return 0


def _cmd_reproduce(args, console) -> int:
    from . import api
    from .sweep import check_device

    check_device(args.device)

    out = api.reproduce(args.run_id, args.store, args.out, args.device, console)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0 if out["identical"] else 1
    rows = [
        {
            **m,
            "stored": "–" if m["stored"] is None else f"{100 * m['stored']:.2f}",
            "reproduced": "–" if m["reproduced"] is None else f"{100 * m['reproduced']:.2f}",
            "difference": "–" if m["difference"] is None else f"{100 * m['difference']:+.2f}",
        }
        for m in out["metrics"]
    ]
    _print_rows(
        console,
        f"run {out['run_id'][:10]} again, in {out['out_dir']}",
        rows,
        ("selection", "metric", "stored", "reproduced", "difference"),
    )
    if not out["id_matches"]:
        console.print("note: today's ltbench gives this configuration another run id (the record is older)")
    console.print(
        "identical per-class results" if out["identical"] else "[yellow]the per-class results differ[/yellow]"
    )
    return 0 if out["identical"] else 1


def _cmd_analyze(args, console) -> int:
    from .analyze import analyze_runs

    out = analyze_runs(args.store, args.run_ids, args.out, args.images, args.device, args.root)
    if args.json:
        print(json.dumps(out["results"], indent=1))
        return 0
    for r in out["results"]:
        att = r["attention_distance"]
        where = (
            r["attention_note"]
            if att is None
            else "attention distance (px) by block: " + ", ".join(f"{d:.1f}" for d in att)
        )
        ranks = ", ".join(f"{k} {v:.2f}" for k, v in r["effective_rank"].items())
        head = f"[bold]{r['method']}[/bold] {r['run_id'][:10]}"
        console.print(f"{head}: {where}; effective rank {ranks}", highlight=False)
    for kind, path in out["files"].items():
        console.print(f"{kind:16s} {path}", highlight=False)
    return 0


def _cmd_ingest(args, console) -> int:
    from . import api

    n = api.ingest(args.folder, args.store)
    console.print(f"ingested {n} records from {args.folder} into {args.store}")
    return 0


def _cmd_data(args, console) -> int:
    from . import api

    if args.action == "download":
        console.print(f"downloaded {args.name} into {api.download(args.name, args.root, args.recipes)}")
        return 0
    info = api.describe(args.name, args.root, args.data_seed, args.overrides, args.recipes)
    status = 0 if info["verified"] else 1  # a mismatch with the recipe is worth a non-zero exit
    if args.json:
        print(json.dumps(info, indent=2))
        return status
    from rich.table import Table

    from .data.describe import format_counts

    console.print(f"[bold]{info['name']}[/bold]: {info['title']}")
    console.print(
        f"source {info['source']} at {info['root'] or '(embedded)'}, {info['classes']} classes, "
        f"{info['storage']} storage"
    )
    src, spl = info["source_splits"], info["splits"]
    console.print(f"source splits: train {src['train']:,}, val {src['val']:,}, test {src['test']:,}")
    console.print(
        f"used (data seed {info['data_seed']}): train {spl['train']:,}, val {spl['val']:,}, "
        f"test {spl['test']:,}; imbalance ratio {info['imbalance_ratio']:.1f}"
    )
    console.print(f"stated imbalance: {info['stated_imbalance_from']}; {info['imbalance_note']}", highlight=False)
    console.print(f"training images per class: {format_counts(info['train_counts'])}")
    groups = Table(title="classes per group")
    for col in ("convention", "many", "medium", "few"):
        groups.add_column(col)
    for conv, sizes in info["groups"].items():
        groups.add_row(conv, *(str(sizes[g]) for g in ("many", "medium", "few")))
    console.print(groups)
    if info["expected"]:
        check = Table(title="expected against found")
        for col in ("figure", "expected", "found", ""):
            check.add_column(col)
        for e in info["expected"]:
            check.add_row(e["figure"], str(e["expected"]), str(e["found"]), "ok" if e["ok"] else "[red]MISMATCH[/red]")
        console.print(check)
    for name, digest in info["files"].items():
        console.print(f"  {name}  {digest}")
    differ = info.get("differing_files") or []
    if differ:
        console.print(
            f"[red]{len(differ)} file(s) differ from the official ones:[/red] {', '.join(differ)} "
            "(a custom copy: `ltbench run --no-verify` records its runs as unverified)",
            highlight=False,
        )
    else:
        console.print(f"verified: {str(info['verified']).lower()}", highlight=False)
    return status


COMMANDS = {
    "run": _cmd_run,
    "bench": _cmd_bench,
    "status": _cmd_status,
    "list": _cmd_list,
    "data": _cmd_data,
    "results": _cmd_results,
    "report": _cmd_report,
    "show": _cmd_show,
    "reproduce": _cmd_reproduce,
    "ingest": _cmd_ingest,
    "analyze": _cmd_analyze,
}


def _raised_by_ltbench(e: BaseException) -> bool:
    """Whether ``e`` was raised by ltbench's own code (a message meant for the user), not by a
    library it calls (a bug in how ltbench called it, which keeps its traceback)."""
    from pathlib import Path

    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    package = Path(__file__).resolve().parent
    return package in Path(tb.tb_frame.f_code.co_filename).resolve().parents


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ltbench`` console script; returns the exit status."""
    from rich.console import Console

    from .errors import DataError, RunSetupError, UserError
    from .recipes import RecipeError
    from .registry import UnknownNameError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    console = Console(stderr=args.command == "run")
    err = Console(stderr=True)

    def say(e: BaseException) -> None:  # one line, never wrapped, brackets shown as they are
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(' '.join(str(e).split()))}", highlight=False, soft_wrap=True)

    try:
        return COMMANDS[args.command](args, console)
    except (UserError, UnknownNameError, RecipeError, DataError, FileNotFoundError) as e:
        say(e)
        return 2
    except ValueError as e:
        if not _raised_by_ltbench(e):  # e.g. NumPy's or json's: a bug, shown with its traceback
            raise
        say(e)
        return 2
    except RunSetupError as e:
        say(e)
        return 1
    except sqlite3.DatabaseError as e:
        if type(e) is not sqlite3.DatabaseError:  # OperationalError and co.: ltbench's bug, or a lock
            raise
        say(
            f"the results store {getattr(args, 'store', '')} is damaged ({e}); restore it from a copy, or "
            "`ltbench ingest` the run folders into a new store"
        )
        return 2
    except OSError as e:
        where = e.filename or getattr(args, "out", None) or "a file"
        if e.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder goes
            say(f"cannot make the folder {where}: a file is in the way ({e.strerror}); pass --out DIR")
            return 2
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
            raise
        say(f"cannot write {where} ({e.strerror}); pass a folder on a writable disk with room (--out / --store)")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: finished runs are stored; the same command resumes from the last epoch")
        return 130


if __name__ == "__main__":
    sys.exit(main())
