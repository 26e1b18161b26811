"""Reports from stored run records: LaTeX and Markdown tables and a per-class plot.

Reports read only run records (plain dicts, as stored), never logs. Group metrics are
recomputed from each record's per-class correct/total counts and training counts, so any
stored run can be reported under any group convention (``threshold``, ``oltr``, ``index``)
and either model selection (``last`` epoch or ``best_val``) without re-running it.

Table cells are top-1 accuracy in percent with one decimal: ``mean ± std`` over seeds
(sample std, ddof 1), just the mean for a single seed, a dash for a group with no class.
The best mean of each column (compared as printed) is bold. After many / medium / few / all
come two tail metrics: the worst-class accuracy and the harmonic mean of per-class
accuracies. With ``metric="error"`` cells are error rates (100 - accuracy; the harmonic
mean is left out) and the lowest mean is best.

A row whose weights were pretrained before training on the benchmark's task is marked: ‡
(LaTeX ``$^\\ddagger$``) for pretraining on the long-tailed train set itself (MGP), § for
external data (not comparable with runs trained from scratch on the benchmark's data).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import row_marks
from .atomic import write_text_atomic
from .groups import CONVENTIONS
from .metrics import summarize
from .plots import plot_per_class  # noqa: F401  (public here since before plots.py had it)
from .recipes import EXECUTION_KEYS, identity
from .row_marks import architecture_of, augmentation_of, chose_tau, val_coverage

SELECTIONS = ("last", "best_val")
METRICS = ("many", "medium", "few", "top1", "worst", "hmean")  # table columns: Many, Med., Few, All, Worst, H-mean
GROUP_METRICS = METRICS[:4]  # the class groups and all, as published tables give them
HEADERS = {"many": "Many", "medium": "Med.", "few": "Few", "top1": "All", "worst": "Worst", "hmean": "H-mean"}
# What a table shows: accuracy (best highest) or error rate, 100 - accuracy (best lowest; CIFAR
# papers quote these). The harmonic mean of accuracies has no error form and is left out.
TABLE_METRICS = ("accuracy", "error")
ERROR_METRICS = ("many", "medium", "few", "top1", "worst")
# What a method's weights saw before training on the benchmark (MethodSpec.pretraining_data):
# the marker after its row name, in LaTeX and in plain text, and what the caption says of it.
PRETRAINING_MARKS = {
    "long_tailed_train": (
        "$^\\ddagger$",
        "‡",
        "weights pretrained on the long-tailed train set (masked generative pretraining) before fine-tuning",
    ),
    "external": ("$^\\S$", "§", "weights pretrained on external data: not comparable with the other rows, nor ranked"),
}
RUN_COLUMNS = ("method", "dataset", "budget", "seed", "data_seed", "run_id")
CONVENTION_TEXT = {
    "threshold": "many $>$100, medium 20--100, few $<$20 training images",
    "oltr": "many $\\geq$100, medium 21--99, few $\\leq$20 training images (OLTR code)",
    "index": "head / mid / tail blocks of frequency-sorted classes (DeiT-LT)",
}
SELECTION_TEXT = {"last": "last epoch", "best_val": "best epoch on the validation set"}
NO_RUNS = "no finished runs in the store; run `ltbench run` first"
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
}


def _check(convention: str, selection: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown group convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if selection not in SELECTIONS:
        raise ValueError(f"unknown model selection {selection!r}; choose one of {', '.join(SELECTIONS)}")


def _finished(records: Sequence[dict[str, Any]], selection: str) -> list[dict[str, Any]]:
    """Done records that stored the requested selection (failed or partial runs never count)."""
    return [r for r in records if r.get("status") == "done" and selection in (r.get("results") or {})]


def runs_frame(
    records: Sequence[dict[str, Any]], convention: str = "threshold", selection: str = "last"
) -> pd.DataFrame:
    """One row per finished run of a table row and seed, its group metrics recomputed from the stored counts.

    A table row (``method``) holds runs of one variant (:func:`variant_of`), one kind of data
    (verified or not) and, for each data seed, one data fingerprint, and at most one run per
    (seed, data_seed): of several, the latest to finish is kept and the others are listed in
    ``attrs["duplicates"]``.

    Args:
        records: run records as stored; runs not ``done`` or lacking ``selection`` are skipped.
        convention: many/medium/few convention to regroup the classes with.
        selection: ``last`` epoch or ``best_val`` (the epoch chosen on the validation set).

    Returns:
        Columns method, dataset, budget, seed, data_seed, run_id, top1, many, medium, few,
        worst, hmean, ece (fractions; NaN for an empty group or a record without calibration
        bins), variant,
        label (the method and its overrides) and base_method. ``attrs`` holds the convention
        and selection, ``duplicates`` (the runs left out: dataset, budget, method, seed,
        data_seed, run_id and the run ``kept``), ``rows`` ({(dataset, budget, method): base
        method, published setting, data verified, pretraining data}) and ``val_coverage`` ({dataset: [(classes
        with validation images, classes)]} for reported runs whose validation set misses classes).

    Raises:
        ValueError: unknown convention or selection, or a run that cannot be regrouped
            (``index`` without ``index_sizes``).
    """
    from .published import setting_of

    _check(convention, selection)
    rows = []
    by_id = {r.get("run_id"): r for r in records}
    for r in _finished(records, selection):
        res = r["results"][selection]
        try:
            m = summarize(
                res["correct"], res["total"], r["train_counts"], res.get("calib"), convention, r.get("index_sizes")
            )
        except ValueError as err:
            raise ValueError(f"run {r['run_id']} ({r['method']} on {r['dataset']}): {err}") from err
        row = {k: r.get(k) for k in RUN_COLUMNS}
        row.update({k: np.nan if m.get(k) is None else m[k] for k in (*METRICS, "ece")})
        row["variant"] = variant_of(r)
        shown = [o for o in r.get("overrides") or () if o.split("=", 1)[0].split(".")[-1].strip() not in EXECUTION_KEYS]
        row["label"] = r["method"] + (f" [{', '.join(shown)}]" if shown else "")
        prov = r.get("provenance") or {}
        row.update(
            _verified=_verified(r),
            _fingerprint=prov.get("data_fingerprint"),
            _finished=str(r.get("finished_at") or ""),
            _setting=setting_of(r),
            _covered=val_coverage(r),
            _pretraining=pretraining_of(r),
            _augment=augmentation_of(r, by_id),
            _arch=architecture_of(r),
            _tau=chose_tau(r, selection),
        )
        rows.append(row)
    hidden = [
        "_verified",
        "_fingerprint",
        "_finished",
        "_setting",
        "_covered",
        "_pretraining",
        "_augment",
        "_arch",
        "_tau",
    ]
    frame = pd.DataFrame(
        rows,
        columns=[*RUN_COLUMNS, "top1", "many", "medium", "few", "worst", "hmean", "ece", "variant", "label", *hidden],
    )
    _name_variants(frame)
    frame = _unique_seeds(frame, frame["_finished"])
    frame.attrs["rows"] = {}
    for run in frame.to_dict("records"):
        info = frame.attrs["rows"].setdefault(
            (run["dataset"], run["budget"], run["method"]),
            {
                "base_method": run["base_method"],
                "setting": run["_setting"],
                "verified": bool(run["_verified"]),
                "pretraining": run["_pretraining"],
                "augment": run["_augment"],
                "architecture": run["_arch"],
                "val_coverage": run["_covered"],
                "partial_val": None,
            },
        )
        covered = run["_covered"]
        if run["_tau"] and covered is not None and covered[0] < covered[1] and not info["partial_val"]:
            info["partial_val"] = covered
    coverage: dict[str, list[tuple[int, int]]] = {}
    for dataset, covered in zip(frame["dataset"], frame["_covered"]):
        if covered is not None and covered[0] < covered[1] and covered not in coverage.setdefault(dataset, []):
            coverage[dataset].append(covered)
    frame.attrs["val_coverage"] = {d: sorted(c) for d, c in coverage.items() if c}
    frame.attrs.update(convention=convention, selection=selection)
    return frame.drop(columns=hidden)


def _verified(record: dict[str, Any]) -> bool:
    """Whether the run's data passed the recipe's checks (records without provenance: verified, the default)."""
    return (record.get("provenance") or {}).get("data_verified", True) is not False


def pretraining_of(record: dict[str, Any]) -> str:
    """What the run's weights saw before its training: ``none``, ``long_tailed_train`` or ``external``.

    Descriptive, never part of a run's identity: the record's own ``pretraining_data`` when it
    has one, else the method's recipe (``MethodSpec.pretraining_data``) by name, else
    ``long_tailed_train`` for a run configured with the MGP stage and ``none`` otherwise.
    """
    if record.get("pretraining_data"):
        return str(record["pretraining_data"])
    from .recipes import RecipeError, load_catalog

    try:
        methods = load_catalog().methods
        if record.get("method") in methods:
            return methods.get(record["method"]).pretraining_data
    except RecipeError:  # a broken recipe folder must not stop a report
        pass
    method = (record.get("config") or {}).get("method") or {}
    return "long_tailed_train" if method.get("pretrain") == "mgp" else "none"


def variant_of(record: dict[str, Any]) -> str:
    """Identity of a run's configuration apart from its seeds: runs of one variant are seeds.

    The record's own ``variant`` (lineage included) when it has one; otherwise a hash of its
    configuration and of whether its data was verified.
    """
    if record.get("variant"):
        return str(record["variant"])
    cfg = dict(record.get("config") or {})
    unverified = not _verified(record)
    if not cfg and not unverified:
        return ""
    cfg.pop("seed", None)
    cfg.pop("data_seed", None)
    # As the run hash: execution settings (workers, compile, ...) never make another variant.
    key: Any = identity(cfg)
    if unverified:  # verified runs keep the hash they always had
        key = {"config": key, "data_verified": False}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


def _name_variants(frame: pd.DataFrame) -> None:
    """Make ``method`` the row name: the method, its overrides, ``(unverified data)`` for runs
    on data that was not verified, and, where runs of one name still differ in configuration
    (another recipe version, another teacher or pretraining stage), the variant's hash. Where
    runs of one variant and data seed were trained on different data (fingerprints), the row
    is split by fingerprint, named by its first 8 characters. Runs with different
    configurations or data are never averaged as if they were seeds."""
    frame["base_method"] = frame["method"]
    names = pd.Series("", index=frame.index, dtype=object)
    keys = ["dataset", "budget", "label", "_verified"]
    for (_, _, label, verified), block in frame.groupby(keys, sort=False, dropna=False):
        several = block["variant"].nunique() > 1
        for variant, runs in block.groupby("variant", sort=False, dropna=False):
            name = f"{label} {{{str(variant)[:8]}}}" if several else label
            fps = runs["_fingerprint"].fillna("unrecorded")
            split = (fps.groupby(runs["data_seed"].fillna(-1)).nunique() > 1).any()
            for idx in runs.index:
                tag = "" if verified else "unverified data"
                if split:
                    tag = f"{tag or 'data'} {str(fps[idx])[:8]}"
                names[idx] = f"{name} ({tag})" if tag else name
    frame["method"] = names


def _unique_seeds(frame: pd.DataFrame, order: pd.Series | None = None) -> pd.DataFrame:
    """``frame`` with one run per (dataset, budget, method, seed, data_seed): the last in
    ``order`` (or in the frame), the others left out and listed in ``attrs["duplicates"]``."""
    keys = ["dataset", "budget", "method", "seed", "data_seed"]
    ranked = frame if order is None else frame.loc[order.sort_values(kind="stable").index]
    last = ranked.drop_duplicates(keys, keep="last")
    if len(last) == len(frame):
        out = frame
    else:
        kept = {tuple(k): run for k, run in zip(last[keys].itertuples(index=False), last["run_id"])}
        dropped = [
            {**dict(zip(keys, k)), "run_id": run, "kept": kept[tuple(k)]}
            for k, run, idx in zip(frame[keys].itertuples(index=False), frame["run_id"], frame.index)
            if idx not in last.index
        ]
        out = frame[frame.index.isin(last.index)].copy()
        out.attrs = {**frame.attrs, "duplicates": [*frame.attrs.get("duplicates", []), *dropped]}
    out.attrs.setdefault("duplicates", [])
    return out


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and number of seeds per (dataset, budget, method).

    Args:
        frame: the output of :func:`runs_frame`. A frame made otherwise that still has
            several runs of one (seed, data_seed) in a row keeps the last of them.

    Returns:
        One row per (dataset, budget, method) in order of first appearance, with
        ``{m}_mean`` and ``{m}_std`` (ddof 1, NaN for one seed) for m in many, medium, few,
        top1, worst, hmean, and ``n`` (runs averaged: unique (seed, data_seed)). ``attrs`` are carried over,
        ``duplicates`` listing the runs left out.
    """
    frame = _unique_seeds(frame)
    keys = ["dataset", "budget", "method"]
    grouped = frame.groupby(keys, sort=False, dropna=False)  # a missing budget is still a group
    out = grouped[list(METRICS)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["n"] = grouped.size()
    out = out.reset_index()
    out.attrs = dict(frame.attrs)
    return out


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
        data), then :mod:`ltbench.row_marks`' (◇ other augmentation, ¶ tau on a partial
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
    frame = _unique_seeds(frame)
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
    (model family, then name: :func:`ltbench.plot_style.method_order`), as every figure has them."""
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
) -> dict[str, Path]:
    """Write the tables (LaTeX, Markdown, CSV) and the figures (PNG and PDF) into ``out_dir``.

    Args:
        records: run records as stored.
        out_dir: output folder, created if needed.
        convention: many/medium/few convention (see :mod:`ltbench.groups`).
        selection: ``last`` or ``best_val``.
        baseline: a method to test every other against (paired t-test over seeds, marked
            with a dagger in the All column when p < 0.05); None for no test.
        metric: what the tables show: ``accuracy`` or ``error`` (100 - accuracy, the lowest
            best, the harmonic mean left out).
        shift: also write accuracy under shifted test distributions (:mod:`ltbench.shift`):
            ``shift.csv``, ``shift.tex``, ``shift.md``, ``shift.png`` / ``.pdf``.
        shift_counts: how the shifted test sets weigh classes: ``expected`` (continuous
            weights) or ``sade`` (SADE's integer per-class counts), :data:`ltbench.shift.COUNTS`.
        posthoc: also write post-hoc logit adjustment from the runs' stored logits
            (:mod:`ltbench.posthoc`): ``posthoc.csv``, ``posthoc.tex``, ``posthoc.md``, each
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
    from . import plots

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
    done = [r for r in _finished(records, selection) if r["run_id"] in kept]
    refs = references_for(done)
    tex, md, csv = latex_table(agg, marks=marks, references=refs), markdown_table(agg, marks, refs), csv_table(agg)
    write_text_atomic(paths["latex"], tex)
    write_text_atomic(paths["markdown"], md)
    write_text_atomic(paths["csv"], csv)
    # One style for every figure: a method keeps its colour and place (family, then name).
    names = dict(zip(frame["run_id"], frame["method"]))
    style = plots.MethodStyle.from_records(done, names)
    plot_per_class(done, paths["plot"], selection, names, convention, style)
    paths["groups"] = plots.plot_groups(frame, out / "groups", style)[0]
    paths["curves"] = plots.plot_curves(done, out / "curves", names, style)[0]
    paths["reliability"] = plots.plot_reliability(done, out / "reliability", selection, convention, names, style)[0]
    heads = plots.plot_heads(done, out / "heads", selection, convention, names, style)
    if heads is not None:
        paths["heads"] = heads[0]
    if shift:  # the same runs and rows as the table
        from .shift import write_shift

        paths.update(write_shift(done, frame, out, selection, known_prior=posthoc, counts=shift_counts))
    if posthoc:
        from .posthoc import write_posthoc

        paths.update(write_posthoc(done, frame, out, selection, metric))
    return paths
