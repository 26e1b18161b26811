"""Per-expert logits in the logits file, and SADE's test-time self-supervised aggregation learned
on them for each actual shifted subset (``report --shift --shift-counts subsets``)."""

import json

import numpy as np
import pytest
import torch

from ltbench.config.specs import RecipeError
from ltbench.training.test_time import AggregationSettings, aggregate, learn_weights, view_agreement


def test_view_agreement_by_hand():
    # Two views of one image, two experts, two classes.
    views = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]], [[[0.0, 2.0]], [[0.0, 0.0]]]])  # (V=2, E=2, B=1, C=2)
    w = torch.zeros(2)  # softmax: 1/2 each -> aggregated logits (1, 0) and (0, 1)
    p, q = torch.softmax(torch.tensor([1.0, 0.0]), 0), torch.softmax(torch.tensor([0.0, 1.0]), 0)
    expected = float(p @ q / (p.norm() * q.norm()))
    assert float(view_agreement(w, views)) == pytest.approx(expected, rel=1e-6)
    same = torch.stack([views[0], views[0]])
    assert float(view_agreement(w, same)) == pytest.approx(1.0, abs=1e-6)


def test_aggregate_is_the_weighted_sum_of_experts():
    heads = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    w = np.array([0.25, 0.75])
    np.testing.assert_allclose(aggregate(heads, w), 0.25 * heads[0] + 0.75 * heads[1], rtol=1e-6)


def test_the_expert_whose_views_agree_gains_weight():
    # Expert 0 predicts the same class on both views; expert 1 flips its prediction between
    # them: maximising agreement moves weight to expert 0, and the weights stay a distribution.
    rng = np.random.default_rng(0)
    n, c = 256, 5
    cls = rng.integers(0, c, n)
    steady = np.eye(c, dtype=np.float32)[cls] * 4
    flip = np.eye(c, dtype=np.float32)[(cls + 1) % c] * 4
    views = np.stack([np.stack([steady, steady]), np.stack([steady * 0, flip])])  # (V, E, N, C)
    w = learn_weights(views, seed=0)
    assert w.sum() == pytest.approx(1.0)
    assert w[0] > 0.6 > w[1]
    again = learn_weights(views, seed=0)
    np.testing.assert_array_equal(w, again)  # seeded: the same weights every time
    one_epoch = learn_weights(views, seed=0, settings=AggregationSettings(epochs=1))
    assert 0.5 < one_epoch[0] < w[0]  # more epochs, more weight (until the 0.05 stop)


@pytest.fixture(scope="module")
def sade_run(tmp_path_factory):
    from ltbench import api

    out = tmp_path_factory.mktemp("sade")
    api.run(methods=["cnn_sade"], data=["digits_lt"], budget="smoke", out_dir=out, store=out / "s.db", jobs=1)
    (path,) = (out / "runs").glob("*/*/*/record.json")
    return out, json.loads(path.read_text())


def test_experts_logits_are_stored_and_their_mean_is_the_prediction(sade_run):
    from ltbench.training.logits import load_expert_logits, load_logits

    _, record = sade_run
    assert record["logits"]["heads"] == ["expert0", "expert1", "expert2"]
    main = load_logits(record)
    experts = load_expert_logits(record)
    test = experts["test"]
    assert test["heads"].shape == (3, *main["test"][0].shape)
    np.testing.assert_allclose(test["heads"].mean(0), main["test"][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(test["labels"], main["test"][1])
    assert test["views"].shape == (2, *test["heads"].shape)  # two augmented views, every expert
    assert not np.allclose(test["views"][0], test["views"][1])  # drawn independently
    assert not np.allclose(test["views"][0], test["heads"])  # augmented, not the plain images
    assert "views" not in experts["val"]  # only the test set is aggregated on
    correct = np.bincount(test["labels"][test["heads"].mean(0).argmax(1) == test["labels"]], minlength=10)
    np.testing.assert_array_equal(correct, record["results"]["last"]["correct"])


def test_report_subsets_adds_sade_aggregated_rows(sade_run):
    import pandas as pd

    from ltbench import api
    from ltbench.reports.shift import subset_indices
    from ltbench.reports.shift_aggregation import TEST_TIME_SUFFIX, test_time_accuracies
    from ltbench.training.logits import load_expert_logits, predict

    out, record = sade_run
    paths = api.report(
        store=out / "s.db", runs=out, out_dir=out / "rep", shift=True, shift_counts="subsets", html=False
    )
    table = pd.read_csv(paths["shift_csv"])
    methods = list(dict.fromkeys(table["method"]))
    assert methods == ["cnn_sade", "cnn_sade" + TEST_TIME_SUFFIX]
    accuracies, weights = test_time_accuracies(record)
    # One distribution recomputed by hand from the stored arrays.
    test = load_expert_logits(record)["test"]
    idx = subset_indices(test["labels"], record["train_counts"], "backward10")
    w = learn_weights(test["views"][:, :, idx], seed=0)
    by_hand = float((predict(aggregate(test["heads"][:, idx], w)) == test["labels"][idx]).mean())
    assert accuracies["backward10"] == pytest.approx(by_hand)
    assert sum(weights["backward10"]) == pytest.approx(1.0, abs=1e-3)
    row = table[(table["method"] == "cnn_sade" + TEST_TIME_SUFFIX) & (table["distribution"] == "backward10")]
    assert float(row["top1_mean"].iloc[0]) == pytest.approx(100 * by_hand, abs=0.01)  # the CSV is in %
    expected = api.report(store=out / "s.db", runs=out, out_dir=out / "rep2", shift=True, html=False)
    assert TEST_TIME_SUFFIX not in pd.read_csv(expected["shift_csv"])["method"].str.cat()  # needs actual subsets
    assert (out / "rep" / "heads.png").is_file()  # each expert's accuracy by group


def test_test_views_need_experts_and_two_views(catalog):
    from ltbench.planning.sweep import plan_runs

    with pytest.raises(RecipeError, match="test_views = 2 .*has no experts"):
        plan_runs(["cnn_ce"], ["digits_lt"], "smoke", [0], overrides=["test_views=2"])
    with pytest.raises(RecipeError, match="test_views = 1"):
        plan_runs(["cnn_sade"], ["digits_lt"], "smoke", [0], overrides=["test_views=1"])


def test_a_logits_file_changed_after_it_was_read_is_still_caught(sade_run, tmp_path):
    """Its hash is kept per version of the file (a report reads one file several times), and a
    change of the same size with the old modification time is a new version all the same."""
    import os
    import shutil

    from ltbench.training.logits import LogitsError, load_logits, logits_path

    _, record = sade_run
    path = logits_path(record)
    load_logits(record)  # hashed and kept
    saved = tmp_path / "saved.npz"
    shutil.copy2(path, saved)
    try:
        changed = bytearray(path.read_bytes())
        changed[-100] ^= 0xFF  # same size
        forged = tmp_path / "forged.npz"
        forged.write_bytes(bytes(changed))
        st = path.stat()
        os.utime(forged, ns=(st.st_atime_ns, st.st_mtime_ns))
        shutil.copy2(forged, path)  # the old mtime, the same inode and size
        with pytest.raises(LogitsError, match="does not match its record"):
            load_logits(record)
    finally:
        shutil.copy2(saved, path)
    load_logits(record)  # restored: reads again
