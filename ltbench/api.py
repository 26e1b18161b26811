"""The library functions behind each CLI command.

Everything ``ltbench`` does on the command line is one call here::

    import ltbench
    records = ltbench.run(methods=["ce", "bal_bce"], data=["digits_lt"], budget="smoke")
    ltbench.report(store="results/ltbench.db", out_dir="results/report")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .recipes import load_catalog
from .store import DEFAULT_OUT, DEFAULT_STORE, ResultStore


def run(
    methods: Sequence[str] | None = None,
    data: Sequence[str] | None = None,
    budget: str = "quick",
    seeds: Sequence[int] = (0,),
    data_seed: int = 0,
    overrides: Sequence[str] = (),
    store: str | Path = DEFAULT_STORE,
    out_dir: str | Path = DEFAULT_OUT,
    device: str | None = None,
    force: bool = False,
    recipes: Sequence[str] = (),
    console: Console | None = None,
    root: str | Path | None = None,
    verify: bool = True,
    executor: str = "inline",
    slurm: Any = None,
    wait: bool = True,
) -> list[dict[str, Any]]:
    """Run methods x datasets x seeds under one budget; store and return their records.

    Args:
        methods: method names; None means the main job's (:func:`main_job_methods`).
        data: dataset names; None means the embedded default, ``mnist_lt``.
        budget: ``smoke``, ``quick`` or ``paper`` (or any budget the recipes define).
        seeds: training seeds; one run each.
        data_seed: seed of the long-tail draw (which images), separate from training seeds.
        overrides: ``key=value`` recipe overrides; part of each run's identity.
        store: SQLite results store; run folders go under ``out_dir/runs``.
        device: ``cpu``, ``cuda``, ``cuda:1``...; None picks CUDA when present.
        force: re-run runs that are already done instead of skipping them.
        recipes: extra recipe folders.
        console: where progress and the summary go (rich); a quiet one in tests.
        root: folder holding the dataset's files (None: the recipe's default_root).
        verify: check found figures and checksums against the recipe; False accepts a
            custom copy and records it as unverified.
        executor: ``inline`` (this process), ``local`` (submitit subprocesses, side by side
            within the cores or one per GPU) or ``slurm`` (submitit job arrays).
        slurm: :class:`ltbench.launch.SlurmOptions` (resources; also used by ``local``).
        wait: with ``local``/``slurm``, follow the jobs until they end; False returns once
            they are submitted (their records reach the store by themselves).

    Returns:
        One record per run, in plan order (none when not waiting). Failed runs have
        ``status == "failed"``.

    Raises:
        UnknownNameError, RecipeError: bad names or overrides; nothing runs.
        RunSetupError: a run's data could not be built; runs before it are stored.
    """
    specs = _sweep(locals()).plan()
    from .sweep import save_sweep

    save_sweep(specs, Path(out_dir))
    console = console or Console(stderr=True)
    if executor == "inline":
        records = _run_inline(specs, ResultStore(store), device, force, console)
    else:
        records = _run_submitit(specs, store, executor, Path(out_dir) / "jobs", slurm, device, force, wait, console)
    if records:
        console.print(summary_table(records))
    return records


def main_job_methods(catalog=None) -> list[str]:
    """The methods ``ltbench run`` trains without ``--methods`` (recipes with ``in_main_job``)."""
    from .runner import main_job_methods as of_catalog

    return of_catalog(catalog)


def _sweep(args: dict[str, Any]):
    """The :class:`ltbench.runner.Sweep` of a library call's arguments (its other ones ignored)."""
    import dataclasses

    from .runner import Sweep  # loads torch

    names = {f.name for f in dataclasses.fields(Sweep)}
    return Sweep.of(**{k: v for k, v in args.items() if k in names})


