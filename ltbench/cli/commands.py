"""What each ``ltbench`` subcommand does, given its parsed arguments and a rich console:
each calls one documented function of :mod:`ltbench.api` (or the module behind it) and
returns the exit status. :data:`COMMANDS` maps the subcommand's name to it.
"""

import argparse
import dataclasses
import json

from .args import _at_least, parse_seeds


def _jobs(args) -> int | None:
    """``--jobs``, else ``LTBENCH_JOBS``, else None (one per core: ltbench.execution.pool.default_jobs)."""
    import os

    from ..core.errors import UserError

    if args.jobs is not None or not os.environ.get("LTBENCH_JOBS"):
        return args.jobs
    try:
        return _at_least(1)(os.environ["LTBENCH_JOBS"])
    except argparse.ArgumentTypeError as e:
        raise UserError(f"LTBENCH_JOBS: {e}; set it to how many runs train at once, or unset it") from None


def _cmd_run(args, console) -> int:
    from ..execution import pool

    jobs = _jobs(args)
    if args.executor == "inline" and not args.dry_run:
        # The workers import torch while this process does (sized again once the plan is made).
        pool.prestart(jobs, args.threads or 1, args.device)
    try:
        return _run(args, console, jobs)
    finally:
        pool.release_prestarted()


def _run(args, console, jobs: int | None) -> int:
    from .. import api
    from ..core.errors import UserError
    from ..execution.pool import on_cpu
    from ..planning.sweep_files import check_device

    try:
        seeds = parse_seeds(args.seeds, limit=2**62 if args.allow_large_sweep else None)
    except argparse.ArgumentTypeError as e:
        raise UserError(str(e)) from None
    check_device(args.device)  # before anything is planned or written
    from ..execution.trackers import check_trackers

    check_trackers(args.log)  # an unknown or missing tracker stops a dry run too
    # On a CPU one thread per run by default; on a GPU torch's threads, one run at a time.
    threads = args.threads or (1 if on_cpu(args.device) else None)
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
        from ..execution.launch import SlurmOptions, load_profile

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

    from ..bench import bench_report, benchmark, write_json
    from ..planning.sweep_files import check_device

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
    from .. import api

    rows = api.status(args.out)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_rows(console, f"latest sweep in {args.out}", rows, ("label", "state", "detail", "log"))
    return 1 if any(r["state"] in ("failed", "cancelled", "damaged") for r in rows) else 0


def _cmd_list(args, console) -> int:
    from rich.table import Table

    from .. import api

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

    from .. import api

    rows = api.results(args.store, args.runs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from ..store.access import shown

    table = Table(title=f"runs in {shown(args.store)}")  # a URL without its password
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
    from .. import api

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
        shift_counts=args.shift_counts,
        html=args.html,
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

    from .. import api

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
    from .. import api
    from ..planning.sweep_files import check_device

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
    from ..reports.analyze import analyze_runs

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
    from .. import api

    n = api.ingest(args.folder, args.store)
    from ..store.access import shown

    console.print(f"ingested {n} records from {args.folder} into {shown(args.store)}")
    return 0


def _cmd_data(args, console) -> int:
    from .. import api

    if args.action == "download":
        console.print(f"downloaded {args.name} into {api.download(args.name, args.root, args.recipes)}")
        return 0
    info = api.describe(args.name, args.root, args.data_seed, args.overrides, args.recipes)
    status = 0 if info["verified"] else 1  # a mismatch with the recipe is worth a non-zero exit
    if args.json:
        print(json.dumps(info, indent=2))
        return status
    from rich.table import Table

    from ..data.describe import format_counts

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
