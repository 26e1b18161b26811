"""Accuracy under shifted test distributions (SADE / LADE's test-agnostic protocol), exactly.

Under pure label shift a model's per-class accuracies do not change, so its expected accuracy
on a test set with class prior w is ``sum_i w_i acc_i / sum_i w_i``. Classes are ranked by
training count (rank 0 = most images; ties keep class order), ``C`` classes:

- ``forward-r``: ``w_i = r^(-rank_i / (C - 1))``, long-tailed like the training set, head
  ``r`` times as frequent as the tail;
- ``backward-r``: ``w_i = r^(-(C - 1 - rank_i) / (C - 1))``, the order reversed;
- ``uniform``: all ``w_i = 1``, the mean per-class accuracy.

for r in {2, 5, 10, 25, 50} (SADE, Zhang et al., NeurIPS 2022, after LADE, Hong et al., CVPR
2021). A class with no test images has no accuracy and is left out (its weight dropped).
Everything is computed from stored per-class counts: any stored run, no retraining.

Two ways to weigh (``counts``, :data:`COUNTS`):

- ``expected`` (default): the continuous weights above, the noise-free expectation.
- ``sade``: SADE's own test sets keep ``int(m_i * w_i)`` images of class ``i`` (``m_i`` its
  test images; integer-floored, as SADE's ``get_img_num_per_cls``), so the expectation over
  those integer counts is exact for its protocol; it differs from ``expected`` by up to 0.3
  points on CIFAR-100-LT and 0.6 on ImageNet-LT at forward/backward-50.

- ``subsets``: SADE's protocol itself: an actual subset per distribution, ``int(m_i * w_i)``
  test images of class ``i`` drawn without replacement (NumPy ``RandomState(0)``, one shuffle
  per class in class order: every run of a dataset gets the same subsets), scored from each
  run's stored test logits (:func:`subset_accuracy`). A method whose test-time behaviour
  depends on the test set (SADE's self-supervised aggregation) can only be evaluated this way;
  runs without stored logits get no value. The sampling noise of one subset is what the two
  expectations leave out.

None is SADE's published number: SADE draws one actual subset per distribution (a fixed
NumPy seed), and on CIFAR builds its shifted test sets with the TRAINING augmentation (random
crop, flip, rotation; its uniform set is the plain test set). Published shifted numbers are
therefore not comparable with these rows, whichever ``counts``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.atomic import write_text_atomic
from ..evaluation.metrics import per_class_accuracy

RATIOS = (2, 5, 10, 25, 50)
#: Distributions from the most head-heavy to the most tail-heavy: the x axis and table order.
DISTRIBUTIONS = (
    *(f"forward{r}" for r in reversed(RATIOS)),
    "uniform",
    *(f"backward{r}" for r in RATIOS),
)
SHORT = {d: d.replace("forward", "F").replace("backward", "B").replace("uniform", "Uni.") for d in DISTRIBUTIONS}
CSV_COLUMNS = ("method", "dataset", "budget", "distribution", "top1_mean", "top1_std", "n")
#: How a shifted test set weighs each class: continuous weights, or SADE's integer counts.
COUNTS = ("expected", "sade", "subsets")
COUNTS_TEXT = {
    "expected": "continuous weights (the noise-free expectation)",
    "sade": "SADE's integer per-class counts, int(m w) of the m test images of a class",
    "subsets": "actual test subsets of SADE's integer per-class counts (seed 0), scored from the stored logits",
}
SUBSET_SEED = 0  # every run of a dataset is scored on the same subsets


def ranks(train_counts: Sequence[float]) -> np.ndarray:
    """Rank of each class by training count: 0 for the most images, ties in class order."""
    counts = np.asarray(train_counts, dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    out = np.empty(len(counts), dtype=np.int64)
    out[order] = np.arange(len(counts))
    return out


def shift_weights(
    train_counts: Sequence[float], distribution: str, test_totals: Sequence[float] | None = None
) -> np.ndarray:
    """Test-prior weights (unnormalised) of each class under ``distribution``.

    Args:
        train_counts: training images per class.
        distribution: ``uniform``, ``forward<r>`` or ``backward<r>`` with r >= 1 (r = 1 is
            uniform).
        test_totals: test images per class: given, the weights are SADE's integer counts
            ``int(m_i * w_i)`` (``counts="sade"``); None, the continuous weights.

    Raises:
        ValueError: an unknown distribution or r < 1.
    """
    kind, r = parse(distribution)
    rank = ranks(train_counts).astype(np.float64)
    c = len(rank)
    if kind == "uniform" or c < 2:
        w = np.ones(c)
    else:
        pos = rank if kind == "forward" else (c - 1) - rank
        w = np.power(float(r), -pos / (c - 1))
    if test_totals is None:
        return w
    return np.floor(np.asarray(test_totals, dtype=np.float64) * w)


def parse(distribution: str) -> tuple[str, float]:
    """(``forward`` | ``backward`` | ``uniform``, r) of a distribution name."""
    if distribution == "uniform":
        return "uniform", 1.0
    for kind in ("forward", "backward"):
        if distribution.startswith(kind):
            try:
                r = float(distribution[len(kind) :])
            except ValueError:
                break
            if not r >= 1:
                raise ValueError(f"imbalance ratio of {distribution!r} must be >= 1")
            return kind, r
    raise ValueError(f"unknown test distribution {distribution!r}; use uniform, forward<r> or backward<r>")


def shifted_accuracy(correct, total, train_counts, distribution: str, counts: str = "expected") -> float | None:
    """Expected top-1 (fraction) on a test set drawn from ``distribution``, its classes weighed
    as ``counts`` says (:data:`COUNTS`); None without test images (or, with SADE's counts, when
    every tested class floors to none)."""
    if counts not in COUNTS:
        raise ValueError(f"unknown shifted-test counts {counts!r}; use one of {', '.join(COUNTS)}")
    if counts == "subsets":
        raise ValueError("subsets are scored per image from stored logits: use shifted_accuracies or subset_accuracy")
    acc = per_class_accuracy(correct, total)
    w = shift_weights(train_counts, distribution, np.asarray(total) if counts == "sade" else None)
    if len(acc) != len(w):
        raise ValueError(f"{len(acc)} classes tested but {len(w)} training counts")
    tested = ~np.isnan(acc)
    if not tested.any() or not w[tested].sum() > 0:
        return None
    return float((w[tested] * acc[tested]).sum() / w[tested].sum())


def subset_indices(labels: np.ndarray, train_counts, distribution: str, seed: int = SUBSET_SEED) -> np.ndarray:
    """Test images (indices into ``labels``) of the shifted subset of ``distribution``: for
    each class ``i`` in class order, the first ``int(m_i * w_i)`` of its images in one
    ``RandomState(seed)`` shuffle (``m_i`` its test images, ``w`` as :func:`shift_weights`)."""
    labels = np.asarray(labels)
    totals = np.bincount(labels, minlength=len(train_counts))
    keep = shift_weights(train_counts, distribution, totals).astype(np.int64)
    rng = np.random.RandomState(seed)
    chosen = []
    for cls in range(len(train_counts)):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        chosen.append(idx[: keep[cls]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def subset_accuracy(pred: np.ndarray, labels: np.ndarray, train_counts, distribution: str) -> float | None:
    """Top-1 (fraction) of predictions ``pred`` on the shifted subset of ``distribution``."""
    idx = subset_indices(labels, train_counts, distribution)
    if not len(idx):
        return None
    return float((np.asarray(pred)[idx] == np.asarray(labels)[idx]).mean())


def shifted_accuracies(
    record: dict[str, Any],
    selection: str = "last",
    distributions: Sequence[str] = DISTRIBUTIONS,
    counts: str = "expected",
) -> dict[str, float | None]:
    """Every distribution's top-1 of one stored run: expected (``expected``, ``sade``) or on
    the actual subsets (``subsets``, from its stored logits; None for every distribution when
    the run stored none)."""
    if counts == "subsets":
        from ..training.logits import LogitsError, load_logits, predict

        try:
            logits, labels = load_logits(record, selection)["test"]
        except LogitsError:
            return dict.fromkeys(distributions)
        pred = predict(logits)
        return {d: subset_accuracy(pred, labels, record["train_counts"], d) for d in distributions}
    res = record["results"][selection]
    return {d: shifted_accuracy(res["correct"], res["total"], record["train_counts"], d, counts) for d in distributions}


def shift_frame(
    records: Sequence[dict[str, Any]], frame: pd.DataFrame, selection: str = "last", counts: str = "expected"
) -> pd.DataFrame:
    """One row per (run of ``frame``, distribution): the runs the main table reports, named as its rows.

    Args:
        records: run records as stored.
        frame: :func:`ltbench.reports.runs.runs_frame` of them (it picks the runs and names rows).
        selection: ``last`` or ``best_val``, as the frame.

    Returns:
        Columns method, dataset, budget, seed, data_seed, run_id, distribution, top1 (fraction;
        NaN for a run with no test image).
    """
    by_id = {r["run_id"]: r for r in records}
    runs = frame.itertuples(index=False)
    return distribution_rows([(run, shifted_accuracies(by_id[run.run_id], selection, counts=counts)) for run in runs])


SHIFT_COLUMNS = ("method", "dataset", "budget", "seed", "data_seed", "run_id", "distribution", "top1")


def distribution_rows(values_by_run, suffix: str = "") -> pd.DataFrame:
    """The long frame of :func:`shift_frame` from ``(frame row, {distribution: accuracy or
    None})`` pairs; ``suffix`` is appended to each method name (e.g. `` + known prior``)."""
    rows = [
        {
            "method": f"{run.method}{suffix}",
            "dataset": run.dataset,
            "budget": run.budget,
            "seed": run.seed,
            "data_seed": run.data_seed,
            "run_id": run.run_id,
            "distribution": dist,
            "top1": np.nan if value is None else value,
        }
        for run, values in values_by_run
        for dist, value in values.items()
    ]
    return pd.DataFrame(rows, columns=list(SHIFT_COLUMNS))


def aggregate_shift(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 1; NaN for one run) and n per (dataset, budget, method, distribution)."""
    keys = ["dataset", "budget", "method", "distribution"]
    grouped = long.groupby(keys, sort=False, dropna=False)["top1"]
    out = grouped.agg(top1_mean="mean", top1_std="std", n="count").reset_index()
    return out[list(CSV_COLUMNS)]


