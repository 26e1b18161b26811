"""Report figures, each written as PNG and PDF (matplotlib Figure + Agg canvas, no pyplot).

Every figure takes a :class:`~ltbench.plot_style.MethodStyle` so that a method has one colour,
marker and place in the order (family, then name) across the whole report, and puts its legend
outside the axes. Each ``plot_*`` writes files; the matching ``figure_*`` returns the Figure
(tests inspect it).

- :func:`plot_per_class`: per-class accuracy against training count, group boundaries drawn.
- :func:`plot_groups`: many / medium / few / all bars per method, error bar = std over seeds.
- :func:`plot_curves`: validation top-1 and learning rate per epoch, training loss by loss type.
- :func:`plot_reliability`: a reliability diagram per method, bins pooled over seeds.
- :func:`plot_heads`: DeiT-LT's CLS, DIST and averaged heads by group.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import write_atomic
from .groups import GROUPS, assign_groups
from .metrics import ece_from_bins, per_class_accuracy, summarize
from .plot_style import MethodStyle, legend_outside

MIN_BIN_SAMPLES = 10  # reliability bins with fewer test samples are drawn hollow: their accuracy is noise
MAX_POINTS = 40  # per-class lines with more distinct training counts are averaged in log-spaced bins
GROUP_LABELS = {"many": "many", "medium": "medium", "few": "few", "top1": "all"}

Key = tuple[str, Any, Any]  # (row name, dataset, budget)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> list[Path]:
    out = []
    for fmt in ("png", "pdf"):
        target = Path(path).with_suffix(f".{fmt}")
        write_atomic(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=120))
        out.append(target)
    return out


def _style(records: Sequence[Mapping[str, Any]], names: Mapping[str, str] | None, style: MethodStyle | None):
    return style if style is not None else MethodStyle.from_records(records, names)


def _rows(records: Sequence[Mapping[str, Any]], names: Mapping[str, str] | None, style: MethodStyle) -> dict[Key, list]:
    """Runs by (row name, dataset, budget), rows in the style's order, blocks in order of appearance."""
    out: dict[Key, list] = {}
    for r in records:
        name = (names or {}).get(r["run_id"], r["method"])
        out.setdefault((name, r["dataset"], r.get("budget")), []).append(r)
    blocks = list(dict.fromkeys((d, b) for _, d, b in out))
    rank = {m: i for i, m in enumerate(style.sorted(m for m, _, _ in out))}
    return dict(sorted(out.items(), key=lambda kv: (blocks.index(kv[0][1:]), rank[kv[0][0]])))


def _block_title(dataset, budget, several_budgets: bool) -> str:
    return f"{dataset} ({budget})" if several_budgets else str(dataset)


def _label(method: str, ns: Sequence[int]) -> str:
    ns = sorted(set(ns))
    if not ns:
        return method
    return f"{method} (n={ns[0]})" if len(ns) == 1 else f"{method} (n={ns[0]}–{ns[-1]})"