def plan(
    methods: Sequence[str] | None = None,
    data: Sequence[str] | None = None,
    budget: str = "quick",
    seeds: Sequence[int] = (0,),
    data_seed: int = 0,
    overrides: Sequence[str] = (),
    store: str | Path = DEFAULT_STORE,
    out_dir: str | Path = DEFAULT_OUT,
    recipes: Sequence[str] = (),
    root: str | Path | None = None,
    verify: bool = True,
) -> list[dict[str, Any]]:
    """What ``run`` with the same arguments would do (``ltbench run --dry-run``): each stage,
    what it needs, and whether it would run, resume or be skipped. Runs nothing."""
    from .sweep import plan_rows

    specs = _sweep(locals()).plan()
    return plan_rows(specs, synced_store(store, out_dir) if Path(store).is_file() else None)


def status(out_dir: str | Path = DEFAULT_OUT) -> list[dict[str, Any]]:
    """State of each stage of the latest sweep under ``out_dir``: queued, running (epoch),
    done, failed (last line of the error and the log path), cancelled, interrupted."""
    from .sweep import status_rows

    return status_rows(Path(out_dir))


def _progress(console: Console) -> Progress:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    return Progress(*columns, console=console, transient=False)


def _run_inline(specs, db: ResultStore, device, force: bool, console: Console) -> list[dict[str, Any]]:
    from .runner import execute_run

    records = []
    with _progress(console) as progress:
        runs_task = progress.add_task("runs", total=len(specs), info="")
        for spec in specs:
            epochs = progress.add_task(f"  {spec.label}", total=spec.config.train.epochs, info="")

            def on_epoch(epoch: int, total: int, row: dict, task=epochs) -> None:
                val = "" if row["val_top1"] is None else f"  val {100 * row['val_top1']:.1f}%"
                progress.update(task, completed=epoch, info=f"loss {row['train_loss']:.3f}{val}")

            record = execute_run(spec, db, device, force, on_epoch)
            status = "skipped (done)" if record.get("skipped") else record["status"]
            progress.update(epochs, completed=spec.config.train.epochs, info=status)
            progress.advance(runs_task)
            records.append(record)
    return records


def _run_submitit(
    specs, store, executor: str, folder: Path, slurm, device, force: bool, wait: bool, console: Console
) -> list[dict[str, Any]]:
    from .launch import submit
    from .record import placeholder

    db = ResultStore(store)
    done_before = {
        s.run_id: {**db.get(s.run_id), "skipped": True} for s in specs if not force and db.status(s.run_id) == "done"
    }
    finished: dict[str, dict] = dict(done_before)
    with _progress(console) as progress:
        task = progress.add_task(f"runs ({executor})", total=len(specs), completed=len(done_before), info="")

        def on_done(spec, record) -> None:
            # A job that died without a record still gets a named row.
            finished[spec.run_id] = {**placeholder(spec, record.get("status", "failed")), **record}
            progress.update(task, completed=len(finished), info=f"{spec.label}: {record['status']}")

        jobs = submit(specs, store, executor, folder, slurm, device, force, wait, on_done)
        progress.update(task, info=f"{len(jobs)} jobs submitted")
    if not wait:
        console.print(f"submitted {len(jobs)} jobs; `ltbench status` follows them, results reach the store as they end")
        return []
    db.ingest_dirs(s.run_dir for s in specs)  # idempotent: the jobs ingested their own records already
    return [finished.get(s.run_id) or placeholder(s, "failed", "no record") for s in specs]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def summary_table(records: Sequence[dict[str, Any]]) -> Table:
    """A rich table of runs: test accuracy by group (last epoch), best-on-val, ECE, time."""
    datasets = sorted({r["dataset"] for r in records})
    budgets = sorted({r["budget"] for r in records})
    table = Table(
        title=f"test top-1 % on {', '.join(datasets)} ({', '.join(budgets)} budget)",
        caption="groups: >100 / 20-100 / <20 training images; last epoch unless noted",
    )
    columns = [
        "method",
        *(["dataset"] if len(datasets) > 1 else []),
        *(["budget"] if len(budgets) > 1 else []),
        "seed",
        "many",
        "med",
        "few",
        "all",
        "all@val",
        "ECE",
        "train s",
        "status",
    ]
    for col in columns:
        left = col in ("method", "dataset", "budget", "status")
        table.add_column(col, justify="left" if left else "right", no_wrap=left)
    for r in records:
        m = r.get("metrics", {})
        last, best = m.get("last", {}), m.get("best_val", {})
        secs = r.get("timings", {}).get("train_seconds")
        status = "skipped" if r.get("skipped") else r["status"]
        row = [
            r["method"],
            *([r["dataset"]] if len(datasets) > 1 else []),
            *([r["budget"]] if len(budgets) > 1 else []),
            str(r["seed"]),
            _pct(last.get("many")),
            _pct(last.get("medium")),
            _pct(last.get("few")),
            _pct(last.get("top1")),
            _pct(best.get("top1")),
            _pct(last.get("ece")),
            "–" if secs is None else f"{secs:.0f}",
            status,
        ]
        table.add_row(*row)
    return table


