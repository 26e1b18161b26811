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

from .execution.progress import summary_rows, summary_table  # noqa: F401  (ltbench.api.summary_* kept)
from .planning.catalog import load_catalog
from .store.access import Store, connect_store, runs_folder, synced_store
from .store.postgres import is_postgres_url
from .store.records import DEFAULT_OUT, DEFAULT_STORE
from .store.sqlite import ResultStore


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
    allow_large_sweep: bool = False,
    jobs: int | None = 1,
    threads: int | None = None,
    log: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run methods x datasets x seeds under one budget; store and return their records.

    Args:
        methods: method names; None means the main job's (:func:`main_job_methods`).
        data: dataset names; None means the embedded default, ``mnist_lt``.
        budget: ``smoke``, ``quick`` or ``paper`` (or any budget the recipes define).
        seeds: training seeds; one run each.
        data_seed: seed of the long-tail draw (which images), separate from training seeds.
        overrides: ``key=value`` recipe overrides; part of each run's identity.
        store: the results store: a SQLite file's path or a ``postgresql://`` URL (a lab's
            server, :mod:`ltbench.store.postgres`); run folders go under ``out_dir/runs``.
        device: ``cpu``, ``cuda``, ``cuda:1``...; None picks CUDA when present.
        force: re-run runs that are already done instead of skipping them.
        recipes: extra recipe folders.
        console: where progress and the summary go (rich); a quiet one in tests.
        root: folder holding the dataset's files (None: the recipe's default_root).
        verify: check found figures and checksums against the recipe; False accepts a
            custom copy and records it as unverified.
        executor: ``inline`` (this process), ``local`` (submitit subprocesses, side by side
            within the cores or one per GPU) or ``slurm`` (submitit job arrays).
        slurm: :class:`ltbench.execution.launch.SlurmOptions` (resources; also used by ``local``).
        wait: with ``local``/``slurm``, follow the jobs until they end; False returns once
            they are submitted (their records reach the store by themselves).
        allow_large_sweep: allow more than :data:`ltbench.planning.sweep_files.MAX_SWEEP_RUNS` runs.
        jobs: with ``inline``, how many runs train at once, each in a worker process
            (:mod:`ltbench.execution.pool`); 1 trains them one after another in this process; None
            one per core on a CPU (:func:`ltbench.execution.pool.default_jobs`).
        threads: intra-op threads per run (None: torch's default in this process, 1 in
            workers). A speed setting, not part of a run's identity: 1 and 2 threads agree to
            float32 noise, not bit for bit.
        log: trackers that also get every run's curves and results: ``tensorboard``,
            ``wandb`` (:mod:`ltbench.execution.trackers`; files under ``out_dir``).

    Returns:
        One record per run, in plan order (none when not waiting). Failed runs have
        ``status == "failed"``.

    Raises:
        UnknownNameError, RecipeError: bad names or overrides; nothing runs.
        RunSetupError: a run's data could not be built; runs before it are stored.
    """
    from .planning.sweep_files import check_device, check_writable_dir, save_sweep

    check_device(device)
    specs = _sweep(locals()).plan()
    # Everything checked before the first byte is written: the store (an ltbench store, or
    # none yet, on a writable disk; or a server that lets us in) and --out.
    db = connect_store(store)
    save_sweep(specs, check_writable_dir(out_dir))
    # Runs that finished with nobody ingesting them (--no-wait, a driver killed): known before
    # deciding what to run, so they are skipped rather than started again (cheap: the journal).
    db.sync(out_dir)
    console = console or Console(stderr=True)
    from .execution.progress import Fanout, make_reporter, print_summary
    from .execution.trackers import check_trackers, make_trackers

    check_trackers(log)
    if jobs is None:
        from .execution.pool import default_jobs

        jobs = default_jobs(len(specs), device, threads)
    if jobs < 1 or (threads is not None and threads < 1):
        raise ValueError(f"jobs and threads must be >= 1 (got jobs={jobs}, threads={threads})")
    trackers = make_trackers(log, out_dir)
    try:
        with make_reporter(console, len(specs)) as shown:
            reporter = Fanout(shown, *trackers)
            if executor == "inline":
                records = _run_inline(specs, store, db, device, force, reporter, jobs, threads)
            else:
                records = _run_submitit(
                    specs, store, executor, Path(out_dir) / "jobs", slurm, device, force, wait, console, reporter
                )
    finally:
        for tracker in trackers:
            tracker.close()
    if records:
        print_summary(console, records)
    return records


def main_job_methods(catalog=None) -> list[str]:
    """The methods ``ltbench run`` trains without ``--methods`` (recipes with ``in_main_job``)."""
    from .planning.sweep import main_job_methods as of_catalog

    return of_catalog(catalog)


def _sweep(args: dict[str, Any]):
    """The :class:`ltbench.planning.sweep.Sweep` of a library call's arguments (its other ones ignored)."""
    import dataclasses

    from .planning.sweep import Sweep  # loads torch
    from .planning.sweep_files import check_plan_args

    check_plan_args(args)
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
    allow_large_sweep: bool = False,
) -> list[dict[str, Any]]:
    """What ``run`` with the same arguments would do (``ltbench run --dry-run``): each stage,
    what it needs, and whether it would run, resume or be skipped. Runs nothing."""
    from .planning.sweep_files import plan_rows

    specs = _sweep(locals()).plan()
    return plan_rows(specs, synced_store(store, out_dir) if _store_exists(store) else None)


