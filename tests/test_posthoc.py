"""Post-hoc prior correction from stored logits (ltbench.reports.posthoc): the logits file, post-hoc LA
with tau chosen on validation and the known-prior correction, every expected value by hand."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import interrupt_after
from fakes import record as fake_record

from ltbench.execution.runner import execute_run
from ltbench.planning.sweep import plan_runs
from ltbench.reports.posthoc import known_prior_accuracies, known_prior_counts, logit_adjusted, model_prior
from ltbench.reports.write import write_report
from ltbench.store.sqlite import ResultStore
from ltbench.training.logits import (
    LOGITS_FILE,
    LogitKeeper,
    LogitsError,
    MissingLogits,
    choose_tau,
    load_logits,
    log_prior,
)
from ltbench.training.loop import fit

LN10 = math.log(10)
S = 10**-0.5  # the middle class's forward-10 weight with 3 classes


def kept(rows, labels):
    """What ``Classify.evaluate`` hands back in ``logits_out``."""
    return {"logits": torch.tensor(rows, dtype=torch.float32), "labels": torch.tensor(labels)}


def stored_run(tmp_path, counts, test, val=None, run_id="handmade00"):
    """A record whose logits file holds ``test`` (and ``val``): (rows, labels) each, as ``last``."""
    keeper = LogitKeeper(tmp_path)
    keeper.keep(3, kept(*test), None if val is None else kept(*val))
    entry = keeper.finish({"last": {"epoch": 3}})
    rec = fake_record("ce", 0, [0] * len(counts), counts)
    rec.update(run_id=run_id, run_dir=str(tmp_path), logits=entry)
    return rec


# ----------------------------------------------------------------------- post-hoc LA


# counts (100, 1): -tau * log p_train moves class 1 ahead of class 0 by tau * ln 100 = 4.605 tau.
# Validation: class 0 at margin 5 (right while 4.605 tau < 5, tau < 1.086), class 1 at margin -2
# (right once tau > 0.434). Grid 0, 0.25, 0.5, ...: mean per-class accuracy 0.5, 0.5, 1.0, 1.0,
# 1.0, 0.5, ...: tau = 0.5, the first of the ties.
VAL = ([[5, 0], [2, 0]], [0, 1])
# Test: class 0 at margin 5, class 1 at margins -2.2 (flips at tau > 0.478) and -4 (flips only
# at tau > 0.869). On test, tau = 1 would be best (both class-1 images right); validation's 0.5
# flips only the first.
TEST = ([[5, 0], [2.2, 0], [4, 0]], [0, 1, 1])


def test_logit_adjustment_chooses_tau_on_validation_and_flips_a_prediction(tmp_path):
    rec = stored_run(tmp_path, [100, 1], TEST, VAL)
    tau, scores = choose_tau(np.array(VAL[0], np.float16), np.array(VAL[1]), [100, 1])
    assert tau == 0.5
    assert [scores[t] for t in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)] == [0.5, 0.5, 1.0, 1.0, 1.0, 0.5]
    la = logit_adjusted(rec)
    assert la["tau"] == 0.5  # never test's choice (1.0)
    assert la["correct"].tolist() == [1, 1] and la["total"].tolist() == [1, 2]  # unadjusted: [1, 0]
    assert la["metrics"]["top1"] == pytest.approx(2 / 3)
    assert la["metrics"]["medium"] == pytest.approx(1.0)  # 100 images: medium under the thresholds
    assert la["metrics"]["few"] == pytest.approx(0.5)


def test_a_class_without_training_images_is_left_unadjusted():
    np.testing.assert_allclose(log_prior([100, 0, 10]), [math.log(100 / 110), 0.0, math.log(10 / 110)])
    # Class 1 has no training image: its logit keeps its value at every tau (it would win everywhere
    # with log 0); class 2 (10 images) gains.
    z, y = np.array([[1.0, 0.9, 0.0]], np.float16), np.array([1])
    tau, scores = choose_tau(z, y, [100, 0, 10])
    assert scores[0.0] == 0.0 and tau == 0.0  # class 1 never rises above class 0's adjusted logit


def test_no_validation_logits_is_a_clear_error(tmp_path):
    rec = stored_run(tmp_path, [100, 1], TEST)
    with pytest.raises(MissingLogits, match="chooses tau on validation, never on test"):
        logit_adjusted(rec)


# ----------------------------------------------------------------------- known prior


# counts (100, 10, 1), forward-10: log p_test - log p_train = log w - log n + const =
# (-ln 100, -1.5 ln 10, -ln 10): relative to class 0, class 1 gains 0.5 ln 10 = 1.151 and class 2
# ln 10 = 2.303.
KP_TEST = (
    [[3, 0, 0], [2, 0, 0], [1, 0, -5], [1, 0, -1]],
    [0, 0, 1, 2],
)
# corrected: [3, 1.15, 2.30] -> 0 (right); [2, 1.15, 2.30] -> 2 (wrong); [1, 1.15, -2.70] -> 1
# (right); [1, 1.15, 1.30] -> 2 (right). Per class 1/2, 1/1, 1/1 (uncorrected 2/2, 0/1, 0/1).


def test_known_prior_correction_on_three_classes_by_hand(tmp_path):
    z, y = np.array(KP_TEST[0], np.float16), np.array(KP_TEST[1])
    correct, total = known_prior_counts(z, y, [100, 10, 1], "forward10")
    assert correct.tolist() == [1, 1, 1] and total.tolist() == [2, 1, 1]
    rec = stored_run(tmp_path, [100, 10, 1], KP_TEST)
    acc = known_prior_accuracies(rec, distributions=["forward10", "uniform"], tau=1.0)  # CE logits: tau 1
    # sum_i w_i acc_i / sum_i w_i with w = (1, 10^-0.5, 0.1).
    assert acc["forward10"] == pytest.approx((0.5 + S + 0.1) / (1 + S + 0.1))
    assert acc["forward10"] == pytest.approx(0.6469494, abs=1e-7)  # 0.9162278 / 1.4162278
    # uniform: class 1 gains ln 10, class 2 ln 100 over class 0: [3, 2.30, 4.61] -> 2,
    # [2, 2.30, 4.61] -> 2, [1, 2.30, -0.39] -> 1, [1, 2.30, 3.61] -> 2: per class 0, 1, 1.
    assert acc["uniform"] == pytest.approx(2 / 3)
    assert 2 * LN10 > 4.6  # the uniform case's margins above hold


# counts (100, 1). Validation of a model whose logits are already prior-free (an LA run): both
# classes right at tau = 0 (margins 5 and 2), and no tau does better: its model prior is 0.
PRIOR_FREE_VAL = ([[5, 0], [0, 2]], [0, 1])
# Test as recorded: [1, 0] -> 0 right, [0, 1] -> 1 right, [2, 0] -> 0 wrong: per class 1/1, 1/2.
PRIOR_FREE_TEST = ([[1, 0], [0, 1], [2, 0]], [0, 1, 1])


def test_the_known_prior_correction_does_not_remove_a_prior_twice(tmp_path):
    # The case: argmax(z - log p_train + log p_test) on LA-like logits adds ln 100 to
    # class 1 a second time ([1, 0] flips to 1: uniform 0.75 -> 0.5). The model's prior is
    # estimated on validation (tau 0), so on the uniform test set the right correction is none.
    rec = stored_run(tmp_path, [100, 1], PRIOR_FREE_TEST, PRIOR_FREE_VAL)
    assert model_prior(rec) == 0.0
    acc = known_prior_accuracies(rec, distributions=["uniform", "backward50"])
    assert acc["uniform"] == pytest.approx(0.75)  # (1 + 0.5) / 2, as recorded
    # backward-50 with 2 classes: p_test = (1/51, 50/51): class 1 gains ln 50 = 3.9 over class 0,
    # so [1, 0] and [2, 0] go to class 1: per class 0/1, 2/2 -> (1/50 * 0 + 1 * 1) / (1 + 1/50).
    assert acc["backward50"] == pytest.approx(1 / (1 + 1 / 50))
    # A CE model's validation asks for its prior to be removed: tau 0.5 from VAL, as post-hoc LA.
    ce = stored_run(tmp_path / "ce", [100, 1], TEST, VAL, run_id="handmade01")
    assert model_prior(ce) == logit_adjusted(ce)["tau"] == 0.5


def test_the_known_prior_needs_validation_logits(tmp_path):
    rec = stored_run(tmp_path, [100, 1], TEST)
    with pytest.raises(MissingLogits, match="estimates the prior the model's logits carry on validation") as e:
        known_prior_accuracies(rec)
    assert e.value.reason == "no validation logits to estimate the model's prior on"


def test_an_oracle_row_never_takes_the_bold():
    import pandas as pd

    from ltbench.reports.shift import DISTRIBUTIONS, latex_table, markdown_table

    rows = [
        {"method": m, "dataset": "d", "budget": "b", "distribution": dist, "top1_mean": v, "top1_std": np.nan, "n": 1}
        for m, v in (("ce", 0.5), ("la", 0.6), ("ce + known prior", 0.9), ("la + known prior", 0.6))
        for dist in DISTRIBUTIONS
    ]
    agg = pd.DataFrame(rows)
    md = markdown_table(agg)
    assert "| la | **60.0** |" in md and "| ce + known prior | 90.0 |" in md and "| la + known prior | 60.0 |" in md
    tex = latex_table(agg)
    assert "la & \\textbf{60.0}" in tex and "ce + known prior & 90.0" in tex and "prior & \\textbf" not in tex


def test_known_prior_correction_backward_by_hand():
    # counts (3, 1): p_train = (3/4, 1/4); backward-2 ranks them 0, 1, so w = (2^-1, 2^0) and
    # p_test = (1/3, 2/3). Offset log p_test - log p_train puts class 1 ahead of class 0 by
    # ln 2 + ln 3 = ln 6 = 1.792: [2, 0] -> 0 (right), [1.5, 0] -> 1 (wrong), [0, 1] -> 1 (right).
    z, y = np.array([[2, 0], [1.5, 0], [0, 1]], np.float16), np.array([0, 0, 1])
    correct, total = known_prior_counts(z, y, [3, 1], "backward2")
    assert correct.tolist() == [1, 1] and total.tolist() == [2, 1]
    from ltbench.reports.shift import shifted_accuracy

    # sum_i w_i acc_i / sum_i w_i = (0.5 * 0.5 + 1 * 1) / 1.5
    assert shifted_accuracy(correct, total, [3, 1], "backward2") == pytest.approx(1.25 / 1.5)


# ----------------------------------------------------------------------- the file


def test_the_file_is_float32_and_loads_without_pickle(tmp_path):
    rec = stored_run(tmp_path, [100, 1], TEST, VAL)
    path = tmp_path / LOGITS_FILE
    assert rec["logits"]["file"] == LOGITS_FILE and rec["logits"]["selections"] == {"last": "e3"}
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["e3_test_labels", "e3_test_logits", "e3_val_labels", "e3_val_logits"]
        assert f["e3_test_logits"].dtype == np.float32 and f["e3_test_logits"].shape == (3, 2)
        assert f["e3_test_labels"].dtype == np.int16
        assert all(f[k].dtype != object for k in f.files)
    z, y = load_logits(rec)["test"]
    np.testing.assert_array_equal(z, np.array(TEST[0], np.float32))
    assert y.tolist() == [0, 1, 1]


def test_a_swapped_file_is_refused(tmp_path):
    rec = stored_run(tmp_path / "a", [100, 1], TEST, VAL)
    other = stored_run(tmp_path / "b", [100, 1], ([[0, 5], [0, 5], [0, 5]], [0, 1, 1]), VAL)
    (tmp_path / "a" / LOGITS_FILE).write_bytes((tmp_path / "b" / LOGITS_FILE).read_bytes())
    assert other["logits"]["sha256"] != rec["logits"]["sha256"]
    with pytest.raises(LogitsError, match="does not match its record.*changed or swapped.*--force"):
        load_logits(rec)
    rec["logits"] = {**rec["logits"], "file": "../b/logits.npz"}
    with pytest.raises(LogitsError, match="not a name in its run folder"):
        load_logits(rec)
    with pytest.raises(MissingLogits, match="stored no logits"):
        load_logits({"run_id": "old", "run_dir": str(tmp_path)})


def test_a_persisted_keep_writes_every_kept_epoch(tmp_path):
    # The best epoch (2) and the last (3) both persisted: a keeper of a resumed run, holding
    # nothing in memory, still finds both in the file (a persist must not drop the best epoch).
    keeper = LogitKeeper(tmp_path)
    keeper.keep(2, kept(*TEST), kept(*VAL))
    keeper.write()
    keeper.keep(3, kept(*TEST), kept(*VAL))
    keeper.write()
    entry = LogitKeeper(tmp_path).finish({"best_val": {"epoch": 2}, "last": {"epoch": 3}})
    assert entry is not None and entry["selections"] == {"best_val": "e2", "last": "e3"}


# ----------------------------------------------------------------------- a real run


@pytest.fixture
def no_figures(monkeypatch):
    """The report without its figures (seconds each; this file tests tables)."""
    from ltbench.reports import plot_calibration, plot_classes, plot_training, shift

    def stub(*args, **kwargs):
        return [Path(os.devnull)]

    for module, names in (
        (plot_training, ("plot_curves", "plot_heads")),
        (plot_calibration, ("plot_reliability",)),
        (plot_classes, ("plot_groups", "plot_per_class")),
        (shift, ("plot_shift",)),
    ):
        for name in names:
            monkeypatch.setattr(module, name, stub)


def test_a_run_stores_its_logits_and_the_report_adds_posthoc_rows(tmp_path, no_figures):
    specs = plan_runs(["ce"], ["digits_lt"], "smoke", seeds=[0, 1], out_dir=tmp_path)
    store = ResultStore(tmp_path / "s.db")
    records = [execute_run(spec, store, "cpu") for spec in specs]
    rec = records[0]
    entry = rec["logits"]
    assert set(entry["selections"]) == set(rec["results"])  # last and best_val
    # 500 + 100 images x 10 classes x 4 B, two epochs
    assert (specs[0].run_dir / LOGITS_FILE).is_file() and entry["bytes"] < 100_000
    for sel, res in rec["results"].items():
        logits = load_logits(rec, sel)
        z, y = logits["test"]
        assert z.dtype == np.float32 and z.shape == (500, 10) and logits["val"][0].shape == (100, 10)
        # The stored logits give the predictions the record counted.
        pred = z.astype(np.float32).argmax(1)
        assert np.bincount(y[pred == y], minlength=10).tolist() == list(res["correct"])
    old = {k: v for k, v in records[1].items() if k != "logits"}  # a run recorded before logits
    with pytest.warns(
        UserWarning, match=r"1 run\(s\) skipped for want of stored logits: ce seed 1 \(\w+: no stored logits\)"
    ):
        paths = write_report([rec, old], tmp_path / "report", shift=True, posthoc=True)
    md = paths["posthoc_markdown"].read_text()
    assert "| ce + post-hoc LA (tau=" in md and "| ce |" in md and "ce seed 1" in md
    assert "ce + known prior" in paths["shift_markdown"].read_text()
    assert "ce + known prior" in paths["shift_latex"].read_text()
    csv = paths["posthoc_csv"].read_text().splitlines()
    assert csv[0].endswith(",n,tau_mean") and len(csv) == 3


def test_a_resumed_run_keeps_the_logits_of_its_best_epoch(smoke_config, digits, tmp_path):
    cfg = smoke_config("ce", "epochs=3")
    full = fit(cfg, digits, tmp_path / "full")

    interrupt_after(cfg, digits, tmp_path / "cut", 2)
    resumed = fit(cfg, digits, tmp_path / "cut")
    assert resumed.resumed_from_epoch == 2
    assert resumed.logits["selections"] == full.logits["selections"] == {"best_val": "e2", "last": "e3"}
    a = np.load(tmp_path / "full" / LOGITS_FILE, allow_pickle=False)
    b = np.load(tmp_path / "cut" / LOGITS_FILE, allow_pickle=False)
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_posthoc_la_from_stored_logits_agrees_with_the_objective(tmp_path):
    # cnn_posthoc_la adjusts its backbone (cnn_ce, last epoch) and picks tau on validation; the
    # same choice made from the backbone's stored logits picks the same tau with the same scores.
    store = ResultStore(tmp_path / "s.db")
    specs = plan_runs(["cnn_posthoc_la"], ["digits_lt"], "smoke", out_dir=tmp_path)
    backbone, stage = (execute_run(spec, store, "cpu") for spec in specs)
    assert stage["logits"]["selections"] == {"last": "e0", "best_val": "e0"}  # one evaluation, stored once
    mine = logit_adjusted(backbone, "last")
    theirs = stage["results"]["last"]
    assert mine["tau"] == theirs["tau"]
    assert mine["val_scores"] == pytest.approx({float(t): v for t, v in theirs["val_scores"].items()})
    # float32 storage: the stored logits give the stage's own predictions, image for image.
    assert mine["correct"].tolist() == list(theirs["correct"])


def test_a_run_stopped_after_its_last_checkpoint_keeps_its_logits(smoke_config, digits, tmp_path):
    cfg = smoke_config("ce", "epochs=3")
    full = fit(cfg, digits, tmp_path / "full")

    interrupt_after(cfg, digits, tmp_path / "cut", 3)  # after the last epoch's checkpoint is written
    resumed = fit(cfg, digits, tmp_path / "cut")
    assert resumed.resumed_from_epoch == 3
    assert resumed.logits is not None and resumed.logits["selections"] == full.logits["selections"]
