"""``ltbench report``: which records, in which order, and every table and figure written from them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.atomic import write_text_atomic
from .runs import NO_RUNS, aggregate, finished_runs, runs_frame
from .tables import TABLE_METRICS, csv_table, latex_table, markdown_table, paired_tests


def select_records(
    records: Sequence[dict[str, Any]],
    methods: Sequence[str] | None = None,
    data: Sequence[str] | None = None,
    budget: str | None = None,
) -> list[dict[str, Any]]:
    """Records of the given methods, datasets and budget (None: all).

    Raises:
        ValueError: there are records, and none matches; the message names the filter and
            what the records hold.
    """
    chosen = [
        r
        for r in records
        if (methods is None or r["method"] in methods)
        and (data is None or r["dataset"] in data)
        and (budget is None or r.get("budget") == budget)
    ]
    if records and not chosen:
        asked = [(flag, value) for flag, value in (("methods", methods), ("data", data), ("budget", budget)) if value]
        held = {
            flag: ", ".join(sorted({str(r.get(key)) for r in records}))
            for flag, key in (("methods", "method"), ("data", "dataset"), ("budget", "budget"))
        }
        raise ValueError(
            "no run in the store matches "
            + " ".join(f"--{flag} {value if isinstance(value, str) else ','.join(value)}" for flag, value in asked)
            + "; it holds "
            + "; ".join(f"{flag}: {held[flag]}" for flag, _ in asked)
        )
    return chosen


def in_report_order(frame: pd.DataFrame, records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """``frame``'s rows with each (dataset, budget) block's methods in the report's order
    (model family, then name: :func:`ltbench.reports.plot_style.method_order`), as every figure has them."""
    from .plot_style import method_order

    by_id = {r["run_id"]: r for r in records}
    names = dict(zip(frame["run_id"], frame["method"]))
    rank = {m: i for i, m in enumerate(method_order([by_id[i] for i in names if i in by_id], names))}
    blocks = {k: i for i, k in enumerate(dict.fromkeys(zip(frame["dataset"], frame["budget"].astype(str))))}
    keys = [
        (blocks[(d, str(b))], rank.get(m, len(rank)))
        for d, b, m in zip(frame["dataset"], frame["budget"], frame["method"])
    ]
    out = frame.iloc[sorted(range(len(frame)), key=keys.__getitem__)].reset_index(drop=True)
    out.attrs = dict(frame.attrs)
    return out


def write_report(
    records: Sequence[dict[str, Any]],
    out_dir: str | Path,
    convention: str = "threshold",
    selection: str = "last",
    baseline: str | None = None,
    shift: bool = False,
    metric: str = "accuracy",
    posthoc: bool = False,
    shift_counts: str = "expected",
    html: bool = True,
) -> dict[str, Path]:
    """Write the tables (LaTeX, Markdown, CSV) and the figures (PNG and PDF) into ``out_dir``,
    and (``html``) all of it as one offline page, ``report.html`` (:mod:`ltbench.reports.html`).

    Args:
        records: run records as stored.
        out_dir: output folder, created if needed.
        convention: many/medium/few convention (see :mod:`ltbench.evaluation.groups`).
        selection: ``last`` or ``best_val``.
        baseline: a method to test every other against (paired t-test over seeds, marked
            with a dagger in the All column when p < 0.05); None for no test.
        metric: what the tables show: ``accuracy`` or ``error`` (100 - accuracy, the lowest
            best, the harmonic mean left out).
        shift: also write accuracy under shifted test distributions (:mod:`ltbench.reports.shift`):
            ``shift.csv``, ``shift.tex``, ``shift.md``, ``shift.png`` / ``.pdf``.
        shift_counts: how the shifted test sets weigh classes: ``expected`` (continuous
            weights) or ``sade`` (SADE's integer per-class counts), :data:`ltbench.reports.shift.COUNTS`.
        html: also write ``report.html``, the browsable page (default on).
        posthoc: also write post-hoc logit adjustment from the runs' stored logits
            (:mod:`ltbench.reports.posthoc`): ``posthoc.csv``, ``posthoc.tex``, ``posthoc.md``, each
            method as trained and ``+ post-hoc LA (tau=...)``; with ``shift``, the shifted
            tables get a ``+ known prior`` row per method. Runs without stored logits (older
            records) are named in one warning and left out of those rows.

    Returns:
        Paths by kind: ``latex``, ``markdown``, ``csv``, ``plot`` (per-class PNG), and
        ``groups``, ``curves``, ``reliability``, ``heads`` (PNG; a PDF lies beside each),
        with ``shift`` also ``shift_csv``, ``shift_latex``, ``shift_markdown``, ``shift_plot``,
        with ``posthoc`` also ``posthoc_csv``, ``posthoc_latex``, ``posthoc_markdown`` (where
        some run stored logits).

    Raises:
        ValueError: no finished run, a bad convention / selection / metric, or an unknown baseline.
    """
    from .plot_calibration import plot_reliability
    from .plot_classes import plot_groups, plot_per_class
    from .plot_style import MethodStyle
    from .plot_training import plot_curves, plot_heads

    if metric not in TABLE_METRICS:
        raise ValueError(f"unknown table metric {metric!r}; choose one of {', '.join(TABLE_METRICS)}")
    from .shift import COUNTS

    if shift_counts not in COUNTS:
        raise ValueError(f"unknown shifted-test counts {shift_counts!r}; choose one of {', '.join(COUNTS)}")
    frame = runs_frame(records, convention, selection)
    if frame.empty:
        raise ValueError(NO_RUNS)
    if baseline is not None and baseline not in set(frame["method"]):
        raise ValueError(
            f"baseline {baseline!r} has no finished run here; methods: {', '.join(dict.fromkeys(frame['method']))}"
        )
    frame = in_report_order(frame, records)
    agg = aggregate(frame)
    agg.attrs["baseline"] = baseline
    agg.attrs["metric"] = metric
    marks = paired_tests(frame, baseline) if baseline else {}
    out = Path(out_dir)
    paths = {
        "latex": out / "table.tex",
        "markdown": out / "table.md",
        "csv": out / "table.csv",
        "plot": out / "per_class.png",
    }
    from .published import references_for

    # The runs the table reports (duplicates of a seed left out) are the ones drawn.
    kept = set(frame["run_id"])
    done = [r for r in finished_runs(records, selection) if r["run_id"] in kept]
    refs = references_for(done)
    tex, md, csv = latex_table(agg, marks=marks, references=refs), markdown_table(agg, marks, refs), csv_table(agg)
    write_text_atomic(paths["latex"], tex)
    write_text_atomic(paths["markdown"], md)
    write_text_atomic(paths["csv"], csv)
    # One style for every figure: a method keeps its colour and place (family, then name).
    names = dict(zip(frame["run_id"], frame["method"]))
    style = MethodStyle.from_records(done, names)
    plot_per_class(done, paths["plot"], selection, names, convention, style)
    paths["groups"] = plot_groups(frame, out / "groups", style)[0]
    paths["curves"] = plot_curves(done, out / "curves", names, style)[0]
    paths["reliability"] = plot_reliability(done, out / "reliability", selection, convention, names, style)[0]
    heads = plot_heads(done, out / "heads", selection, convention, names, style)
    if heads is not None:
        paths["heads"] = heads[0]
    if shift:  # the same runs and rows as the table
        from .posthoc import with_known_prior
        from .shift import write_shift

        def known_prior(agg):
            return with_known_prior(done, frame, agg, selection, shift_counts)

        def test_time(long):  # SADE's aggregation, learned on each actual subset
            from .shift_aggregation import with_test_time_rows

            return with_test_time_rows(long, {r["run_id"]: r for r in done}, frame, selection)

        extra = known_prior if posthoc else None
        aggregated = test_time if shift_counts == "subsets" else None
        paths.update(
            write_shift(done, frame, out, selection, extra_rows=extra, counts=shift_counts, extra_runs=aggregated)
        )
    if posthoc:
        from .posthoc import write_posthoc

        paths.update(write_posthoc(done, frame, out, selection, metric))
    if html:
        from .html import write_html

        paths["html"] = write_html(out / "report.html", agg, frame, done, dict(paths), selection, convention, refs)
    return paths
