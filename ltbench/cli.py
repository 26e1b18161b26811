"""The ``ltbench`` command line: a thin layer over :mod:`ltbench.api`.

Each subcommand parses its arguments and calls one documented library function. Bad input
(an unknown name, a malformed recipe or override) exits with status 2 and a message that
names the input and the fix; a run that fails exits with status 1; Ctrl-C with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
  ltbench run --executor local --dry-run
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
""",
}


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (inclusive) or a mix: ``"0-2,7"``."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}; use e.g. 0,1,2 or 0-4") from None
    if not seeds:
        raise argparse.ArgumentTypeError("empty seed list; use e.g. 0,1,2 or 0-4")
    return seeds


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


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
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="training seeds: 0,1,2 or 0-4 (default: 0)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the long-tail draw (default: 0)")
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
    p.add_argument("--dry-run", action="store_true", help="print the plan (stages, dependencies, done) and run nothing")
    p.add_argument("--no-wait", action="store_true", help="local/slurm: exit once the jobs are submitted")
    g = p.add_argument_group("job resources (local and slurm executors; a profile's [slurm] table, then these)")
    g.add_argument(
        "--cluster-profile", default=None, metavar="TOML", help="file with a [slurm] table of the options below"
    )
    g.add_argument("--partition")
    g.add_argument("--gpus-per-job", type=int)
    g.add_argument("--cpus-per-job", type=int)
    g.add_argument("--mem-gb", type=int)
    g.add_argument("--time-min", type=int)
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--constraint")
    g.add_argument("--array-parallelism", type=int)

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
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")

    p = add("bench", "Measure training speed against the model's limit and a per-sample reference loop.")
    p.add_argument("--method", default="ce")
    p.add_argument("--data", default="mnist_lt")
    p.add_argument("--budget", default="quick")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default=None)
    p.add_argument("--reference-workers", type=int, default=2, help="DataLoader workers of the reference loop")
    p.add_argument("--root", default=None, help="folder with the dataset's files (streamed datasets)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    p.add_argument(
        "--report-runs",
        type=int,
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
    _add_runs(p)
    return parser


def _cmd_run(args, console) -> int:
    from . import api

    # The arguments that define the plan, shared by --dry-run and the run itself.
    common = dict(
        methods=args.methods,
        data=args.data,
        budget=args.budget,
        seeds=args.seeds,
        data_seed=args.data_seed,
        overrides=args.overrides,
        store=args.store,
        out_dir=args.out,
        recipes=args.recipes,
        root=args.root,
        verify=not args.no_verify,
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
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            *("; ".join(map(str, v)) if isinstance(v := r.get(c, ""), list) else str(v or "") for c in columns)
        )
    console.print(table)


def _cmd_bench(args, console) -> int:
    from pathlib import Path

    from .bench import bench_report, benchmark, write_json

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
    return 1 if any(r["state"] in ("failed", "cancelled") for r in rows) else 0


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
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ltbench`` console script; returns the exit status."""
    from rich.console import Console

    from .errors import RunSetupError
    from .recipes import RecipeError
    from .registry import UnknownNameError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    console = Console(stderr=args.command == "run")
    err = Console(stderr=True)
    try:
        return COMMANDS[args.command](args, console)
    except (UnknownNameError, RecipeError, FileNotFoundError, ValueError) as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        return 2
    except RunSetupError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted: finished runs are stored; the same command resumes from the last epoch")
        return 130


if __name__ == "__main__":
    sys.exit(main())