def _store_exists(store: str | Path) -> bool:
    """Whether there is a store to read: a SQLite file, or (a URL has no file) always: the server is asked."""
    return is_postgres_url(store) or Path(store).exists()


def status(out_dir: str | Path = DEFAULT_OUT) -> list[dict[str, Any]]:
    """State of each stage of the latest sweep under ``out_dir``: queued, running (epoch),
    done, failed (last line of the error and the log path), cancelled, interrupted."""
    from .planning.sweep_files import status_rows

    return status_rows(Path(out_dir))


def _run_inline(specs, store, db: Store, device, force: bool, reporter, jobs: int, threads: int | None):
    """The runs one after another in this process (``jobs == 1``), or side by side in workers."""
    if jobs > 1 and len(specs) > 1:
        from .execution.pool import run_side_by_side

        # The location as given (db.path of a URL has no password), for the pool to open itself.
        return run_side_by_side(specs, str(store), device, force, reporter, jobs, threads or 1)
    import torch

    from .execution.runner import execute_run

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    records = []
    try:
        for spec in specs:
            if force or db.status(spec.run_id) != "done":
                reporter.run_started(spec)

            def on_epoch(epoch: int, total: int, row: dict, spec=spec) -> None:
                reporter.epoch(spec, epoch, total, row)

            record = execute_run(spec, db, device, force, on_epoch)
            reporter.run_finished(spec, record)
            records.append(record)
    finally:
        torch.set_num_threads(before)
    return records


def _run_submitit(
    specs, store, executor: str, folder: Path, slurm, device, force: bool, wait: bool, console: Console, reporter
) -> list[dict[str, Any]]:
    from .config.record import placeholder
    from .execution.launch import submit
    from .execution.runner import finished_before

    db = connect_store(store)
    done_before = finished_before(specs, db, force)
    finished: dict[str, dict] = dict(done_before)
    for s in specs:
        if s.run_id in done_before:
            reporter.run_finished(s, done_before[s.run_id])

    def on_done(spec, record) -> None:
        # A job that died without a record still gets a named row.
        finished[spec.run_id] = {**placeholder(spec, record.get("status", "failed")), **record}
        reporter.run_finished(spec, finished[spec.run_id])

    def submitted(count) -> None:  # jobs and sbatch calls, said before the wait
        console.print(count.describe())

    jobs = submit(specs, store, executor, folder, slurm, device, force, wait, on_done, submitted)
    if not wait:
        console.print(
            f"submitted {len(jobs)} jobs; `ltbench status` follows them, and the next command that reads the "
            "store (results, report, run) ingests what they finished"
        )
        return []
    return [finished.get(s.run_id) or placeholder(s, "failed", "no record") for s in specs]


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
    from .config.overrides import apply_overrides
    from .config.run_config import resolve
    from .data.describe import describe_dataset

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


def results(store: str | Path = DEFAULT_STORE, runs: str | Path | None = None) -> list[dict[str, Any]]:
    """Every stored run (done and failed) with its headline metrics, one flat dict each.

    Finished runs under ``runs`` (a run's ``--out``; default: the SQLite store's folder,
    ``results`` for a ``postgresql://`` store) that the store lacks are ingested first, so a
    sweep's results show while it is still running."""
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
    return connect_store(store).ingest_dirs(found)


def lineage(db: Store, run_id: str, role: str = "") -> dict[str, Any]:
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

    from .execution.runner import execute_run
    from .planning.sweep import spec_from_record

    db = synced_store(store)
    full = db.find(run_id)
    record = db.get(full)
    if record["status"] != "done":
        raise ValueError(f"run {full[:10]} is {record['status']}, not done: nothing to reproduce")
    home = runs_folder(store)  # the SQLite store's folder; for a URL, results/
    out = Path(out_dir) if out_dir is not None else home / "reproduce" / full[:10]
    if out.resolve() == home.resolve():
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
    posthoc: bool = False,
    shift_counts: str = "expected",
    html: bool = True,
) -> dict[str, Path]:
    """Write tables (LaTeX, Markdown, CSV), figures and ``report.html`` (one offline page of
    all of it) for the finished runs in the store.

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
            backward, :mod:`ltbench.reports.shift`): shift.csv, .tex, .md, .png, .pdf.
        metric: ``accuracy``, or ``error`` for error rates (100 - accuracy, the lowest best;
            the harmonic-mean column left out), as CIFAR papers quote them.
        posthoc: also write post-hoc logit adjustment (tau chosen on validation) from the
            runs' stored logits, posthoc.csv, .tex, .md, and with ``shift`` a ``+ known prior``
            row per method in the shifted tables (:mod:`ltbench.reports.posthoc`).
        shift_counts: how the shifted test sets weigh classes: ``expected`` (continuous
            weights, the default), ``sade`` (SADE's integer per-class counts) or ``subsets``
            (actual subsets of those counts, scored from the stored logits).
        html: also write ``report.html`` (default on; :mod:`ltbench.reports.html`).

    Returns:
        Paths of the written files by kind.

    Raises:
        ValueError: no finished run matches, or a bad convention / selection / metric / baseline.
    """
    from .reports import write as reporting  # pandas and matplotlib load only when reporting

    out = Path(out_dir) if out_dir is not None else runs_folder(store) / "report"
    records = reporting.select_records(synced_store(store, runs).records(), methods, data, budget)
    return reporting.write_report(
        records,
        out,
        convention,
        selection,
        baseline,
        shift=shift,
        metric=metric,
        posthoc=posthoc,
        shift_counts=shift_counts,
        html=html,
    )
