"""Reliability diagrams with their ECE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.groups import GROUPS, assign_groups
from ..evaluation.metrics import ece_from_bins
from .plot_base import block_title, grid_shape, new_figure, rows_by_block, save_figure, style_for
from .plot_style import MethodStyle, legend_outside

Key = tuple[str, Any, Any]  # (row name, dataset, budget)


MIN_BIN_SAMPLES = 10  # reliability bins with fewer test samples are drawn hollow: their accuracy is noise


def reliability(calib: dict, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: mean confidence, accuracy and sample count, over the samples of ``classes``."""
    count = np.asarray(calib["count"], dtype=float)
    conf = np.asarray(calib["conf_sum"], dtype=float)
    corr = np.asarray(calib["correct_sum"], dtype=float)
    if classes is not None:
        count, conf, corr = count[classes], conf[classes], corr[classes]
    n = count.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return conf.sum(0) / n, corr.sum(0) / n, n


def _pooled_calib(runs, selection: str) -> dict[str, np.ndarray]:
    return {
        k: np.sum([np.asarray(r["results"][selection]["calib"][k], dtype=float) for r in runs], axis=0)
        for k in ("count", "conf_sum", "correct_sum")
    }


def _ece_title(method: str, pooled: dict, groups: dict[str, np.ndarray], n_runs: int) -> str:
    """``method``, then ``ECE x.x%`` (ltbench.evaluation.metrics.ece_from_bins of the pooled bins) and per group."""
    ece = ece_from_bins(pooled)
    head = f"{method}\nECE {100 * ece:.1f}%" if ece is not None else f"{method}\nECE –"
    if n_runs > 1:
        head += f" (pooled, n={n_runs})"
    parts = []
    for g in GROUPS:
        if g in groups:
            e = ece_from_bins(pooled, groups[g])
            parts.append(f"{g} {'–' if e is None else f'{100 * e:.1f}'}")
    return head + (f"\n{' · '.join(parts)}" if parts else "")


def figure_reliability(
    records: Sequence[dict[str, Any]],
    selection: str = "last",
    convention: str = "threshold",
    names: Mapping[str, str] | None = None,
    style: MethodStyle | None = None,
):
    """The reliability figure (see :func:`plot_reliability`) as a Figure; None without calibration bins."""
    from matplotlib.patches import Patch

    style = style_for(records, names, style)
    rows = {
        k: [r for r in runs if "calib" in ((r.get("results") or {}).get(selection) or {})]
        for k, runs in rows_by_block(records, names, style).items()
    }
    rows = {k: runs for k, runs in rows.items() if runs}
    if not rows:
        return None
    several_data = len({k[1:] for k in rows}) > 1
    several = len({k[2] for k in rows}) > 1
    n_rows, n_cols = grid_shape(len(rows))
    fig = new_figure(2.9 * n_cols + 2.4, 3.5 * n_rows)
    grid = fig.add_gridspec(2 * n_rows, n_cols, height_ratios=[3, 1] * n_rows)
    for i, ((method, dataset, budget), runs) in enumerate(rows.items()):
        r, c = divmod(i, n_cols)
        ax = fig.add_subplot(grid[2 * r, c])
        cax = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        pooled = _pooled_calib(runs, selection)
        first = runs[0]
        has_groups = convention != "index" or first.get("index_sizes")
        groups = assign_groups(first["train_counts"], convention, first.get("index_sizes")) if has_groups else {}
        conf, acc, n = reliability(pooled)
        nb = len(n)
        centres = (np.arange(nb) + 0.5) / nb
        solid, thin = n >= MIN_BIN_SAMPLES, (n > 0) & (n < MIN_BIN_SAMPLES)
        colour = style(method).colour
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.bar(centres[solid], acc[solid], 1 / nb, color=colour, edgecolor="black", lw=0.4, label="accuracy")
        ax.bar(centres[thin], acc[thin], 1 / nb, facecolor="none", edgecolor=colour, hatch="///", lw=0.6)
        # The gap to the diagonal at each bin's mean confidence, as in Guo et al.
        ax.plot(conf[solid], acc[solid], ls="none", marker="_", ms=6, c="black")
        title = _ece_title(method, pooled, groups, len(runs))
        if several_data:
            title = title.replace("\n", f" ({block_title(dataset, budget, several)})\n", 1)
        ax.set_title(title, fontsize=8)
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.tick_params(labelsize=7, labelbottom=False)
        cax.bar(centres, n, 1 / nb, color=np.where(solid, "0.45", "0.8"), edgecolor="none")
        cax.axhline(MIN_BIN_SAMPLES, color="black", lw=0.6, ls=":")
        cax.set_yscale("symlog", linthresh=10)
        cax.set_ylim(0, max(n.max(), MIN_BIN_SAMPLES) * 2)
        cax.tick_params(labelsize=6)
        cax.set_xlabel("confidence", fontsize=8)
        if c == 0:
            ax.set_ylabel("accuracy", fontsize=8)
            cax.set_ylabel("samples", fontsize=7)
    handles = [
        Patch(facecolor="0.5", edgecolor="black", lw=0.4),
        Patch(facecolor="none", edgecolor="0.3", hatch="///"),
        Patch(facecolor="0.8"),
    ]
    labels = [
        f"bin accuracy (≥ {MIN_BIN_SAMPLES} samples)",
        f"bin with < {MIN_BIN_SAMPLES} samples",
        "samples per bin (log)",
    ]
    legend_outside(fig, handles, labels, "bins pooled over seeds;\n— mean confidence\n-- perfect calibration")
    return fig


def plot_reliability(
    records: Sequence[dict[str, Any]],
    path: Path,
    selection: str = "last",
    convention: str = "threshold",
    names: Mapping[str, str] | None = None,
    style: MethodStyle | None = None,
) -> list[Path]:
    """A reliability diagram per method (small multiples): accuracy per confidence bin over the
    method's seeds pooled, bins with fewer than :data:`MIN_BIN_SAMPLES` samples hollow, the
    sample count per bin beneath, ECE (overall and per group of ``convention``) in the title.

    Args:
        records: finished run records; runs without calibration bins are skipped.
        path: output path; ``.png`` and ``.pdf`` are written.
        selection: ``last`` or ``best_val``.
        convention: group convention of the per-group ECEs.
        names: run id -> table row name; None: the records' methods.
        style: the report's method style; None: built from ``records``.
    """
    fig = figure_reliability(records, selection, convention, names, style)
    if fig is None:
        fig = new_figure(4.0, 2.0)
        fig.text(0.5, 0.5, "no run stored calibration bins", ha="center", va="center")
    return save_figure(fig, path)
