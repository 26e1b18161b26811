"""Rows ``<method> + test-time aggregation`` of the shifted-subset table: SADE's expert weights
learned on each actual subset (:mod:`ltbench.training.test_time`), from a multi-expert run's
stored logits (``train.test_views``). An expectation over per-class accuracies cannot score
this, since the weights depend on the test set's images: only ``--shift-counts subsets`` has
these rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .shift import DISTRIBUTIONS, SUBSET_SEED, distribution_rows, subset_indices

TEST_TIME_SUFFIX = " + test-time aggregation"


def test_time_accuracies(
    record: dict[str, Any], selection: str = "last", distributions: Sequence[str] = DISTRIBUTIONS
) -> tuple[dict[str, float | None], dict[str, list[float]]] | None:
    """Top-1 per distribution after SADE's aggregation learned on that distribution's subset,
    and the learned weights; None for a run that stored no expert logits on test views."""
    from ..training.logits import LogitsError, load_expert_logits, predict
    from ..training.test_time import aggregate, learn_weights

    try:
        test = load_expert_logits(record, selection)["test"]
    except LogitsError:
        return None
    if "views" not in test:
        return None
    labels, counts = test["labels"], record["train_counts"]
    accuracies, weights = {}, {}
    for dist in distributions:
        idx = subset_indices(labels, counts, dist)
        if not len(idx):
            accuracies[dist] = None
            continue
        w = learn_weights(test["views"][:, :, idx], seed=SUBSET_SEED)
        pred = predict(aggregate(test["heads"][:, idx], w))
        accuracies[dist] = float((pred == labels[idx]).mean())
        weights[dist] = [round(float(v), 4) for v in w]
    return accuracies, weights


def with_test_time_rows(
    long: pd.DataFrame, records_by_id: Mapping[str, dict[str, Any]], frame: pd.DataFrame, selection: str = "last"
) -> pd.DataFrame:
    """``long`` (:func:`ltbench.reports.shift.shift_frame`'s rows) with each multi-expert run's
    aggregated rows placed right after its method's rows; unchanged when no run kept views."""
    found = []
    for run in frame.itertuples(index=False):
        result = test_time_accuracies(records_by_id[run.run_id], selection)
        if result is not None:
            found.append((run, result[0]))
    if not found:
        return long
    extra = distribution_rows(found, TEST_TIME_SUFFIX)
    order = {m: i for i, m in enumerate(dict.fromkeys(long["method"]))}
    both = pd.concat([long.assign(_o=0), extra.assign(_o=1)], ignore_index=True)
    both["_base"] = [order.get(m.removesuffix(TEST_TIME_SUFFIX), len(order)) for m in both["method"]]
    both = both.sort_values(["_base", "_o"], kind="stable")
    return both.drop(columns=["_base", "_o"]).reset_index(drop=True)


__all__ = ["TEST_TIME_SUFFIX", "test_time_accuracies", "with_test_time_rows"]