def csv_text(agg: pd.DataFrame) -> str:
    """The shifted table as CSV, long form, percent rounded to 2 decimals."""
    out = agg.copy()
    for col in ("top1_mean", "top1_std"):
        out[col] = (100 * out[col]).round(2)
    return out.to_csv(index=False)


def _blocks(agg: pd.DataFrame):
    """Per (dataset, budget): its methods and {(method, distribution): (mean %, std %, n)}."""
    for block, sub in agg.groupby(["dataset", "budget"], sort=False, dropna=False):
        cells = {
            (row.method, row.distribution): (100 * row.top1_mean, 100 * row.top1_std, int(row.n))
            for row in sub.itertuples(index=False)
        }
        yield block, list(dict.fromkeys(sub["method"])), cells


def _cell(value, best: dict[str, str], dist: str, bold, pm: str, dash: str) -> str:
    if value is None or np.isnan(value[0]):
        return dash
    mean, std, n = value
    text = f"{mean:.1f}"
    text = bold(text) if best.get(dist) == text else text
    return text if n < 2 or np.isnan(std) else text + pm.format(f"{std:.1f}")


def _best(methods, cells) -> dict[str, str]:
    """The best printed mean per distribution among the rows that compete: an oracle row
    (``+ known prior``, which knows the test prior) never takes the bold."""
    from .row_marks import KNOWN_PRIOR_SUFFIX

    competing = [m for m in methods if not str(m).endswith(KNOWN_PRIOR_SUFFIX)]
    best = {}
    for d in DISTRIBUTIONS:
        means = [cells[m, d][0] for m in competing if (m, d) in cells and not np.isnan(cells[m, d][0])]
        if means:
            best[d] = f"{max(float(f'{v:.1f}') for v in means):.1f}"
    return best


