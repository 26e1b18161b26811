r"""The report's tables: LaTeX (booktabs), Markdown and CSV, captions and paired tests.

Table cells are top-1 accuracy in percent with one decimal: ``mean ± std`` over seeds
(sample std, ddof 1), just the mean for a single seed, a dash for a group with no class.
The best mean of each column (compared as printed) is bold. After many / medium / few / all
come two tail metrics: the worst-class accuracy and the harmonic mean of per-class
accuracies. With ``metric="error"`` cells are error rates (100 - accuracy; the harmonic
mean is left out) and the lowest mean is best.

A row whose weights were pretrained before training on the benchmark's task is marked: ‡
(LaTeX ``$^\ddagger$``) for pretraining on the long-tailed train set itself (MGP), § for
external data (not comparable with runs trained from scratch on the benchmark's data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import row_marks
from .runs import CONVENTION_TEXT, GROUP_METRICS, METRICS, PRETRAINING_MARKS, SELECTION_TEXT, unique_seeds

HEADERS = {"many": "Many", "medium": "Med.", "few": "Few", "top1": "All", "worst": "Worst", "hmean": "H-mean"}


# What a table shows: accuracy (best highest) or error rate, 100 - accuracy (best lowest; CIFAR
# papers quote these). The harmonic mean of accuracies has no error form and is left out.
TABLE_METRICS = ("accuracy", "error")


ERROR_METRICS = ("many", "medium", "few", "top1", "worst")


LATEX_SPECIALS = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
    "<": "\\textless{}",  # OT1 would print them as inverted marks
    ">": "\\textgreater{}",
}


def latex_escape(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped (``mnist_lt`` -> ``mnist\\_lt``)."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


class _Grid:
    """The table laid out: methods as rows, (dataset, budget) blocks of metrics as columns.

    Budgets get their own blocks so runs of two budgets are never averaged or overwritten;
    the budget is named in a block's title only when there is more than one. With
    ``attrs["metric"] == "error"`` cells are error rates (100 - accuracy), the lowest best.
    """

    def __init__(self, agg: pd.DataFrame, marks: dict[tuple, float] | None = None):
        self.marks = marks or {}  # (method, dataset, budget) -> p-value against the baseline
        self.attrs = agg.attrs  # convention, and per row its base method, setting and data
        self.error = agg.attrs.get("metric") == "error"
        self.metrics = ERROR_METRICS if self.error else METRICS
        self.methods = list(dict.fromkeys(agg["method"]))
        # What each row's weights saw before training (from runs_frame; a hand-made aggregate: none).
        self.pretraining = {
            method: info.get("pretraining", "none") for (_, _, method), info in (agg.attrs.get("rows") or {}).items()
        }
        self.blocks = list(dict.fromkeys(zip(agg["dataset"], agg["budget"])))
        self.several_budgets = len({b for _, b in self.blocks}) > 1
        self.cells: dict[tuple, tuple[float, float, int]] = {}
        for row in agg.itertuples(index=False):
            for m in self.metrics:
                mean = 100 * getattr(row, f"{m}_mean")
                pct = (100 - mean if self.error else mean, 100 * getattr(row, f"{m}_std"), int(row.n))
                self.cells[row.method, (row.dataset, row.budget), m] = pct

    def title(self, block: tuple) -> str:
        dataset, budget = block
        return f"{dataset} ({budget})" if self.several_budgets else str(dataset)

    def ranked(self, block: tuple, metric: str) -> list[str]:
        """Distinct printed means of a column, best first (equal printed means share a rank):
        the highest accuracy, or the lowest error. Rows pretrained on external data do not compete."""
        means = [
            self.cells[m, block, metric][0]
            for m in self.methods
            if (m, block, metric) in self.cells and self.pretraining.get(m) != "external"
        ]
        return sorted({f"{v:.1f}" for v in means if not np.isnan(v)}, key=float, reverse=not self.error)

    def name(self, method: str, latex: bool) -> str:
        """The row's name with its markers: pretraining (‡ long-tailed train set, § external
        data), then :mod:`ltbench.reports.row_marks`' (◇ other augmentation, ¶ tau on a partial
        validation set)."""
        mark = PRETRAINING_MARKS.get(self.pretraining.get(method, "none"))
        text = latex_escape(method) if latex else method
        text += mark[0 if latex else 1] if mark else ""
        rows = self.attrs.get("rows") or {}
        return text + "".join(
            dict.fromkeys(
                row_marks.marker(key, rows, latex) for key in rows if key[2] == method and key[:2] in self.blocks
            )
        )

    def pretraining_notes(self) -> list[tuple[str, str, str]]:
        """(LaTeX marker, plain marker, meaning) of each pretraining marker the table uses."""
        used = set(self.pretraining[m] for m in self.methods if m in self.pretraining)
        return [mark for kind, mark in PRETRAINING_MARKS.items() if kind in used]

    def best(self, block: tuple, metric: str) -> str | None:
        """The best mean of a column as printed, so equal printed means are all bold."""
        ranked = self.ranked(block, metric)
        return ranked[0] if ranked else None

    def reference_rows(self, references: Sequence | None, missing: str) -> list[tuple[str, list[str], bool]]:
        """Published rows: their numbers in their block and whether they are comparable.

        A published row shows only where its method has a row of the paper's setting in the
        block. ltbench's mean minus the paper's follows each number only where the two compare
        like with like: the same dataset and setting, the report's group convention and model
        selection the paper's, the ``paper`` budget and verified data; otherwise the row says
        why not (a paper that picked its epoch on test is never compared: ltbench does not).

        Returns:
            (name, cells, comparable) per published row.
        """
        convention = self.attrs.get("convention")
        info = self.attrs.get("rows") or {}
        rows = []
        for pub, budget in references or ():
            block = next((b for b in self.blocks if b[0] == pub.dataset and b[1] == budget), None)
            if block is None:
                continue
            # Rows of the paper's method and setting (an aggregate made by hand, without
            # ``rows``: the row named as the method, taken to be of the paper's setting).
            default = {"setting": pub.setting, "verified": True}
            candidates = [
                m
                for m in self.methods
                if (m, block, "top1") in self.cells
                and info.get((*block, m), {"base_method": m}).get("base_method") == pub.method
                and info.get((*block, m), default).get("setting") == pub.setting
            ]
            if not candidates:
                continue
            ours = pub.method if pub.method in candidates else candidates[0]
            why = []
            if budget != "paper":
                why.append(f"budget {budget}")
            if convention != pub.convention:
                why.append(f"{convention} groups")
            if pub.selection != self.attrs.get("selection", "last"):
                why.append(f"the paper's epoch is {pub.selection_text}")
            if not info.get((*block, ours), default).get("verified", True):
                why.append("unverified data")
            cells = []
            for b in self.blocks:
                for metric in self.metrics:
                    if b != block or metric not in GROUP_METRICS:  # papers give no tail metrics
                        cells.append(missing)
                        continue
                    value = getattr(pub, "all" if metric == "top1" else metric)
                    if value is None:  # the paper gives no such number
                        cells.append(missing)
                        continue
                    value = 100 - value if self.error else value
                    mine = self.cells.get((ours, b, metric))
                    diff = "" if why or mine is None or np.isnan(mine[0]) else f" ({mine[0] - value:+.1f})"
                    cells.append(f"{value:.1f}{diff}")
            name = f"{pub.paper}, published {pub.setting} ({pub.convention} groups, {pub.selection_text}"
            if why:
                name += "; not comparable: " + ", ".join(why)
            elif ours != pub.method:
                name += f"; against {ours}"
            rows.append((name + ")", cells, not why))
        return rows

    def seeds(self, method: str) -> str:
        """Runs per block for a method: ``2``, or ``2/1`` when blocks differ."""
        ns = [self.cells[method, b, "top1"][2] for b in self.blocks if (method, b, "top1") in self.cells]
        return str(ns[0]) if len(set(ns)) == 1 else "/".join(map(str, ns))

    def row(
        self,
        method: str,
        bold: Callable[[str], str],
        pm: str,
        missing: str,
        second: Callable[[str], str] = str,
        mark: str = "",
    ) -> list[str]:
        out = []
        for block in self.blocks:
            for metric in self.metrics:
                cell = self.cells.get((method, block, metric))
                if cell is None or np.isnan(cell[0]):
                    out.append(missing)
                    continue
                mean, std, n = cell
                text = f"{mean:.1f}"
                ranked = self.ranked(block, metric)
                if text == ranked[0]:
                    text = bold(text)
                elif len(ranked) > 1 and text == ranked[1]:
                    text = second(text)
                text = text if n < 2 or np.isnan(std) else f"{text}{pm}{std:.1f}"
                p = self.marks.get((method, *block))
                out.append(text + mark if metric == "top1" and p is not None and p < 0.05 else text)
        return out


def _notes(attrs: dict[str, Any], escape: Callable[[Any], str]) -> list[str]:
    """Sentences on what the table's rows leave out or rest on: duplicate runs of a seed that
    were not counted, and best-on-validation picks made on a validation set missing classes."""
    notes = row_marks.notes(attrs.get("rows") or {}, escape, latex=escape is not str)
    coverage = attrs.get("val_coverage") or {}
    if attrs.get("selection") == "best_val" and coverage:
        where = ", ".join(
            f"{' or '.join(str(c) for c, _ in covered)} of {covered[0][1]} classes on {escape(dataset)}"
            for dataset, covered in coverage.items()
        )
        notes.append(
            f"The validation set that picks the best epoch covers only {where}: "
            "classes without validation images play no part in the selection"
        )
    dropped = attrs.get("duplicates") or []
    if dropped:
        runs = dict.fromkeys(
            f"{d['method']} seed {d['seed']}" + (f" (data seed {d['data_seed']})" if d["data_seed"] else "")
            for d in dropped
        )
        were = "run of the same seed was" if len(dropped) == 1 else "runs of the same seed were"
        notes.append(
            f"{len(dropped)} duplicate {were} left out, the latest run of each seed kept: "
            + ", ".join(escape(r) for r in runs)
        )
    return notes


def default_caption(agg: pd.DataFrame, published: int = 0, compared: int = 0) -> str:
    """Caption naming budget(s), seeds, group convention and model selection (from ``attrs``).

    Args:
        agg: the output of :func:`aggregate`.
        published: the number of published reference rows in the table.
        compared: how many of them give ltbench's difference (the comparable ones).
    """
    budgets = ", ".join(map(str, dict.fromkeys(agg["budget"])))
    error = agg.attrs.get("metric") == "error"
    if error:
        what = (
            "Top-1 error (\\%), 100 minus accuracy, per class group; Worst: the highest per-class error "
            "(the harmonic mean of per-class accuracies has no error form and is left out)"
        )
    else:
        what = (
            "Top-1 accuracy (\\%) per class group; Worst: the lowest per-class accuracy; H-mean: the harmonic "
            "mean of per-class accuracies (0 when a class has none right)"
        )
    parts = [
        f"{what}; budget {latex_escape(budgets)}; "
        "mean $\\pm$ std over $n$ seeds (a single number: one seed; --: no class in the group, or no run)"
    ]
    convention, selection = agg.attrs.get("convention"), agg.attrs.get("selection")
    if convention in CONVENTION_TEXT:
        parts.append(f"groups: {CONVENTION_TEXT[convention]}")
    if selection in SELECTION_TEXT:
        parts.append(f"model selection: {SELECTION_TEXT[selection]}")
    notes = _notes(agg.attrs, latex_escape)
    baseline = agg.attrs.get("baseline")
    tail = f". Best ({'lowest' if error else 'highest'}) mean per column in bold, second underlined"
    if published and compared == published:
        tail += "; published rows give the paper's number and, in parentheses, ltbench's mean minus it"
    elif published and compared:
        tail += (
            "; published rows give the paper's number and, in parentheses where dataset, setting, group "
            "convention, model selection and budget match, ltbench's mean minus it (the others say why they are "
            "not comparable)"
        )
    elif published:
        tail += (
            "; published rows give the paper's number alone: they are not comparable with these runs (each says why)"
        )
    if baseline:
        tail += f"; $^\\dagger$: All differs from {latex_escape(baseline)} with p $<$ 0.05 (paired t-test over seeds)"
    for latex_mark, _, meaning in _Grid(agg).pretraining_notes():
        tail += f"; {latex_mark}: {meaning}"
    return "; ".join(parts) + tail + "." + "".join(f" {note}." for note in notes)


def latex_table(
    agg: pd.DataFrame,
    caption: str | None = None,
    label: str = "tab:ltbench",
    marks: dict[tuple, float] | None = None,
    references: Sequence | None = None,
) -> str:
    """A booktabs table ready for ``\\input``: methods as rows, Many/Med./Few/All per dataset.

    Args:
        agg: the output of :func:`aggregate`.
        caption: LaTeX caption, used as is; None builds :func:`default_caption`; "" omits it.
        label: the ``\\label`` of the table.

    Returns:
        The table. Cells read ``85.0 $\\pm$ 7.1`` (just ``85.0`` for one seed, ``--`` for an
        empty group), the best mean of a column as ``\\textbf{85.0}``; the last column ``$n$``
        gives the seeds behind each row.
    """
    grid = _Grid(agg, marks)
    refs = grid.reference_rows(references, "--")
    if caption is None:
        caption = default_caption(agg, len(refs), sum(comparable for *_, comparable in refs))
    lines = ["\\begin{table}[t]", "\\centering", "\\small"]
    if caption:
        lines.append(f"\\caption{{{caption}}}")
    k = len(grid.metrics)
    lines += [f"\\begin{{tabular}}{{l{'c' * k * len(grid.blocks)}c}}", "\\toprule"]
    titles = [f"\\multicolumn{{{k}}}{{c}}{{{latex_escape(grid.title(b))}}}" for b in grid.blocks]
    lines.append(" & ".join(["", *titles, ""]) + " \\\\")
    lines.append(" ".join(f"\\cmidrule(lr){{{2 + k * i}-{1 + k * (i + 1)}}}" for i in range(len(grid.blocks))))
    lines.append(" & ".join(["Method", *[HEADERS[m] for m in grid.metrics] * len(grid.blocks), "$n$"]) + " \\\\")
    lines.append("\\midrule")
    for method in grid.methods:
        cells = grid.row(
            method, lambda t: f"\\textbf{{{t}}}", " $\\pm$ ", "--", lambda t: f"\\underline{{{t}}}", "$^\\dagger$"
        )
        lines.append(" & ".join([grid.name(method, latex=True), *cells, grid.seeds(method)]) + " \\\\")
    if refs:
        lines.append("\\midrule")
        lines += [" & ".join([latex_escape(name), *cells, "--"]) + " \\\\" for name, cells, _ in refs]
    lines += ["\\bottomrule", "\\end{tabular}", f"\\label{{{label}}}", "\\end{table}", ""]
    return "\n".join(lines)


def markdown_table(
    agg: pd.DataFrame, marks: dict[tuple, float] | None = None, references: Sequence | None = None
) -> str:
    """The same table in GitHub Markdown.

    Args:
        agg: the output of :func:`aggregate`.

    Returns:
        The table; cells read ``85.0 ± 7.1`` (``85.0`` for one seed, ``–`` for an empty group),
        the best mean of a column as ``**85.0**``; the last column ``n`` gives the seeds.
        Notes the caption would carry (duplicate runs left out, a validation set missing
        classes) follow the table as ``Note: ...`` lines.
    """
    grid = _Grid(agg, marks)
    header = ["method", *(f"{grid.title(b)} {HEADERS[m]}" for b in grid.blocks for m in grid.metrics), "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in grid.methods:
        cells = grid.row(method, lambda t: f"**{t}**", " ± ", "–", lambda t: f"<u>{t}</u>", "†")
        lines.append("| " + " | ".join([grid.name(method, latex=False), *cells, grid.seeds(method)]) + " |")
    for name, cells, _ in grid.reference_rows(references, "–"):
        lines.append("| " + " | ".join([name, *cells, "–"]) + " |")
    notes = _notes(agg.attrs, str)
    if grid.error:
        notes.insert(0, "Cells are top-1 error (%), 100 minus accuracy; the lowest is best")
    notes += [f"{mark}: {meaning}" for _, mark, meaning in grid.pretraining_notes()]
    if notes:  # below the table, after a blank line
        lines += ["", *(f"Note: {note}." for note in notes)]
    return "\n".join(lines) + "\n"


def paired_tests(frame: pd.DataFrame, baseline: str, metric: str = "top1") -> dict[tuple, float]:
    """p-values of a paired t-test of each method against ``baseline`` on ``metric``.

    Runs are paired by (seed, data_seed) within each (dataset, budget), one run of each
    (seed, data_seed) per method (a frame of :func:`runs_frame` has no other; one made
    otherwise keeps the last of each); a method needs at least two pairs. Returns
    ``{(method, dataset, budget): p}``.
    """
    from scipy.stats import ttest_rel

    out = {}
    frame = unique_seeds(frame)
    for (dataset, budget), block in frame.groupby(["dataset", "budget"], sort=False, dropna=False):
        base = block[block["method"] == baseline].set_index(["seed", "data_seed"])[metric]
        for method, runs in block[block["method"] != baseline].groupby("method", sort=False):
            pairs = runs.set_index(["seed", "data_seed"])[metric].to_frame("m").join(base.rename("b"), how="inner")
            pairs = pairs.dropna()
            if len(pairs) >= 2 and not np.allclose(pairs["m"], pairs["b"]):
                out[method, dataset, budget] = float(ttest_rel(pairs["m"], pairs["b"]).pvalue)
    return out


def csv_table(agg: pd.DataFrame) -> str:
    """The aggregated table as CSV: percent means and stds, and the number of seeds.

    With ``attrs["metric"] == "error"``: ``{m}_error_mean`` = 1 - ``{m}_mean`` (and its std)
    for many, medium, few, top1 and worst, the harmonic mean left out, as in the tables.
    """
    out = agg.copy()
    if agg.attrs.get("metric") == "error":
        out[[f"{m}_mean" for m in ERROR_METRICS]] = 1 - out[[f"{m}_mean" for m in ERROR_METRICS]]
        out = out.drop(columns=["hmean_mean", "hmean_std"], errors="ignore")
        out.columns = [
            f"{c.rsplit('_', 1)[0]}_error_{c.rsplit('_', 1)[1]}" if c.rsplit("_", 1)[0] in ERROR_METRICS else c
            for c in out.columns
        ]
    for col in out.columns:
        if col.endswith(("_mean", "_std")):
            out[col] = (100 * out[col]).round(2)
    return out.to_csv(index=False)
