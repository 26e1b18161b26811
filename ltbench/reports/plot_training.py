"""Training curves and DeiT-LT's per-head accuracies."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.metrics import summarize
from .plot_base import GROUP_LABELS, Legend, block_title, grid_shape, new_figure, rows_by_block, save_figure, style_for
from .plot_style import MethodStyle, legend_outside

Key = tuple[str, Any, Any]  # (row name, dataset, budget)


def loss_of(record: Mapping[str, Any]) -> str:
    """The loss a run trained with (its method config's ``loss``), else its method name: curves of
    different losses are never drawn on one axis, their values are not comparable."""
    method = (record.get("config") or {}).get("method") or {}
    return str(method.get("loss") or record.get("loss") or record["method"])


def _history(runs, key: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray] | None:
    """Epochs and the mean over runs of history column ``key`` (None where no run has it)."""
    hists = [r.get("history") or [] for r in runs]
    length = min(map(len, hists))
    if not length:
        return None
    values = np.array(
        [[np.nan if h.get(key) is None else scale * h[key] for h in hist[:length]] for hist in hists], dtype=float
    )
    if np.isnan(values).all():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array([h["epoch"] for h in hists[0][:length]]), np.nanmean(values, axis=0)


def _minor_label(value: float, _pos=None) -> str:
    """Label of a minor log tick: only at 2 and 5 times a power of ten, so labels never crowd."""
    mantissa = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
    return f"{value:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""


def figure_curves(
    records: Sequence[dict[str, Any]], names: Mapping[str, str] | None = None, style: MethodStyle | None = None
):
    """The training-curves figure (see :func:`plot_curves`) as a matplotlib Figure."""
    from matplotlib.ticker import FuncFormatter

    style = style_for(records, names, style)
    rows = rows_by_block(records, names, style)
    blocks = list(dict.fromkeys(k[1:] for k in rows))
    several = len({b for _, b in blocks}) > 1
    multi = len(blocks) > 1
    has_lr = any(_history(runs, "lr") is not None for runs in rows.values())
    losses = sorted({(loss_of(runs[0]), k[1:]) for k, runs in rows.items()}, key=lambda t: (blocks.index(t[1]), t[0]))
    top_n = len(blocks) * (2 if has_lr else 1)
    n_rows, n_cols = grid_shape(len(losses))
    fig = new_figure(max(4.4 * top_n, 3.4 * n_cols) + 2.8, 3.4 + 2.6 * n_rows)
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.4, 2.6 * n_rows])
    top_axes = top.subplots(1, top_n, squeeze=False)[0]
    loss_axes = bottom.subplots(n_rows, n_cols, squeeze=False).ravel()
    legend = Legend()
    for b, block in enumerate(blocks):
        suffix = f" — {block_title(*block, several)}" if multi else ""
        val_ax = top_axes[b * (2 if has_lr else 1)]
        lr_ax = top_axes[b * 2 + 1] if has_lr else None
        for (method, *rest), runs in rows.items():
            if tuple(rest) != block:
                continue
            kw = {**style(method).line(), "lw": 1.1, "ms": 3, "markevery": 0.1}
            val = _history(runs, "val_top1", 100.0)
            if val is not None:
                legend.add(method, val_ax.plot(*val, **kw)[0], len(runs))
            lr = _history(runs, "lr") if lr_ax is not None else None
            if lr is not None:
                legend.add(method, lr_ax.plot(*lr, **kw)[0], len(runs))
        val_ax.set(xlabel="epoch", ylabel="validation top-1 (%)", title=f"validation accuracy{suffix}")
        val_ax.grid(alpha=0.3)
        if lr_ax is not None:
            lr_ax.set(xlabel="epoch", ylabel="learning rate", title=f"learning rate{suffix}", yscale="log")
            lr_ax.grid(alpha=0.3)
    for ax, (loss, block) in zip(loss_axes, losses):
        positive = True
        for (method, *rest), runs in rows.items():
            if tuple(rest) != block or loss_of(runs[0]) != loss:
                continue
            curve = _history(runs, "train_loss")
            if curve is None:
                continue
            positive &= bool((curve[1] > 0).all())
            line = ax.plot(*curve, **style(method).line(), lw=1.1, ms=3, markevery=0.1)[0]
            legend.add(method, line, len(runs))
        suffix = f" — {block_title(*block, several)}" if multi else ""
        ax.set_title(f"training loss: {loss}{suffix}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if positive and ax.lines:
            ax.set_yscale("log")
            # Plain numbers (0.4, 2) rather than 4 x 10^-1; minor ticks labelled at 2 and 5 only.
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
        ax.grid(alpha=0.3)
    for ax in loss_axes[len(losses) :]:
        ax.set_visible(False)
    legend.draw(fig, style, "mean over seeds")
    return fig


def plot_curves(
    records: Sequence[dict[str, Any]],
    path: Path,
    names: Mapping[str, str] | None = None,
    style: MethodStyle | None = None,
) -> list[Path]:
    """Validation top-1 and learning rate per epoch (top), and the training loss in one panel per
    loss type (bottom: losses of different kinds are not comparable), each the mean over seeds.

    Args:
        records: finished run records; ``history`` rows give epoch, train_loss, val_top1 and lr.
        path: output path; ``.png`` and ``.pdf`` are written.
        names: run id -> table row name; None: the records' methods.
        style: the report's method style; None: built from ``records``.
    """
    return save_figure(figure_curves(records, names, style), path)


# Head names a record may hold (DeiT-LT's tokens; a multi-expert model's experts) and their labels;
# "average" is the prediction the record scores (DeiT-LT: the mean of both heads; experts: their mean).
HEAD_LABELS = {"cls": "CLS head", "dist": "DIST head", "average": "prediction (average)"}
_HATCHES = ("", "///", "\\\\", "xx", "--", "++", "oo")


def _heads_of(records: Sequence[dict[str, Any]], selection: str) -> list[str]:
    """Every head name of ``records`` in order of first appearance, then ``average``."""
    names = dict.fromkeys(h for r in records for h in r["results"][selection]["heads"])
    return [*names, "average"]


def _head_label(head: str) -> str:
    return HEAD_LABELS.get(head, head.replace("expert", "expert "))


def figure_heads(
    records: Sequence[dict[str, Any]],
    selection: str = "last",
    convention: str = "threshold",
    names: Mapping[str, str] | None = None,
    style: MethodStyle | None = None,
):
    """The heads figure (see :func:`plot_heads`) as a Figure; None without such runs."""
    from matplotlib.patches import Patch

    runs = [r for r in records if "heads" in ((r.get("results") or {}).get(selection) or {})]
    if not runs:
        return None
    style = style_for(records, names, style)
    rows = rows_by_block(runs, names, style)
    several = len({k[1:] for k in rows}) > 1
    fig = new_figure(4.6 * len(rows) + 2.4, 3.8)
    axes = fig.subplots(1, len(rows), squeeze=False, sharey=True)[0]
    metrics = list(GROUP_LABELS)
    every = _heads_of(runs, selection)
    hatch = {h: _HATCHES[i % len(_HATCHES)] for i, h in enumerate(every)}
    hatch["average"] = ".."
    for ax, ((method, dataset, budget), mine) in zip(axes, rows.items()):
        heads = _heads_of(mine, selection)
        width = 0.8 / len(heads)
        for i, head in enumerate(heads):
            values = []
            for r in mine:
                res = r["results"][selection]
                stats = res if head == "average" else res["heads"].get(head)
                if stats is None:  # a seed without this head
                    continue
                m = summarize(
                    stats["correct"], stats["total"], r["train_counts"], None, convention, r.get("index_sizes")
                )
                values.append([np.nan if m[k] is None else 100 * m[k] for k in metrics])
            v = np.asarray(values, dtype=float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(v, 0)
                err = np.nanstd(v, 0, ddof=1) if len(v) > 1 else None
            ax.bar(
                np.arange(4) + (i - (len(heads) - 1) / 2) * width,
                np.nan_to_num(mean),
                width,
                yerr=err,
                capsize=2,
                color=style(method).colour,
                alpha=1.0 if head != "average" else 0.55,
                hatch=hatch[head] or None,
                edgecolor="black",
                lw=0.5,
            )
        ax.set_xticks(np.arange(4), list(GROUP_LABELS.values()))
        where = f", {block_title(dataset, budget, True)}" if several else ""
        ax.set_title(f"{method} (n={len(mine)}{where})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("test top-1 (%)")
    handles = [
        Patch(facecolor="0.6", alpha=1.0 if h != "average" else 0.55, hatch=hatch[h] or None, edgecolor="black")
        for h in every
    ]
    legend_outside(fig, handles, [_head_label(h) for h in every], "heads,\nmean over seeds")
    return fig


def plot_heads(
    records: Sequence[dict[str, Any]],
    path: Path,
    selection: str = "last",
    convention: str = "threshold",
    names: Mapping[str, str] | None = None,
    style: MethodStyle | None = None,
) -> list[Path] | None:
    """Each head's accuracy by group next to the prediction the record scores, a panel per
    method in its colour (DeiT-LT: CLS, DIST and their average; a multi-expert model: each
    expert and their mean); None without such runs.

    Args:
        records: finished run records; those whose results lack ``heads`` are skipped.
        path: output path; ``.png`` and ``.pdf`` are written.
        selection: ``last`` or ``best_val``.
        convention: group convention.
        names: run id -> table row name; None: the records' methods.
        style: the report's method style; None: built from ``records``.
    """
    fig = figure_heads(records, selection, convention, names, style)
    return None if fig is None else save_figure(fig, path)