def _bold_in(method, best: dict[str, str]) -> dict[str, str]:
    """The bests a row may be bold at: none for an oracle row."""
    from .row_marks import KNOWN_PRIOR_SUFFIX

    return {} if str(method).endswith(KNOWN_PRIOR_SUFFIX) else best


def _seeds(cells, method, dash: str = "–") -> str:
    ns = sorted({v[2] for (m, _), v in cells.items() if m == method})
    return f"{ns[0]}{dash}{ns[-1]}" if len(ns) > 1 else str(ns[0])


def caption(agg: pd.DataFrame, selection: str | None = None) -> str:
    """What the shifted table shows, in LaTeX (``agg.attrs``: ``counts`` and ``notes``)."""
    from .runs import SELECTION_TEXT
    from .tables import latex_escape

    budgets = ", ".join(map(str, dict.fromkeys(agg["budget"])))
    how = (
        "top-1 accuracy (\\%) on actual shifted test subsets (SADE's protocol), "
        f"budget {latex_escape(budgets)}, scored from each run's stored test logits (no retraining)"
        if agg.attrs.get("counts") == "subsets"
        else "Expected top-1 accuracy (\\%) under shifted test class distributions (SADE/LADE protocol), "
        f"budget {latex_escape(budgets)}, computed exactly from the per-class test accuracies "
        "(pure label shift, no retraining)"
    )
    text = (
        f"{how[0].upper()}{how[1:]}. With classes ranked by training count (rank $k$ = 0 most "
        "images), forward-$r$ (F$r$) weights class $k$ by $r^{-k/(C-1)}$ (long-tailed like training), "
        "backward-$r$ (B$r$) by $r^{-(C-1-k)/(C-1)}$ (reversed); Uni.: mean per-class accuracy. "
        "Mean over $n$ seeds, $\\pm$ std below it; best mean per column in bold (oracle rows excluded)"
    )
    if _has_known_prior(agg):
        from .row_marks import KNOWN_PRIOR_TEXT

        text += "; " + latex_escape(KNOWN_PRIOR_TEXT)
    if selection in SELECTION_TEXT:
        text += f"; model selection: {SELECTION_TEXT[selection]}"
    return (
        text
        + ". "
        + latex_escape(_protocol_text(agg))
        + "".join(f" {latex_escape(note)}." for note in agg.attrs.get("notes", ()))
    )