def list_recipes(kind: str = "all", pattern: str = "*", recipes: Sequence[str] = ()) -> dict[str, list[dict]]:
    """Methods and/or datasets matching a wildcard, as plain dicts (what ``ltbench list`` shows)."""
    if kind not in ("all", "methods", "datasets"):
        raise ValueError(f"unknown list kind {kind!r}; choose methods, datasets or all")
    catalog = load_catalog(tuple(recipes))
    out: dict[str, list[dict]] = {}
    if kind in ("all", "methods"):
        out["methods"] = [
            {
                "name": m.name,
                "title": m.title,
                "paper": m.paper,
                "loss": m.loss,
                "version": m.version,
                "in_main_job": m.in_main_job,
                "budgets": {
                    b: {
                        "epochs": t.epochs,
                        "batch_size": t.batch_size,
                        "model": f"ViT d{t.embed_dim} x{t.depth} p{t.patch_size}",
                    }
                    for b, t in m.budgets.items()
                },
                "recipe": str(catalog.origins[f"methods/{m.name}"]),
            }
            for m in map(catalog.methods.get, catalog.methods.names(pattern))
        ]
    if kind in ("all", "datasets"):
        out["datasets"] = [
            {
                "name": d.name,
                "title": d.title,
                "paper": d.paper,
                "classes": d.num_classes,
                "image_size": d.image_size,
                "rho": d.longtail.rho if d.longtail.n_max > 0 else None,  # only a drawn long tail has one
                "profile": d.longtail.profile if d.longtail.n_max > 0 else None,
                "imbalance": d.stated_imbalance()[0],
                "imbalance_from": d.stated_imbalance()[1],
                "version": d.version,
                "recipe": str(catalog.origins[f"datasets/{d.name}"]),
            }
            for d in map(catalog.datasets.get, catalog.datasets.names(pattern))
        ]
    return out


def describe(
    name: str,
    root: str | Path | None = None,
    data_seed: int = 0,
    overrides: Sequence[str] = (),
    recipes: Sequence[str] = (),
) -> dict[str, Any]:
    """What dataset ``name`` yields on the files under ``root``, read from labels only.

    ``overrides`` change the dataset recipe as in ``run`` (``rho=50``, ``profile=step``).
    See :func:`ltbench.data.describe.describe_dataset` for the keys.
    """
    from .data.describe import describe_dataset
    from .recipes import apply_overrides, resolve

    catalog = load_catalog(tuple(recipes))
    spec = catalog.datasets.get(name)
    if overrides:  # reuse the run-config override rules on a throwaway method
        method = catalog.methods.get(catalog.methods.names()[0])
        spec = apply_overrides(resolve(method, spec, next(iter(method.budgets))), tuple(overrides)).data
    return describe_dataset(spec, root, data_seed)