class _Legend:
    """One legend entry per method over all panels, with the seeds it had in each."""

    def __init__(self):
        self.handles: dict[str, Any] = {}
        self.ns: dict[str, list[int]] = {}

    def add(self, method: str, handle, n: int) -> None:
        self.handles.setdefault(method, handle)
        self.ns.setdefault(method, []).append(n)

    def draw(self, fig, style: MethodStyle, title: str | None = None):
        order = style.sorted(self.handles)
        ncols = 1 if len(order) <= 22 else 2
        return legend_outside(
            fig, [self.handles[m] for m in order], [_label(m, self.ns[m]) for m in order], title, ncols=ncols
        )


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return -(-n // cols), cols


# ---------------------------------------------------------------- per-class accuracy


def group_boundaries(train_counts: Sequence[int], convention: str = "threshold", index_sizes=None) -> list[float]:
    """Training counts where many / medium / few change, for drawing on a count axis.

    ``threshold`` and ``oltr`` put the boundary half-way between the last count of one group
    and the first of the next, found by asking :func:`ltbench.groups.assign_groups` itself
    (19.5 and 100.5 for ``threshold``), so figures follow the groups' definition. ``index``
    splits the classes of this run: the boundary is the geometric mean of the counts either
    side of the split. Only boundaries between this run's smallest and largest counts are given.
    """
    counts = np.asarray(train_counts, dtype=float)
    if convention == "index":
        order = np.sort(counts)[::-1]
        cuts = np.cumsum(index_sizes)[:2]
        edges = [float(np.sqrt(order[c - 1] * order[c])) for c in cuts if 0 < c < len(order)]
    else:
        probe = np.arange(0, 100_001)
        groups = assign_groups(probe, convention)
        edges = []
        for low, high in (("few", "medium"), ("medium", "many")):
            if len(groups[low]) and len(groups[high]):
                edges.append((probe[groups[low]].max() + probe[groups[high]].min()) / 2)
    lo, hi = counts[counts > 0].min(initial=np.inf), counts.max(initial=0)
    return sorted(float(e) for e in edges if lo < e < hi)


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

    from .reporting import CONVENTION_TEXT, SELECTION_TEXT

    style = _style(records, names, style)
    rows = _rows(records, names, style)
    blocks = list(dict.fromkeys(k[1:] for k in rows))
    several = len({b for _, b in blocks}) > 1
    fig = _figure(5.2 * len(blocks) + 2.6, 4.2)
    axes = fig.subplots(1, len(blocks), squeeze=False, sharey=True)[0]
    legend = _Legend()
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
        ax.set_title(_block_title(*block, several), fontsize=10)
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
        names: the table row of each run id (``method`` of :func:`ltbench.reporting.runs_frame`),
            so runs of different rows are never averaged into one series; None: the records' methods.
        convention: the group convention whose boundaries are drawn.
        style: the report's method style; None: built from ``records``.

    Returns:
        ``path``.

    Raises:
        ValueError: bad selection, or no finished run.
    """
    from .reporting import NO_RUNS, _check, _finished

    _check(convention, selection)
    done = _finished(records, selection)
    if not done:
        raise ValueError(NO_RUNS)
    fig = figure_per_class(done, selection, names, convention, style)
    path = Path(path)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    write_atomic(path.with_suffix(".pdf"), lambda tmp: fig.savefig(tmp, format="pdf"))
    return path


# ---------------------------------------------------------------- group bars


def figure_groups(frame: pd.DataFrame, style: MethodStyle | None = None):
    """The group-bars figure (see :func:`plot_groups`) as a matplotlib Figure."""
    style = style if style is not None else MethodStyle({m: "" for m in frame["method"]})
    blocks = list(dict.fromkeys(zip(frame["dataset"], frame["budget"])))
    several = len({b for _, b in blocks}) > 1
    fig = _figure(6.0 * len(blocks) + 2.6, 4.0)
    axes = fig.subplots(1, len(blocks), squeeze=False, sharey=True)[0]
    metrics = list(GROUP_LABELS)
    legend = _Legend()
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
        ax.set_title(_block_title(dataset, budget, several), fontsize=10)
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
        frame: :func:`ltbench.reporting.runs_frame` (one row per run).
        path: output path; ``.png`` and ``.pdf`` are written.
        style: the report's method style; None: every method without family.
    """
    return _save(figure_groups(frame, style), path)


# ---------------------------------------------------------------- training curves


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

    style = _style(records, names, style)
    rows = _rows(records, names, style)
    blocks = list(dict.fromkeys(k[1:] for k in rows))
    several = len({b for _, b in blocks}) > 1
    multi = len(blocks) > 1
    has_lr = any(_history(runs, "lr") is not None for runs in rows.values())
    losses = sorted({(loss_of(runs[0]), k[1:]) for k, runs in rows.items()}, key=lambda t: (blocks.index(t[1]), t[0]))
    top_n = len(blocks) * (2 if has_lr else 1)
    n_rows, n_cols = _grid(len(losses))
    fig = _figure(max(4.4 * top_n, 3.4 * n_cols) + 2.8, 3.4 + 2.6 * n_rows)
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.4, 2.6 * n_rows])
    top_axes = top.subplots(1, top_n, squeeze=False)[0]
    loss_axes = bottom.subplots(n_rows, n_cols, squeeze=False).ravel()
    legend = _Legend()
    for b, block in enumerate(blocks):
        suffix = f" — {_block_title(*block, several)}" if multi else ""
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
        suffix = f" — {_block_title(*block, several)}" if multi else ""
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
    return _save(figure_curves(records, names, style), path)


