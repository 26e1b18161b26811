"""Post-hoc prior correction from a run's stored logits: no retraining.

Every run stores, beside its record, the test and validation logits of the selections its
record reports (``last``, and ``best_val`` where there is one): ``logits.npz`` in the run
folder, float32 ``[N, C]`` logits of the prediction the record's top-1 counts (DeiT-LT: the
averaged CLS/DIST head; LDAM: the scaled logits) and the int16 (int32 past 32,767 classes)
labels. The logits are the very tensor whose argmax the record's per-class ``correct`` counted,
in float32 (bf16 under CUDA autocast converts exactly), so their argmax reproduces the record
exactly. Records written before float32 storage hold float16 logits (their ``logits`` entry
says ``"dtype": "float16"``): rounding to float16 ties some near-equal logits, so post-hoc rows
from them can differ from the record by such a tie. The file is plain NumPy arrays, read with
``allow_pickle=False`` (nothing on load runs code), written atomically; the record names it
with its SHA-256 (``record["logits"]``), and a file that does not match is refused.

From the logits and the record's training counts ``n_j`` (``p_train = n / sum n``):

- **Post-hoc logit adjustment** (Menon et al., "Long-tail learning via logit adjustment", ICLR
  2021, arXiv:2007.07314): predict ``argmax_j z_j - tau * log p_train(j)``, ``tau`` from
  :data:`ltbench.training.objectives.LOGIT_ADJUST_GRID` chosen by mean per-class accuracy on the
  VALIDATION logits (the first of equal scores in grid order, as the ``posthoc_logit_adjust``
  objective chooses), never on test.
- **Known-prior correction**: for a test set whose class prior ``p_test`` is known (the shifted
  distributions of :mod:`ltbench.reports.shift`), predict ``argmax_j z_j - tau * log p_train(j) + log
  p_test(j)``: the model's own prior taken out, the test's put in (Bayes-optimal under pure
  label shift), an oracle row of the shifted tables that never takes the bold. The prior a
  model's logits carry depends on its method: plain CE carries ``p_train`` (tau = 1), while LA,
  Bal-BCE, LDAM-DRW, cRT or post-hoc LA have already removed it (tau = 0), and subtracting it
  again would correct twice. So ``tau`` is not assumed: it is post-hoc LA's choice on the
  VALIDATION logits (balanced: the tau that best removes the training prior), and a run
  without validation logits gets no such row. Its expected accuracy is ``sum_i w_i acc_i /
  sum_i w_i`` with the corrected per-class accuracies, as
  :func:`ltbench.reports.shift.shifted_accuracy` computes it.

A class with no training image gets no ``- log p_train`` term (``log 0`` would make it win
everywhere), as in the objective: post-hoc LA leaves its logit as it is; the known-prior
correction adds only its ``log p_test``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..training.logits import MissingLogits, choose_tau, class_counts, load_logits, log_prior, predict
from .row_marks import KNOWN_PRIOR_SUFFIX


def logit_adjusted(record: dict[str, Any], selection: str = "last", convention: str | None = None) -> dict[str, Any]:
    """Post-hoc LA of one stored run: tau chosen on its validation logits, applied to test.

    Args:
        record: the run's record.
        selection: ``last`` or ``best_val``.
        convention: many/medium/few convention (default: the record's).

    Returns:
        ``tau``, ``val_scores`` ({tau: mean per-class validation accuracy}), the test's
        ``correct`` / ``total`` per class and ``metrics`` (:func:`ltbench.evaluation.metrics.summarize`).

    Raises:
        MissingLogits: no logits, or no validation logits to choose tau on.
        LogitsError: see :func:`load_logits`.
    """
    from ..evaluation.metrics import summarize

    logits = _with_validation(
        record, selection, "post-hoc LA chooses tau on validation, never on test", "choose tau on"
    )
    counts = record["train_counts"]
    tau, scores = choose_tau(*logits["val"], counts)
    z, y = logits["test"]
    correct, total = class_counts(predict(z, -tau * log_prior(counts)), y, len(counts))
    conv = convention or record.get("group_convention") or "threshold"
    metrics = summarize(correct, total, counts, None, conv, record.get("index_sizes"))
    return {"tau": tau, "val_scores": scores, "correct": correct, "total": total, "metrics": metrics}


def _with_validation(record: dict[str, Any], selection: str, why: str, purpose: str) -> dict:
    """A run's logits, refusing (``MissingLogits``) those that lack the validation split."""
    logits = load_logits(record, selection)
    if "val" not in logits:
        raise MissingLogits(
            f"run {record['run_id'][:10]} has no validation logits: {why} "
            "(give the dataset a validation split: split.val_per_class)",
            f"no validation logits to {purpose}",
        )
    return logits


def known_prior_counts(
    logits: np.ndarray, labels: np.ndarray, train_counts: Sequence[float], distribution: str, tau: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class correct/total of ``argmax(z - tau * log p_train + log p_test)``, p_test ∝ the
    :func:`ltbench.reports.shift.shift_weights` of ``distribution``; ``tau`` is the training prior the
    logits carry (1: plain CE; 0: logits already prior-free)."""
    from .shift import shift_weights

    w = shift_weights(train_counts, distribution)
    offset = np.log(w / w.sum()) - tau * log_prior(train_counts)
    return class_counts(predict(logits, offset), labels, len(w))


def model_prior(record: dict[str, Any], selection: str = "last") -> float:
    """How much of the training prior a run's logits carry: post-hoc LA's ``tau`` chosen on its
    validation logits (0 for a method that already removed it, about 1 for plain CE).

    Raises:
        MissingLogits: no logits, or no validation logits to estimate it on.
        LogitsError: see :func:`load_logits`.
    """
    logits = _with_validation(
        record,
        selection,
        "the known-prior correction estimates the prior the model's logits carry on validation, never on test",
        "estimate the model's prior on",
    )
    return choose_tau(*logits["val"], record["train_counts"])[0]


def known_prior_accuracies(
    record: dict[str, Any],
    selection: str = "last",
    distributions: Sequence[str] | None = None,
    tau: float | None = None,
    counts: str = "expected",
) -> dict[str, float | None]:
    """Expected top-1 of the known-prior correction on every shifted test distribution.

    Args:
        record, selection: the run and which of its selections.
        distributions: default every one of :data:`ltbench.reports.shift.DISTRIBUTIONS`.
        tau: the training prior the logits carry; None (default): :func:`model_prior`, estimated
            on the run's validation logits.
        counts: how the shifted test set weighs classes (:data:`ltbench.reports.shift.COUNTS`).

    Raises:
        MissingLogits, LogitsError: see :func:`load_logits` and :func:`model_prior`.
    """
    from .shift import DISTRIBUTIONS, shift_weights, shifted_accuracy, subset_accuracy

    tau = model_prior(record, selection) if tau is None else tau
    z, y = load_logits(record, selection)["test"]
    train_counts = record["train_counts"]
    out = {}
    for d in distributions or DISTRIBUTIONS:
        if counts == "subsets":  # the corrected predictions on the actual subset
            w = shift_weights(train_counts, d)
            pred = predict(z, np.log(w / w.sum()) - tau * log_prior(train_counts))
            out[d] = subset_accuracy(pred, y, train_counts, d)
            continue
        correct, total = known_prior_counts(z, y, train_counts, d, tau)
        out[d] = shifted_accuracy(correct, total, train_counts, d, counts)
    return out


LA_SUFFIX = " + post-hoc LA"


def _skip_note(skipped: list[str]) -> str:
    return f"{len(skipped)} run(s) skipped for want of stored logits: " + "; ".join(skipped)


def _warn_skipped(skipped: list[str]) -> None:
    # One place: the post-hoc and shifted tables name the same runs in one warning, shown once.
    warnings.warn(_skip_note(skipped), stacklevel=1)


def _tau_text(taus: Sequence[float]) -> str:
    lo, hi = min(taus), max(taus)
    return f"tau={lo:g}" if lo == hi else f"tau={lo:g}-{hi:g}"


def posthoc_frame(records: Sequence[dict[str, Any]], frame, selection: str = "last"):
    """The main table's runs that stored logits, each twice: as recorded, and with post-hoc LA.

    Args:
        records: run records as stored.
        frame: :func:`ltbench.reports.runs.runs_frame` of them (it picks the runs and names rows).
        selection: ``last`` or ``best_val``, as the frame.

    Returns:
        (frame, skipped): ``frame`` has runs_frame's columns plus ``tau`` (NaN on the rows as
        recorded); an adjusted row is named ``<method> + post-hoc LA (tau=...)`` (the range over
        its seeds). ``skipped`` names each run left out and why, one string per run.

    Raises:
        LogitsError: a stored file does not match its record (a missing one is skipped).
    """
    import pandas as pd

    by_id = {r["run_id"]: r for r in records}
    convention = frame.attrs.get("convention", "threshold")
    base, adjusted, skipped = [], [], []
    for row in frame.to_dict("records"):
        record = by_id[row["run_id"]]
        try:
            la = logit_adjusted(record, selection, convention)
        except MissingLogits as e:  # a file that does not match its record is an error, not a skip
            skipped.append(f"{row['method']} seed {row['seed']} ({row['run_id'][:10]}: {e.reason})")
            continue
        base.append({**row, "tau": np.nan})
        m = la["metrics"]
        adjusted.append({**row, **{k: np.nan if m.get(k) is None else m[k] for k in m}, "tau": la["tau"]})
    cols = [*frame.columns, "tau"]
    out = pd.DataFrame(base, columns=cols)
    adj = pd.DataFrame(adjusted, columns=cols)
    if len(adj):
        keys = ["dataset", "budget", "method"]
        names = {k: f"{k[2]}{LA_SUFFIX} ({_tau_text(g['tau'])})" for k, g in adj.groupby(keys, sort=False)}
        adj["method"] = [names[k] for k in zip(adj["dataset"], adj["budget"], adj["method"])]
        adj["ece"] = np.nan  # no calibration bins for the adjusted predictions
    # Each method's adjusted row right after its own.
    order = {m: i for i, m in enumerate(dict.fromkeys(frame["method"]))}
    both = pd.concat([out.assign(_o=0), adj.assign(_o=1)], ignore_index=True)
    both["_base"] = [order.get(m.split(LA_SUFFIX)[0], len(order)) for m in both["method"]]
    both = both.sort_values(["dataset", "budget", "_base", "_o"], kind="stable", key=_keep_order(both))
    both = both.drop(columns=["_base", "_o"]).reset_index(drop=True)
    rows = dict(frame.attrs.get("rows") or {})
    for d, b, m in zip(both["dataset"], both["budget"], both["method"]):
        base_name = m.split(LA_SUFFIX)[0]
        if (d, b, base_name) in rows:
            info = rows[d, b, base_name]
            # no published row compares; an adjusted row's tau is chosen on validation
            rows[d, b, m] = {**info, "setting": None, "partial_val": info.get("partial_val")}
            if m != base_name:
                covered = info.get("val_coverage")
                rows[d, b, m]["partial_val"] = covered if covered and covered[0] < covered[1] else None
    both.attrs = {**frame.attrs, "rows": rows, "duplicates": []}
    return both, skipped


def known_prior_frame(records: Sequence[dict[str, Any]], frame, selection: str = "last", counts: str = "expected"):
    """Rows ``<method> + known prior`` for :func:`ltbench.reports.shift.shift_frame`: each run of
    ``frame`` with stored logits, corrected with each distribution's known test prior.

    Returns:
        (long frame with shift_frame's columns, skipped runs as in :func:`posthoc_frame`).

    Raises:
        LogitsError: a stored file does not match its record (a missing one is skipped).
    """

    from .shift import distribution_rows

    by_id = {r["run_id"]: r for r in records}
    values, skipped = [], []
    for run in frame.itertuples(index=False):
        try:
            values.append((run, known_prior_accuracies(by_id[run.run_id], selection, counts=counts)))
        except MissingLogits as e:
            skipped.append(f"{run.method} seed {run.seed} ({run.run_id[:10]}: {e.reason})")
    return distribution_rows(values, KNOWN_PRIOR_SUFFIX), skipped


def caption(agg) -> str:
    """What the post-hoc table shows, in LaTeX."""
    from .tables import default_caption

    return (
        "Post-hoc logit adjustment from stored logits (Menon et al., ICLR 2021): each method as trained, and "
        "below it with logits $z_j - \\tau \\log p_{\\mathrm{train}}(j)$, $\\tau$ chosen per run on the "
        "validation set (mean per-class accuracy), never on test; the row gives the range of $\\tau$ over "
        "seeds. " + default_caption(agg)
    )


def write_posthoc(
    records: Sequence[dict[str, Any]], frame, out_dir: str | Path, selection: str = "last", metric: str = "accuracy"
) -> dict[str, Path]:
    """Write ``posthoc.csv``, ``posthoc.tex`` and ``posthoc.md``: the main table's runs with
    stored logits, as recorded and with post-hoc LA (:func:`posthoc_frame`).

    Runs without stored logits are named in one warning (and a note under the Markdown
    table) and left out; with none at all, nothing is written.

    Args:
        records: run records as stored.
        frame: :func:`ltbench.reports.runs.runs_frame` of them (the main table's runs and rows).
        out_dir: output folder.
        selection: ``last`` or ``best_val``, as the frame.
        metric: ``accuracy`` or ``error``, as the main table.

    Returns:
        Paths by kind: ``posthoc_csv``, ``posthoc_latex``, ``posthoc_markdown`` (empty if no run
        stored logits).

    Raises:
        LogitsError: a stored file does not match its record.
    """
    from ..core.atomic import write_text_atomic
    from .runs import aggregate
    from .tables import csv_table, latex_table, markdown_table

    both, skipped = posthoc_frame(records, frame, selection)
    if skipped:
        _warn_skipped(skipped)
    if both.empty:
        return {}
    taus = both.groupby(["dataset", "budget", "method"], sort=False)["tau"]
    agg = aggregate(both.drop(columns=["tau"]))
    agg.attrs.update(both.attrs)
    tau_mean = taus.mean().reset_index(name="tau_mean")
    agg = agg.merge(tau_mean, on=["dataset", "budget", "method"], how="left")
    agg.attrs.update(both.attrs, metric=metric)
    out = Path(out_dir)
    paths = {
        "posthoc_csv": out / "posthoc.csv",
        "posthoc_latex": out / "posthoc.tex",
        "posthoc_markdown": out / "posthoc.md",
    }
    csv = csv_table(agg.drop(columns=["tau_mean"])).splitlines()
    tau_col = ["" if np.isnan(t) else f"{t:g}" for t in agg["tau_mean"]]
    csv = [csv[0] + ",tau_mean", *(line + "," + t for line, t in zip(csv[1:], tau_col))]
    write_text_atomic(paths["posthoc_csv"], "\n".join(csv) + "\n")
    plain = agg.drop(columns=["tau_mean"])
    plain.attrs = agg.attrs
    write_text_atomic(paths["posthoc_latex"], latex_table(plain, caption=caption(plain), label="tab:ltbench-posthoc"))
    md = markdown_table(plain)
    md = (
        "Post-hoc logit adjustment (Menon et al.) from stored logits: z - tau * log p_train, tau chosen per run "
        "on the validation set (mean per-class accuracy), never on test.\n\n" + md
    )
    if skipped:
        md += f"\nNote: {_skip_note(skipped)}.\n"
    write_text_atomic(paths["posthoc_markdown"], md)
    return paths


def with_known_prior(records: Sequence[dict[str, Any]], frame, agg, selection: str = "last", counts: str = "expected"):
    """The shifted table ``agg`` (:func:`ltbench.reports.shift.aggregate_shift`) with a row
    ``<method> + known prior`` after each method whose runs stored logits.

    Runs without stored logits are named in one warning and left out of those rows.
    """
    import pandas as pd

    from .shift import aggregate_shift

    long, skipped = known_prior_frame(records, frame, selection, counts)
    if skipped:
        _warn_skipped(skipped)
    if long.empty:
        return agg
    both = pd.concat([agg.assign(_o=0), aggregate_shift(long).assign(_o=1)], ignore_index=True)
    order = {m: i for i, m in enumerate(dict.fromkeys(agg["method"]))}
    both["_base"] = [order.get(m.removesuffix(KNOWN_PRIOR_SUFFIX), len(order)) for m in both["method"]]
    both = both.sort_values(["dataset", "budget", "_base", "_o"], kind="stable", key=_keep_order(both))
    return both.drop(columns=["_base", "_o"]).reset_index(drop=True)


def _keep_order(frame):
    """A sort key that keeps (dataset, budget) blocks in their order of first appearance."""
    first = {col: {v: i for i, v in enumerate(dict.fromkeys(frame[col]))} for col in ("dataset", "budget")}

    def key(column):
        return column.map(first[column.name]) if column.name in first else column

    return key