def download(name: str, root: str | Path | None = None, recipes: Sequence[str] = ()) -> Path:
    """Fetch dataset ``name``'s files with torchvision's downloader (needs a network).

    Only CIFAR-10/100 and Fashion-MNIST can be fetched; the others must be obtained by hand.
    """
    from .data.download import download_dataset

    spec = load_catalog(tuple(recipes)).datasets.get(name)
    return download_dataset(spec, Path(root) if root else Path(spec.default_root or "."))


def open_store(store: str | Path) -> ResultStore:
    """An existing results store; a missing one is an error (reading never creates it)."""
    if not Path(store).is_file():
        raise FileNotFoundError(f"no results store at {store}; run `ltbench run` first or pass --store PATH")
    return ResultStore(store)


def synced_store(store: str | Path, runs: str | Path | None = None) -> ResultStore:
    """An existing store, first brought up to date with the finished ``record.json`` files
    under ``runs`` (default: the store's own folder, where ``ltbench run`` puts them)."""
    db = open_store(store)
    db.sync(Path(store).parent if runs is None else runs)
    return db


def results(store: str | Path = DEFAULT_STORE, runs: str | Path | None = None) -> list[dict[str, Any]]:
    """Every stored run (done and failed) with its headline metrics, one flat dict each.

    Finished runs under ``runs`` (a run's ``--out``; default: the store's folder) that the
    store lacks are ingested first, so a sweep's results show while it is still running."""
    return synced_store(store, runs).summary_rows()


def ingest(folder: str | Path, store: str | Path = DEFAULT_STORE) -> int:
    """Ingest every ``record.json`` under ``folder`` (any depth) into ``store``, creating it if
    needed; returns how many. Idempotent: ingesting again changes nothing. Folders named
    ``reproduce`` (where :func:`reproduce` writes its re-runs) are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}; give the folder that holds run folders (e.g. results/runs)")
    # Re-runs of `ltbench reproduce` keep their original's id: never let them replace it.
    found = [p.parent for p in sorted(folder.rglob("record.json")) if "reproduce" not in p.relative_to(folder).parts]
    return ResultStore(store).ingest_dirs(found)


def lineage(db: ResultStore, run_id: str, role: str = "") -> dict[str, Any]:
    """The tree of runs ``run_id`` consumed: ``{role, run_id, label, status, needs: [...]}``."""
    record = db.get(run_id)
    if record is None:
        return {"role": role, "run_id": run_id, "label": "(not in the store)", "status": "missing", "needs": []}
    label = f"{record['method']} on {record['dataset']} ({record['budget']}, seed {record['seed']})"
    return {
        "role": role,
        "run_id": run_id,
        "label": label,
        "status": record["status"],
        "needs": [lineage(db, need, r) for r, need in (record.get("needs") or {}).items()],
    }


def show(run_id: str, store: str | Path = DEFAULT_STORE, runs: str | Path | None = None) -> dict[str, Any]:
    """The full record of one run (a unique prefix of its id is enough): configuration,
    overrides, per-class vectors, provenance, and ``lineage``, the tree of stages it consumed
    with each stage's id and status.

    Raises:
        ValueError: no run, or more than one, has an id starting with ``run_id``.
    """
    db = synced_store(store, runs)
    full = db.find(run_id)
    return {**db.get(full), "lineage": lineage(db, full)}


def reproduce(
    run_id: str,
    store: str | Path = DEFAULT_STORE,
    out_dir: str | Path | None = None,
    device: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Re-run a stored run from its record alone (its stored configuration and the stored
    configurations of the stages it consumed, not today's recipes) into another folder and
    store, and compare the results metric by metric.

    Args:
        run_id: the run (a unique prefix of its id).
        store: the store that holds it and its lineage.
        out_dir: where the re-run goes, with its own store ``ltbench.db``
            (default: ``reproduce/<id>`` next to the store).
        device: as in :func:`run`.

    Returns:
        ``run_id``, ``out_dir``, ``identical`` (per-class counts equal at every stored
        selection), ``id_matches`` (today's code gives the same run id) and ``metrics``:
        rows of (selection, metric, stored, reproduced, difference).

    Raises:
        ValueError: unknown run id, a run that did not finish, or a stage missing from the store.
    """
    import numpy as np

    from .runner import execute_run, spec_from_record

    db = synced_store(store)
    full = db.find(run_id)
    record = db.get(full)
    if record["status"] != "done":
        raise ValueError(f"run {full[:10]} is {record['status']}, not done: nothing to reproduce")
    out = Path(out_dir) if out_dir is not None else Path(store).parent / "reproduce" / full[:10]
    if out.resolve() == Path(store).parent.resolve():
        raise ValueError(f"reproduce into another folder than the store's ({out}); pass --out DIR")
    specs = spec_from_record(record, db.get, out)
    target = ResultStore(out / "ltbench.db")
    console = console or Console(stderr=True)
    for spec in specs:
        console.print(f"reproducing {spec.label} [{spec.run_id[:10]}]", highlight=False)
        again = execute_run(spec, target, device)
        if again["status"] != "done":
            raise ValueError(f"the re-run of {spec.label} failed: {again.get('error')}")
    again = target.get(specs[-1].run_id)
    rows, identical = [], True
    for sel, stored in (record.get("results") or {}).items():
        new = (again.get("results") or {}).get(sel, {})
        identical &= all(
            np.array_equal(np.asarray(stored[k]), np.asarray(new.get(k, []))) for k in ("correct", "total")
        )
        for metric, value in (record.get("metrics") or {}).get(sel, {}).items():
            other = (again.get("metrics") or {}).get(sel, {}).get(metric)
            diff = None if value is None or other is None else other - value
            rows.append({"selection": sel, "metric": metric, "stored": value, "reproduced": other, "difference": diff})
    return {
        "run_id": full,
        "out_dir": str(out),
        "id_matches": specs[-1].run_id == full and all(s.variant for s in specs),
        "identical": identical,
        "metrics": rows,
    }