def _protocol_text(agg: pd.DataFrame) -> str:
    counts = agg.attrs.get("counts", "expected")
    return (
        f"Classes weighed by {COUNTS_TEXT[counts]}. Not comparable with SADE's published shifted numbers, "
        "which come from one drawn subset per distribution built with training augmentation on CIFAR."
    )


def latex_table(agg: pd.DataFrame, selection: str | None = None, label: str = "tab:ltbench-shift") -> str:
    """A booktabs table: per (dataset, budget) block, methods as rows, distributions as columns."""
    from .tables import latex_escape

    several_budgets = agg["budget"].nunique(dropna=False) > 1
    nd = len(DISTRIBUTIONS)
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        "\\scriptsize",
        "\\setlength{\\tabcolsep}{3pt}",
        f"\\caption{{{caption(agg, selection)}}}",
        f"\\begin{{tabular}}{{l{'c' * nd}c}}",
        "\\toprule",
        " & \\multicolumn{5}{c}{Forward (head-heavy)} & & \\multicolumn{5}{c}{Backward (tail-heavy)} & \\\\",
        "\\cmidrule(lr){2-6} \\cmidrule(lr){8-12}",
        " & ".join(["Method", *(SHORT[d] for d in DISTRIBUTIONS), "$n$"]) + " \\\\",
    ]
    for (dataset, budget), methods, cells in _blocks(agg):
        title = f"{dataset} ({budget})" if several_budgets else str(dataset)
        lines += ["\\midrule", f"\\multicolumn{{{nd + 2}}}{{l}}{{\\textit{{{latex_escape(title)}}}}} \\\\"]
        best = _best(methods, cells)
        for m in methods:
            # Means on the method's line, the stds (where n > 1) on a small line below: 11
            # columns of "mean +- std" would not fit a page.
            values = [cells.get((m, d)) for d in DISTRIBUTIONS]
            row = [
                _cell(
                    None if v is None else (v[0], v[1], 1), _bold_in(m, best), d, lambda t: f"\\textbf{{{t}}}", "", "--"
                )
                for v, d in zip(values, DISTRIBUTIONS)
            ]
            lines.append(" & ".join([latex_escape(m), *row, _seeds(cells, m, "--")]) + " \\\\")
            stds = ["" if v is None or v[2] < 2 or np.isnan(v[1]) else f"{{\\tiny $\\pm${v[1]:.1f}}}" for v in values]
            if any(stds):
                lines.append(" & ".join(["", *stds, ""]) + " \\\\[1pt]")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\label{{{label}}}", "\\end{table}", ""]
    return "\n".join(lines)


