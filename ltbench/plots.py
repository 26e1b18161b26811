"""Report figures beyond the per-class scatter, each written as PNG and PDF (matplotlib, no pyplot).

- :func:`plot_groups`: many / medium / few / all bars per method with error bars over seeds.
- :func:`plot_curves`: training loss and validation top-1 per epoch, mean over seeds.
- :func:`plot_reliability`: reliability diagrams from the stored calibration bins (pooled over
  seeds), overall and per group.
- :func:`plot_heads`: DeiT-LT's CLS, DIST and averaged heads by group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import write_atomic
from .groups import GROUPS, assign_groups
from .metrics import summarize


def _figure(n: int, width: float = 5.0, height: float = 3.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, n, squeeze=False)[0]


def _save(fig, path: Path) -> list[Path]:
    out = []
    for fmt in ("png", "pdf"):
        target = path.with_suffix(f".{fmt}")
        write_atomic(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=120))
        out.append(target)
    return out


def plot_groups(frame: pd.DataFrame, path: Path) -> list[Path]:
    """Grouped bars of many / medium / few / all (%, mean over seeds, error bar = std)."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = _figure(len(datasets), 6.0)
    metrics = ("many", "medium", "few", "top1")
    for ax, dataset in zip(axes, datasets):
        sub = frame[frame["dataset"] == dataset]
        methods = list(dict.fromkeys(sub["method"]))
        width = 0.8 / max(len(methods), 1)
        for i, method in enumerate(methods):
            runs = sub[sub["method"] == method]
            mean = 100 * runs[list(metrics)].mean().to_numpy(dtype=float)
            std = 100 * runs[list(metrics)].std(ddof=1).to_numpy(dtype=float) if len(runs) > 1 else None
            x = np.arange(len(metrics)) + (i - (len(methods) - 1) / 2) * width
            ax.bar(
                x,
                np.nan_to_num(mean),
                width,
                yerr=None if std is None else np.nan_to_num(std),
                capsize=2,
                label=f"{method} (n={len(runs)})",
            )
        ax.set_xticks(np.arange(len(metrics)), ["many", "medium", "few", "all"])
        ax.set_ylabel("test top-1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{dataset} (missing bar: empty group)")
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def _by_method(records) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault((r["method"], r["dataset"], r.get("budget")), []).append(r)
    return out


def plot_curves(records: Sequence[dict[str, Any]], path: Path) -> list[Path]:
    """Training loss and validation top-1 per epoch, averaged over each method's seeds."""
    fig, (loss_ax, val_ax) = _figure(2)
    for (method, dataset, _), runs in _by_method(records).items():
        hists = [r.get("history") or [] for r in runs]
        length = min(map(len, hists))
        if not length:
            continue
        epochs = [h["epoch"] for h in hists[0][:length]]
        loss = np.mean([[h["train_loss"] for h in hist[:length]] for hist in hists], axis=0)
        val = np.array(
            [[np.nan if h.get("val_top1") is None else 100 * h["val_top1"] for h in hist[:length]] for hist in hists],
            dtype=float,
        )
        label = f"{method} ({dataset}, n={len(runs)})"
        loss_ax.plot(epochs, loss, lw=1, label=label)
        if not np.isnan(val).all():
            val_ax.plot(epochs, np.nanmean(val, axis=0), lw=1, label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss (mean over seeds)", yscale="log")
    val_ax.set(xlabel="epoch", ylabel="validation top-1 (%)", title="validation accuracy (mean over seeds)")
    if val_ax.get_legend_handles_labels()[0]:
        val_ax.legend(fontsize=6)
    return _save(fig, path)


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


def plot_reliability(
    records: Sequence[dict[str, Any]], path: Path, selection: str = "last", convention: str = "threshold"
) -> list[Path]:
    """Reliability diagrams (accuracy against confidence per bin), overall and per group; the
    bins of a method's seeds are pooled."""
    fig, axes = _figure(4, 3.6, 3.6)
    for (method, dataset, _), runs in _by_method(records).items():
        runs = [r for r in runs if "calib" in ((r.get("results") or {}).get(selection) or {})]
        if not runs:
            continue
        pooled = {
            k: np.sum([r["results"][selection]["calib"][k] for r in runs], axis=0)
            for k in ("count", "conf_sum", "correct_sum")
        }
        first = runs[0]
        has_groups = convention != "index" or first.get("index_sizes")
        groups = assign_groups(first["train_counts"], convention, first.get("index_sizes")) if has_groups else {}
        for ax, name in zip(axes, ("all", *GROUPS)):
            classes = None if name == "all" else groups.get(name)
            if name != "all" and (classes is None or len(classes) == 0):
                continue
            conf, acc, n = reliability(pooled, classes)
            keep = n > 0
            ax.plot(conf[keep], acc[keep], marker="o", ms=3, lw=1, label=f"{method} ({dataset}, n={len(runs)})")
    for ax, name in zip(axes, ("all classes", *GROUPS)):
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=name)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=6)
    return _save(fig, path)


def plot_heads(
    records: Sequence[dict[str, Any]], path: Path, selection: str = "last", convention: str = "threshold"
) -> list[Path] | None:
    """DeiT-LT: the CLS, DIST and averaged heads' accuracy by group; None without such runs."""
    runs = [r for r in records if "heads" in ((r.get("results") or {}).get(selection) or {})]
    if not runs:
        return None
    fig, (ax,) = _figure(1, 6.0)
    names, metrics = ("cls", "dist", "average"), ("many", "medium", "few", "top1")
    values = {h: [] for h in names}
    for r in runs:
        res = r["results"][selection]
        for head in names:
            stats = res if head == "average" else res["heads"][head]
            m = summarize(stats["correct"], stats["total"], r["train_counts"], None, convention, r.get("index_sizes"))
            values[head].append([np.nan if m[k] is None else 100 * m[k] for k in metrics])
    for i, head in enumerate(names):
        v = np.asarray(values[head], dtype=float)
        ax.bar(np.arange(4) + (i - 1) * 0.27, np.nan_to_num(np.nanmean(v, 0)), 0.27, label=f"{head} head")
    ax.set_xticks(np.arange(4), ["many", "medium", "few", "all"])
    ax.set(ylabel="test top-1 (%)", ylim=(0, 100), title=f"DeiT-LT heads ({len(runs)} runs)")
    ax.legend(fontsize=8)
    return _save(fig, path)