def report(
    store: str | Path = DEFAULT_STORE,
    out_dir: str | Path | None = None,
    convention: str = "threshold",
    selection: str = "last",
    methods: Sequence[str] | None = None,
    data: Sequence[str] | None = None,
    budget: str | None = None,
    baseline: str | None = None,
    runs: str | Path | None = None,
    shift: bool = False,
    metric: str = "accuracy",
) -> dict[str, Path]:
    """Write tables (LaTeX, Markdown, CSV) and figures of the finished runs in the store.

    Args:
        store: the results store.
        out_dir: output folder (default: ``report/`` next to the store).
        convention: many/medium/few convention, recomputed from per-class counts.
        selection: ``last`` epoch or ``best_val``.
        methods, data, budget: report only these (None: all).
        baseline: mark methods whose top-1 differs from this one's (paired t-test over seeds).
        runs: a run's ``--out`` whose finished records are ingested first (default: the
            store's folder).
        shift: also write accuracy under shifted test distributions (forward / uniform /
            backward, :mod:`ltbench.shift`): shift.csv, .tex, .md, .png, .pdf.
        metric: ``accuracy``, or ``error`` for error rates (100 - accuracy, the lowest best;
            the harmonic-mean column left out), as CIFAR papers quote them.

    Returns:
        Paths of the written files by kind.

    Raises:
        ValueError: no finished run matches, or a bad convention / selection / metric / baseline.
    """
    from . import reporting  # pandas and matplotlib load only when reporting

    store = Path(store)
    out = Path(out_dir) if out_dir is not None else store.parent / "report"
    records = reporting.select_records(synced_store(store, runs).records(), methods, data, budget)
    return reporting.write_report(records, out, convention, selection, baseline, shift=shift, metric=metric)