# ---------------------------------------------------------------- reliability


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
    """``method``, then ``ECE x.x%`` (ltbench.metrics.ece_from_bins of the pooled bins) and per group."""
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

    style = _style(records, names, style)
    rows = {
        k: [r for r in runs if "calib" in ((r.get("results") or {}).get(selection) or {})]
        for k, runs in _rows(records, names, style).items()
    }
    rows = {k: runs for k, runs in rows.items() if runs}
    if not rows:
        return None
    several_data = len({k[1:] for k in rows}) > 1
    several = len({k[2] for k in rows}) > 1
    n_rows, n_cols = _grid(len(rows))
    fig = _figure(2.9 * n_cols + 2.4, 3.5 * n_rows)
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
            title = title.replace("\n", f" ({_block_title(dataset, budget, several)})\n", 1)
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
        fig = _figure(4.0, 2.0)
        fig.text(0.5, 0.5, "no run stored calibration bins", ha="center", va="center")
    return _save(fig, path)


# ---------------------------------------------------------------- DeiT-LT heads

HEADS = {"cls": ("CLS head", ""), "dist": ("DIST head", "///"), "average": ("average of both", "..")}


def figure_heads(
    records: Sequence[dict[str, Any]],
    selection: str = "last",
    convention: str = "threshold",
    names: Mapping[str, str] | None = None,
    style: MethodStyle | None = None,
):
    """The DeiT-LT heads figure (see :func:`plot_heads`) as a Figure; None without such runs."""
    from matplotlib.patches import Patch

    runs = [r for r in records if "heads" in ((r.get("results") or {}).get(selection) or {})]
    if not runs:
        return None
    style = _style(records, names, style)
    rows = _rows(runs, names, style)
    several = len({k[1:] for k in rows}) > 1
    fig = _figure(4.6 * len(rows) + 2.4, 3.8)
    axes = fig.subplots(1, len(rows), squeeze=False, sharey=True)[0]
    metrics = list(GROUP_LABELS)
    for ax, ((method, dataset, budget), mine) in zip(axes, rows.items()):
        for i, (head, (_, hatch)) in enumerate(HEADS.items()):
            values = []
            for r in mine:
                res = r["results"][selection]
                stats = res if head == "average" else res["heads"][head]
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
                np.arange(4) + (i - 1) * 0.27,
                np.nan_to_num(mean),
                0.27,
                yerr=err,
                capsize=2,
                color=style(method).colour,
                alpha=1.0 if head != "average" else 0.55,
                hatch=hatch or None,
                edgecolor="black",
                lw=0.5,
            )
        ax.set_xticks(np.arange(4), list(GROUP_LABELS.values()))
        where = f", {_block_title(dataset, budget, True)}" if several else ""
        ax.set_title(f"{method} (n={len(mine)}{where})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("test top-1 (%)")
    handles = [
        Patch(facecolor="0.6", alpha=1.0 if h != "average" else 0.55, hatch=hatch or None, edgecolor="black")
        for h, (_, hatch) in HEADS.items()
    ]
    legend_outside(fig, handles, [label for label, _ in HEADS.values()], "DeiT-LT heads,\nmean over seeds")
    return fig


def plot_heads(
    records: Sequence[dict[str, Any]],
    path: Path,
    selection: str = "last",
    convention: str = "threshold",
    names: Mapping[str, str] | None = None,
    style: MethodStyle | None = None,
) -> list[Path] | None:
    """DeiT-LT: the CLS, DIST and averaged heads' accuracy by group, a panel per method in its
    colour; None without such runs.

    Args:
        records: finished run records; those whose results lack ``heads`` are skipped.
        path: output path; ``.png`` and ``.pdf`` are written.
        selection: ``last`` or ``best_val``.
        convention: group convention.
        names: run id -> table row name; None: the records' methods.
        style: the report's method style; None: built from ``records``.
    """
    fig = figure_heads(records, selection, convention, names, style)
    return None if fig is None else _save(fig, path)