def markdown_table(agg: pd.DataFrame) -> str:
    """The shifted table in GitHub Markdown, one table per (dataset, budget)."""
    several_budgets = agg["budget"].nunique(dropna=False) > 1
    head = (
        "Top-1 (%) on actual shifted test subsets (SADE's protocol), from the stored test logits. "
        if agg.attrs.get("counts") == "subsets"
        else "Expected top-1 (%) under shifted test class distributions (SADE/LADE), from per-class accuracies. "
    )
    out = [
        head + "Classes ranked by training count (k = 0 most images): forward-r weights r^(-k/(C-1)), "
        "backward-r r^(-(C-1-k)/(C-1)), uniform = mean per-class accuracy. Mean ± std over n seeds; "
        "best mean per column in bold.",
        "",
    ]
    if _has_known_prior(agg):
        from .row_marks import KNOWN_PRIOR_TEXT

        out[0] += f" {KNOWN_PRIOR_TEXT[0].upper()}{KNOWN_PRIOR_TEXT[1:]}."
    out[0] += " " + _protocol_text(agg)
    for (dataset, budget), methods, cells in _blocks(agg):
        title = f"{dataset} ({budget})" if several_budgets else str(dataset)
        header = ["method", *DISTRIBUTIONS, "n"]
        out += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        best = _best(methods, cells)
        for m in methods:
            bests = _bold_in(m, best)
            row = [_cell(cells.get((m, d)), bests, d, lambda t: f"**{t}**", " ± {}", "–") for d in DISTRIBUTIONS]
            out.append("| " + " | ".join([m, *row, _seeds(cells, m)]) + " |")
        out.append("")
    out += [f"Note: {note}." for note in agg.attrs.get("notes", ())]
    return "\n".join(out)


