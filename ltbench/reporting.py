"""Reports from stored run records: LaTeX and Markdown tables, per-class plots.

Reports read only run records (never logs). Group metrics are recomputed from each record's
per-class correct/total counts and training counts, so any stored run can be reported under
any group convention and either model selection (``last`` epoch or ``best_val``) without
re-running it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .groups import CONVENTIONS
from .metrics import per_class_accuracy, summarize

SELECTIONS = ("last", "best_val")
METRICS = ("many", "medium", "few", "top1")
HEADERS = {"many": "Many", "medium": "Med.", "few": "Few", "top1": "All"}
CONVENTION_TEXT = {
    "threshold": "many $>$100, medium 20--100, few $<$20 training images",
    "oltr": "many $\\geq$100, medium 21--99, few $\\leq$20 training images (OLTR code)",
    "index": "head / mid / tail blocks of frequency-sorted classes (DeiT-LT)",
}


def _check(convention: str, selection: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown group convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if selection not in SELECTIONS:
        raise ValueError(f"unknown model selection {selection!r}; choose one of {', '.join(SELECTIONS)}")


def runs_frame(records: Sequence[dict[str, Any]], convention: str = "threshold", selection: str = "last") -> pd.DataFrame:
    """One row per finished run with top1/many/medium/few/ece (fractions; NaN = empty group).

    Args:
        records: run records as stored; runs not ``done`` or lacking ``selection`` are skipped.
        convention: many/medium/few convention to recompute the groups with.
        selection: ``last`` epoch or ``best_val`` (best epoch on the validation set).
    """
    _check(convention, selection)
    rows = []
    for r in records:
        res = r.get("results", {}).get(selection)
        if r.get("status") != "done" or res is None:
            continue
        m = summarize(res["correct"], res["total"], r["train_counts"], res.get("calib"),
                      convention, r.get("index_sizes"))
        rows.append({
            "method": r["method"], "dataset": r["dataset"], "budget": r["budget"], "seed": r["seed"],
            "data_seed": r["data_seed"], "run_id": r["run_id"],
            **{k: np.nan if m.get(k) is None else m[k] for k in (*METRICS, "ece")},
        })
    cols = ["method", "dataset", "budget", "seed", "data_seed", "run_id", *METRICS, "ece"]
    return pd.DataFrame(rows, columns=cols)


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 1; NaN for one seed) and n per (dataset, budget, method), in first-seen order."""
    keys = ["dataset", "budget", "method"]
    grouped = frame.groupby(keys, sort=False)
    out = grouped[list(METRICS)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n"] = grouped.size()
    return out.reset_index()


def _latex_escape(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#")):
        text = text.replace(a, b)
    return text


def _cells(agg: pd.DataFrame) -> tuple[list[str], list[str], dict[tuple[str, str, str], tuple[float, float, int]]]:
    """Row methods, column datasets, and (mean, std, n) per (method, dataset, metric), in percent."""
    methods = list(dict.fromkeys(agg["method"]))
    datasets = list(dict.fromkeys(agg["dataset"]))
    cells = {}
    for _, row in agg.iterrows():
        for m in METRICS:
            cells[row["method"], row["dataset"], m] = (100 * row[f"{m}_mean"], 100 * row[f"{m}_std"], int(row["n"]))
    return methods, datasets, cells


def _best(cells, methods, dataset, metric) -> float | None:
    means = [cells[m, dataset, metric][0] for m in methods if (m, dataset, metric) in cells]
    means = [round(v, 1) for v in means if not np.isnan(v)]
    return max(means) if means else None


def _format(cell, best, bold: tuple[str, str], pm: str, missing: str) -> str:
    if cell is None or np.isnan(cell[0]):
        return missing
    mean, std, n = cell
    text = f"{mean:.1f}"
    if best is not None and round(mean, 1) == best:
        text = f"{bold[0]}{text}{bold[1]}"
    return text if n < 2 or np.isnan(std) else f"{text}{pm}{std:.1f}"


def latex_table(agg: pd.DataFrame, caption: str = "", label: str = "tab:ltbench") -> str:
    """A booktabs table: methods as rows, Many/Med./Few/All per dataset; best mean in bold.

    Cells read ``mean $\\pm$ std`` over seeds in percent (just the mean for one seed); an
    empty group is ``--``.
    """
    methods, datasets, cells = _cells(agg)
    n_cols = 1 + 4 * len(datasets)
    lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{l{'c' * (n_cols - 1)}}}", "\\toprule"]
    lines.append(" & ".join(["", *(f"\\multicolumn{{4}}{{c}}{{{_latex_escape(d)}}}" for d in datasets)]) + " \\\\")
    lines.append(" ".join(f"\\cmidrule(lr){{{2 + 4 * i}-{5 + 4 * i}}}" for i in range(len(datasets))))
    lines.append(" & ".join(["Method", *([HEADERS[m] for m in METRICS] * len(datasets))]) + " \\\\")
    lines.append("\\midrule")
    for method in methods:
        row = [_latex_escape(method)]
        for d in datasets:
            for m in METRICS:
                row.append(_format(cells.get((method, d, m)), _best(cells, methods, d, m),
                                   ("\\textbf{", "}"), " $\\pm$ ", "--"))
        lines.append(" & ".join(row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if caption:
        lines.append(f"\\caption{{{caption}}}")
    lines += [f"\\label{{{label}}}", "\\end{table}", ""]
    return "\n".join(lines)


def markdown_table(agg: pd.DataFrame) -> str:
    """The same table in GitHub Markdown: best mean in bold, ``–`` for an empty group."""
    methods, datasets, cells = _cells(agg)
    header = ["method", *(f"{d} {HEADERS[m].lower()}" for d in datasets for m in METRICS), "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        row = [method]
        for d in datasets:
            for m in METRICS:
                row.append(_format(cells.get((method, d, m)), _best(cells, methods, d, m), ("**", "**"), " ± ", "–"))
        seeds = sorted({cells[method, d, "top1"][2] for d in datasets if (method, d, "top1") in cells})
        row.append("/".join(map(str, seeds)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def caption_for(agg: pd.DataFrame, convention: str, selection: str) -> str:
    budgets = ", ".join(dict.fromkeys(agg["budget"]))
    seeds = sorted(set(agg["n"].astype(int)))
    chosen = "last epoch" if selection == "last" else "best epoch on the validation set"
    return (f"Top-1 accuracy (\\%) by ltbench, budget {_latex_escape(budgets)}; mean $\\pm$ std over "
            f"{'/'.join(map(str, seeds))} seed(s) (a single number: one seed); groups: "
            f"{CONVENTION_TEXT[convention]}; model selection: {chosen}.")


def plot_per_class(records: Sequence[dict[str, Any]], path: Path, selection: str = "last") -> Path:
    """PNG of per-class test accuracy against training count (log x), a series per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check("threshold", selection)
    done = [r for r in records if r.get("status") == "done" and selection in r.get("results", {})]
    datasets = list(dict.fromkeys(r["dataset"] for r in done))
    fig = Figure(figsize=(5.5 * max(len(datasets), 1), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(datasets), 1), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        runs = [r for r in done if r["dataset"] == dataset]
        for method in dict.fromkeys(r["method"] for r in runs):
            mine = [r for r in runs if r["method"] == method]
            acc = np.nanmean([per_class_accuracy(r["results"][selection]["correct"], r["results"][selection]["total"])
                              for r in mine], axis=0)
            counts = np.asarray(mine[0]["train_counts"])
            order = np.argsort(counts)
            ax.plot(counts[order], 100 * acc[order], marker="o", ms=4, lw=1, label=f"{method} (n={len(mine)})")
        ax.set_xscale("log")
        ax.set_xlabel("training images of the class")
        ax.set_ylabel("test accuracy of the class (%)")
        ax.set_title(dataset)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    path = Path(path)
    _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return path


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_report(records: Sequence[dict[str, Any]], out_dir: Path, convention: str = "threshold",
                 selection: str = "last") -> dict[str, Path]:
    """Write ``table.tex``, ``table.md`` and ``per_class.png`` into ``out_dir``.

    Raises:
        ValueError: no finished run, or a bad convention / selection.
    """
    frame = runs_frame(records, convention, selection)
    if frame.empty:
        raise ValueError("no finished runs in the store; run `ltbench run` first")
    agg = aggregate(frame)
    out = Path(out_dir)
    paths = {"latex": out / "table.tex", "markdown": out / "table.md", "plot": out / "per_class.png"}
    tex = latex_table(agg, caption_for(agg, convention, selection))
    _atomic(paths["latex"], lambda tmp: Path(tmp).write_text(tex))
    md = markdown_table(agg)
    _atomic(paths["markdown"], lambda tmp: Path(tmp).write_text(md))
    plot_per_class(records, paths["plot"], selection)
    return paths
