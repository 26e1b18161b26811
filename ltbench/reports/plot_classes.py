"""Per-class accuracy against training counts, and the many / medium / few bars."""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.atomic import write_atomic
from ..evaluation.groups import assign_groups
from ..evaluation.metrics import per_class_accuracy
from .plot_base import (
    GROUP_LABELS,
    Legend,
    block_title,
    group_boundaries,
    new_figure,
    rows_by_block,
    save_figure,
    style_for,
)
from .plot_style import MethodStyle

Key = tuple[str, Any, Any]  # (row name, dataset, budget)


MAX_POINTS = 40  # per-class lines with more distinct training counts are averaged in log-spaced bins


def _per_class_curve(runs, selection: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (training count), mean and std over runs of the per-class accuracy (%), classes of
    equal count averaged; past :data:`MAX_POINTS` counts, averaged in log-spaced count bins."""
    counts = np.mean([r["train_counts"] for r in runs], axis=0)
    accs = np.array(
        [per_class_accuracy(r["results"][selection]["correct"], r["results"][selection]["total"]) for r in runs]
    )
    keep = counts > 0  # a log axis cannot show a class with no images
    counts, accs = counts[keep], accs[:, keep]
    xs = np.unique(counts)
    if len(xs) > MAX_POINTS:
        edges = np.geomspace(xs[0], xs[-1] * 1.0001, MAX_POINTS // 2 + 1)
        which = np.clip(np.searchsorted(edges, counts, side="right") - 1, 0, len(edges) - 2)
    else:
        which = np.searchsorted(xs, counts)
    bins = np.unique(which)
    with warnings.catch_warnings():  # a bin no run tested stays NaN and is not drawn
        warnings.simplefilter("ignore", RuntimeWarning)
        x = np.array([np.exp(np.mean(np.log(counts[which == b]))) for b in bins])
        per_run = 100 * np.array([[np.nanmean(a[which == b]) for b in bins] for a in accs])
        mean = np.nanmean(per_run, axis=0)
        std = np.nanstd(per_run, axis=0, ddof=1) if len(runs) > 1 else np.full_like(mean, np.nan)
    ok = ~np.isnan(mean)
    return x[ok], mean[ok], std[ok]


def figure_per_class(
    records: Sequence[dict[str, Any]],
    selection: str = "last",
    names: Mapping[str, str] | None = None,
    convention: str = "threshold",
    style: MethodStyle | None = None,
):
    """The per-class figure (see :func:`plot_per_class`) as a matplotlib Figure."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from .runs import CONVENTION_TEXT, SELECTION_TEXT

    style = style_for(records, names, style)
    rows = rows_by_block(records, names, style)
    blocks = list(dict.fromkeys(k[1:] for k in rows))
    several = len({b for _, b in blocks}) > 1
    fig = new_figure(5.2 * len(blocks) + 2.6, 4.2)
    axes = fig.subplots(1, len(blocks), squeeze=False, sharey=True)[0]
    legend = Legend()
    for ax, block in zip(axes, blocks):
        mine = {k[0]: runs for k, runs in rows.items() if k[1:] == block}
        for method, runs in mine.items():
            x, mean, std = _per_class_curve(runs, selection)
            lk = style(method)
            (line,) = ax.plot(x, mean, **lk.line(), ms=4, lw=1.2, alpha=0.9)
            if len(runs) > 1:
                ax.fill_between(x, mean - std, mean + std, color=lk.colour, alpha=0.15, lw=0)
            legend.add(method, line, len(runs))
        first = next(iter(mine.values()))[0]
        ax.set_xscale("log")
        # Plain numbers at powers of ten; minor labels overlap when counts span under a decade.
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        _draw_boundaries(ax, first, convention)
        ax.set_ylim(-2, 102)
        ax.set_xlabel("training images of the class (log scale)")
        ax.set_title(block_title(*block, several), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy of the class (%)")
    # CONVENTION_TEXT is written for LaTeX captions: its "--" is an en dash.
    groups = CONVENTION_TEXT.get(convention, convention).replace("--", "–")
    groups = "\n".join(textwrap.wrap(f"groups: {groups}", 38))
    legend.draw(fig, style, f"mean over seeds,\nband ± std ({SELECTION_TEXT.get(selection, selection)})\n{groups}")
    return fig


def _draw_boundaries(ax, record: Mapping[str, Any], convention: str) -> None:
    """Dashed lines at the many / medium / few boundaries, the groups named between them."""
    from matplotlib.transforms import blended_transform_factory

    if convention == "index" and not record.get("index_sizes"):
        return
    edges = group_boundaries(record["train_counts"], convention, record.get("index_sizes"))
    for e in edges:
        ax.axvline(e, color="0.35", ls="--", lw=0.9, zorder=0)
    lo, hi = ax.get_xlim()
    cuts = [lo, *edges, hi]
    # Groups from few (small counts, left) to many; name only those this run has.
    groups = assign_groups(record["train_counts"], convention, record.get("index_sizes"))
    present = [g for g in ("few", "medium", "many") if len(groups[g])]
    if len(present) != len(cuts) - 1:
        return
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for g, a, b in zip(present, cuts, cuts[1:]):
        ax.text(np.sqrt(a * b), 0.02, g, transform=trans, ha="center", va="bottom", fontsize=8, color="0.3")
    ax.set_xlim(lo, hi)


def plot_per_class(
    records: Sequence[dict[str, Any]],
    path: str | Path,
    selection: str = "last",
    names: dict[str, str] | None = None,
    convention: str = "threshold",
    style: MethodStyle | None = None,
) -> Path:
    """PNG (and a PDF beside it) of per-class test accuracy against training count (log x), a panel per dataset.

    One line per table row: the mean over its seeds, a band of ± std where it has more than
    one; the many / medium / few boundaries of ``convention`` are dashed lines.

    Args:
        records: run records as stored; only finished runs with ``selection`` are drawn.
        path: the PNG to write (atomically; its folder is created).
        selection: ``last`` or ``best_val``.
        names: the table row of each run id (``method`` of :func:`ltbench.reports.runs.runs_frame`),
            so runs of different rows are never averaged into one series; None: the records' methods.
        convention: the group convention whose boundaries are drawn.
        style: the report's method style; None: built from ``records``.

    Returns:
        ``path``.

    Raises:
        ValueError: bad selection, or no finished run.
    """
    from .runs import NO_RUNS, check_choices, finished_runs

    check_choices(convention, selection)
    done = finished_runs(records, selection)
    if not done:
        raise ValueError(NO_RUNS)
    fig = figure_per_class(done, selection, names, convention, style)
    path = Path(path)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    write_atomic(path.with_suffix(".pdf"), lambda tmp: fig.savefig(tmp, format="pdf"))
    return path


def figure_groups(frame: pd.DataFrame, style: MethodStyle | None = None):
    """The group-bars figure (see :func:`plot_groups`) as a matplotlib Figure."""
    style = style if style is not None else MethodStyle({m: "" for m in frame["method"]})
    blocks = list(dict.fromkeys(zip(frame["dataset"], frame["budget"])))
    several = len({b for _, b in blocks}) > 1
    fig = new_figure(6.0 * len(blocks) + 2.6, 4.0)
    axes = fig.subplots(1, len(blocks), squeeze=False, sharey=True)[0]
    metrics = list(GROUP_LABELS)
    legend = Legend()
    grouped = frame.groupby(["dataset", "budget"], sort=False, dropna=False)
    for ax, ((dataset, budget), sub) in zip(axes, grouped):
        methods = style.sorted(sub["method"])
        width = 0.84 / max(len(methods), 1)
        missing = False
        for i, method in enumerate(methods):
            runs = sub[sub["method"] == method]
            mean = 100 * runs[metrics].mean().to_numpy(dtype=float)
            std = 100 * runs[metrics].std(ddof=1).to_numpy(dtype=float) if len(runs) > 1 else None
            missing |= bool(np.isnan(mean).any())
            x = np.arange(len(metrics)) + (i - (len(methods) - 1) / 2) * width
            bars = ax.bar(
                x,
                np.nan_to_num(mean),
                width,
                yerr=None if std is None else np.nan_to_num(std),
                capsize=1.5,
                error_kw={"lw": 0.8},
                **style(method).bar(),
            )
            legend.add(method, bars, len(runs))
        ax.set_xticks(np.arange(len(metrics)), list(GROUP_LABELS.values()))
        ax.set_ylim(0, 100)
        ax.set_title(block_title(dataset, budget, several), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if missing:
            ax.set_xlabel("no bar: the group has no class", fontsize=8)
    axes[0].set_ylabel("test top-1 (%)")
    legend.draw(fig, style, "mean over seeds,\nerror bar ± std")
    return fig


def plot_groups(frame: pd.DataFrame, path: Path, style: MethodStyle | None = None) -> list[Path]:
    """Grouped bars of many / medium / few / all (%, mean over seeds, error bar = std), a panel per dataset.

    Args:
        frame: :func:`ltbench.reports.runs.runs_frame` (one row per run).
        path: output path; ``.png`` and ``.pdf`` are written.
        style: the report's method style; None: every method without family.
    """
    return save_figure(figure_groups(frame, style), path)
