"""Group conventions, group accuracy and ECE from per-class statistics."""

import numpy as np
import pytest
import torch

from ltbench.evaluation.groups import assign_groups
from ltbench.evaluation.metrics import ClassStats, ece_from_bins, summarize


def _lists(groups):
    return {g: v.tolist() for g, v in groups.items()}


def test_threshold_convention_boundaries():
    counts = [101, 100, 20, 19, 500]
    assert _lists(assign_groups(counts)) == {"many": [0, 4], "medium": [1, 2], "few": [3]}


def test_oltr_convention_is_inclusive():
    counts = [101, 100, 20, 19, 500]
    assert _lists(assign_groups(counts, "oltr")) == {"many": [0, 1, 4], "medium": [], "few": [2, 3]}


def test_index_convention_sorts_by_frequency():
    counts = [5, 50, 500, 7, 60]
    groups = assign_groups(counts, "index", [1, 2, 2])
    assert _lists(groups) == {"many": [2], "medium": [1, 4], "few": [0, 3]}
    with pytest.raises(ValueError, match="sum to 4"):
        assign_groups(counts, "index", [1, 1, 2])
    with pytest.raises(ValueError, match="index_sizes"):
        assign_groups(counts, "index")
    with pytest.raises(ValueError, match="unknown group convention"):
        assign_groups(counts, "median")


def test_cifar10_rho100_has_no_few_class_and_it_is_missing_not_zero():
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    sizes = {g: len(v) for g, v in assign_groups(counts).items()}
    assert sizes == {"many": 8, "medium": 2, "few": 0}
    correct, total = [90] * 8 + [40, 30], [100] * 10
    m = summarize(correct, total, counts)
    assert m["few"] is None
    assert m["many"] == pytest.approx(0.9)
    assert m["medium"] == pytest.approx(0.35)
    assert m["top1"] == pytest.approx((720 + 70) / 1000)


def test_group_accuracy_is_mean_of_class_accuracies_not_pooled():
    # class 0: 9/10, class 1: 1/2 (unbalanced test set): pooled 10/12, class mean 0.7.
    m = summarize([9, 1], [10, 2], [200, 300])
    assert m["many"] == pytest.approx(0.7)
    assert m["top1"] == pytest.approx(10 / 12)


def test_class_stats_and_ece_by_hand():
    # 4 samples, 2 classes. Confidences (max softmax) 0.9, 0.6, 0.8, 0.55.
    def logits_for(p, cls):
        row = [0.0, 0.0]
        row[cls] = float(np.log(p / (1 - p)))
        return row

    logits = torch.tensor([logits_for(0.9, 0), logits_for(0.6, 1), logits_for(0.8, 1), logits_for(0.55, 0)])
    target = torch.tensor([0, 0, 1, 1])  # correct, wrong, correct, wrong
    stats = ClassStats(2)
    stats.update(logits, target)
    d = stats.as_dict()
    assert d["correct"] == [1, 1] and d["total"] == [2, 2]
    # 15 bins of width 1/15: 0.9 -> bin 13, 0.6 -> bin 8, 0.8 -> bin 11, 0.55 -> bin 8.
    # bin 8: conf 0.6 + 0.55, correct 0 -> |0 - 1.15|; bin 11: |1 - 0.8|; bin 13: |1 - 0.9|.
    expected = (1.15 + 0.2 + 0.1) / 4
    assert ece_from_bins(d["calib"]) == pytest.approx(expected, abs=1e-5)
    # class 0 only: bin 13 (0.9, correct) and bin 8 (0.6, wrong) -> (0.1 + 0.6) / 2
    assert ece_from_bins(d["calib"], np.array([0])) == pytest.approx(0.35, abs=1e-5)
    assert ece_from_bins(d["calib"], np.array([], dtype=int)) is None
    m = summarize(d["correct"], d["total"], [200, 10], d["calib"])
    assert m["ece_medium"] is None and m["ece_many"] == pytest.approx(0.35, abs=1e-5)