def _partial_val_notes(table: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """The known-prior rows' model prior is chosen on validation: say where it misses classes."""
    coverage = frame.attrs.get("val_coverage") or {}
    if not _has_known_prior(table) or not coverage:
        return []
    where = ", ".join(
        f"{' or '.join(str(c) for c, _ in covered)} of {covered[0][1]} classes on {dataset}"
        for dataset, covered in coverage.items()
    )
    return [
        f"The known-prior rows estimate the model's prior (tau) on a validation set that covers only {where}: "
        "the missing classes play no part in it"
    ]


def _has_known_prior(agg: pd.DataFrame) -> bool:
    from .row_marks import KNOWN_PRIOR_SUFFIX

    return bool(agg["method"].astype(str).str.endswith(KNOWN_PRIOR_SUFFIX).any())


def _legend_label(method: str, ns: list[int]) -> str:
    if not ns:
        return method
    return f"{method} (n={ns[0]})" if len(ns) == 1 else f"{method} (n={ns[0]}–{ns[-1]})"


def plot_shift(
    agg: pd.DataFrame, path: Path, selection: str | None = None, style=None, counts: str = "expected"
) -> list[Path]:
    """Top-1 against the test distribution, a line per method (mean over seeds, a band of ± std
    where n > 1), a panel per (dataset, budget); PNG and PDF. ``style``: the report's
    :class:`~ltbench.reports.plot_style.MethodStyle` (None: methods ordered by name); ``counts``
    as :func:`write_shift`'s (the axis says expected or actual-subset accuracy)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plot_base import save_figure
    from .plot_style import MethodStyle
    from .runs import SELECTION_TEXT

    several_budgets = agg["budget"].nunique(dropna=False) > 1
    panels = agg.groupby(["dataset", "budget"], dropna=False).ngroups
    fig = Figure(figsize=(5.0 * panels + 2.6, 4.2), layout="constrained")  # room for the legend
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False, sharey=True)[0]
    style = style if style is not None else MethodStyle({m: "" for m in agg["method"]})
    x = np.arange(len(DISTRIBUTIONS))
    handles: dict[str, Any] = {}
    seeds: dict[str, set[int]] = {}  # n of a method over all panels, for its legend entry
    grouped = agg.groupby(["dataset", "budget"], sort=False, dropna=False)
    for ax, ((dataset, budget), sub) in zip(axes, grouped):
        for m in style.sorted(sub["method"]):
            rows = sub[sub["method"] == m].set_index("distribution").reindex(list(DISTRIBUTIONS))
            mean = 100 * rows["top1_mean"].to_numpy(dtype=float)
            std = 100 * rows["top1_std"].to_numpy(dtype=float)
            n = rows["n"].fillna(0).to_numpy(dtype=int)
            (line,) = ax.plot(x, mean, **style(m).line(), ms=3, lw=1.3)
            band = n > 1
            if band.any():
                ax.fill_between(
                    x, mean - std, mean + std, where=band, color=style(m).colour, alpha=0.18, lw=0, interpolate=False
                )
            seeds.setdefault(m, set()).update(int(k) for k in n[n > 0])
            handles.setdefault(m, line)
        ax.axvline(DISTRIBUTIONS.index("uniform"), color="grey", lw=0.8, ls=":")
        ax.set_xticks(x, list(DISTRIBUTIONS))
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
        ax.set_xlabel("test class distribution\n← head-heavy (forward-r)  |  tail-heavy (backward-r) →", fontsize=9)
        title = f"{dataset} ({budget})" if several_budgets else str(dataset)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 on shifted test subsets (%)" if counts == "subsets" else "expected test top-1 (%)")
    sel = f"\n({SELECTION_TEXT[selection]})" if selection in SELECTION_TEXT else ""
    fig.legend(
        list(handles.values()),
        [_legend_label(m, sorted(seeds[m])) for m in handles],
        loc="outside right upper",
        fontsize=8,
        title=f"method: mean,\nband ± std over seeds{sel}",
        title_fontsize=8,
    )
    return save_figure(fig, Path(path))


def write_shift(
    records: Sequence[dict[str, Any]],
    frame: pd.DataFrame,
    out_dir: str | Path,
    selection: str = "last",
    extra_rows: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    counts: str = "expected",
    extra_runs: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """Write ``shift.csv``, ``shift.tex``, ``shift.md`` and ``shift.png`` / ``shift.pdf``.

    Args:
        records: run records as stored.
        frame: :func:`ltbench.reports.runs.runs_frame` of them: the main table's runs and rows.
        out_dir: output folder.
        selection: ``last`` or ``best_val``.
        extra_rows: rows the tables (not the plot) add to the shifted aggregate, e.g. a
            ``<method> + known prior`` row per method
            (:func:`ltbench.reports.posthoc.with_known_prior`; ``report --shift --posthoc``).
        counts: how classes are weighed, :data:`COUNTS` (``expected`` or SADE's integer ``sade``).
        extra_runs: rows added to :func:`shift_frame`'s per-run rows before aggregating, in the
            tables and the plot (e.g. ``<method> + test-time aggregation``,
            :func:`ltbench.reports.shift_aggregation.with_test_time_rows`).

    Returns:
        Paths by kind: ``shift_csv``, ``shift_latex``, ``shift_markdown``, ``shift_plot`` (PNG).
    """
    long = shift_frame(records, frame, selection, counts)
    agg = aggregate_shift(extra_runs(long) if extra_runs is not None else long)
    out = Path(out_dir)
    paths = {
        "shift_csv": out / "shift.csv",
        "shift_latex": out / "shift.tex",
        "shift_markdown": out / "shift.md",
    }
    table = agg
    if extra_rows is not None:
        table = extra_rows(agg)
    table.attrs = {"counts": counts, "notes": _partial_val_notes(table, frame)}
    write_text_atomic(paths["shift_csv"], csv_text(table))
    write_text_atomic(paths["shift_latex"], latex_table(table, selection))
    write_text_atomic(paths["shift_markdown"], markdown_table(table))
    from .plot_style import MethodStyle  # the colours of the report's other figures

    style = MethodStyle.from_records(records, dict(zip(frame["run_id"], frame["method"])))
    paths["shift_plot"] = plot_shift(agg, out / "shift", selection, style, counts)[0]
    return paths
