"""Training runs on real digits: results, determinism, resume, failures."""

import numpy as np
import pytest
import torch
from fakes import interrupt_after

from ltbench.core.errors import RunSetupError
from ltbench.data import build_data
from ltbench.execution.runner import execute_run
from ltbench.planning.sweep import plan_runs
from ltbench.store.sqlite import ResultStore
from ltbench.training.loop import fit


def test_data_split_and_longtail(digits, catalog):
    assert digits.class_counts.tolist() == [114, 88, 68, 52, 40, 31, 24, 19, 14, 11]
    assert np.bincount(digits.test.labels).tolist() == [50] * 10
    assert np.bincount(digits.val.labels).tolist() == [10] * 10
    other = build_data(catalog.datasets.get("digits_lt"), 1)
    np.testing.assert_array_equal(other.test.images, digits.test.images)  # the data seed never moves the test set
    assert not np.array_equal(other.train.images, digits.train.images)
    assert other.class_counts.tolist() == digits.class_counts.tolist()


def test_fit_results_cover_the_test_set(smoke_config, digits, tmp_path):
    cfg = smoke_config("ce", "epochs=3")
    res = fit(cfg, digits, tmp_path)
    last = res.results["last"]
    assert last["epoch"] == 3 and last["total"] == [50] * 10
    assert 0 <= sum(last["correct"]) <= 500
    assert sum(map(sum, last["calib"]["count"])) == 500
    assert 1 <= res.results["best_val"]["epoch"] <= 3
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert all(np.isfinite(h["train_loss"]) for h in res.history)


def test_same_seed_same_result_and_rng_untouched(smoke_config, digits, tmp_path):
    cfg = smoke_config("bal_bce", "mixup=0.8", "cutmix=1.0", "label_smoothing=0.1", "drop_path=0.1")
    torch.manual_seed(123)
    np.random.seed(123)
    a = fit(cfg, digits, tmp_path / "a")
    after_torch, after_np = torch.rand(1).item(), np.random.rand()
    b = fit(cfg, digits, tmp_path / "b")
    assert a.results["last"]["correct"] == b.results["last"]["correct"]
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    torch.manual_seed(123)
    np.random.seed(123)
    assert (torch.rand(1).item(), np.random.rand()) == (after_torch, after_np)


def test_resume_after_interrupt_matches_uninterrupted_run(smoke_config, digits, tmp_path):
    cfg = smoke_config("la", "epochs=3", "mixup=0.5", "drop_path=0.1")
    full = fit(cfg, digits, tmp_path / "full")

    interrupt_after(cfg, digits, tmp_path / "cut", 2)
    resumed = fit(cfg, digits, tmp_path / "cut")
    assert resumed.resumed_from_epoch == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.results["last"]["correct"] == full.results["last"]["correct"]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(
        [h["train_loss"] for h in full.history], rel=1e-6
    )


def _test_evaluations(monkeypatch, digits) -> list:
    """Records each evaluation of the test set (by its size) made through ``Classify.evaluate``."""
    from ltbench.training.objectives import Classify

    seen, evaluate = [], Classify.evaluate

    def counted(self, batches, batch_size, logits_out=None):
        out = evaluate(self, batches, batch_size, logits_out)
        if len(batches) == len(digits.test):
            seen.append(out["correct"])
        return out

    monkeypatch.setattr(Classify, "evaluate", counted)
    return seen


def test_best_val_is_its_epochs_weights_tested_once_after_the_last_epoch(smoke_config, digits, tmp_path, monkeypatch):
    # The validation set picks epoch 3 of 4. The test set sees those weights once, after the
    # last epoch, and gives exactly what they give; the run ends on the last epoch's weights.
    from ltbench.training.checkpoints import CHECKPOINT
    from ltbench.training.loop import Dependencies, build_objective, make_batches

    cfg = smoke_config("ce", "epochs=4")
    weights = {}

    def keep_weights(epoch, total, row):
        weights[epoch] = torch.load(tmp_path / CHECKPOINT, weights_only=True)["model"]

    tested = _test_evaluations(monkeypatch, digits)
    result = fit(cfg, digits, tmp_path, on_epoch=keep_weights)
    best = result.results["best_val"]
    assert best["epoch"] == 3 and result.results["last"]["epoch"] == 4
    assert len(tested) == 2  # last, then the chosen epoch: not once per improvement

    cpu = torch.device("cpu")
    objective = build_objective(cfg, digits, cpu, Dependencies())
    objective.model.load_state_dict(weights[3])
    logits: dict = {}
    assert objective.evaluate(make_batches(digits, digits.test, cfg, cpu), 512, logits)["correct"] == best["correct"]
    stored = np.load(tmp_path / "logits.npz", allow_pickle=False)
    np.testing.assert_array_equal(stored["e3_test_logits"], logits["logits"].numpy())
    assert not np.array_equal(stored["e3_test_logits"], stored["e4_test_logits"])
    final = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert final["best_model"] is None
    for k, v in weights[4].items():
        assert torch.equal(final["model"][k], v), k


def test_a_run_resumed_between_its_best_and_last_epoch_tests_the_best_weights(smoke_config, digits, tmp_path):
    # Cut after epoch 3 (the chosen one): epoch 4 moves the weights on, so the chosen ones
    # come from the checkpoint.
    cfg = smoke_config("ce", "epochs=4")
    full = fit(cfg, digits, tmp_path / "full")
    interrupt_after(cfg, digits, tmp_path / "cut", 3)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["best_model"] is not None
    resumed = fit(cfg, digits, tmp_path / "cut")
    assert resumed.resumed_from_epoch == 3
    for selection in ("best_val", "last"):
        assert resumed.results[selection]["correct"] == full.results[selection]["correct"]
    assert resumed.logits["selections"] == full.logits["selections"] == {"best_val": "e3", "last": "e4"}


def test_nan_loss_is_stored_as_failed(smoke_config, tmp_path, monkeypatch):
    class NanLoss(torch.nn.Module):
        def forward(self, logits, target):
            return logits.sum() * float("nan")

    monkeypatch.setattr("ltbench.training.losses.build_loss", lambda *a, **k: NanLoss())
    spec = plan_runs(["ce"], ["digits_lt"], "smoke", out_dir=tmp_path)[0]
    store = ResultStore(tmp_path / "s.db")
    record = execute_run(spec, store, "cpu")
    assert record["status"] == "failed"
    assert "NonFiniteLoss" in record["error"] and "lower train.lr" in record["error"]
    assert store.status(spec.run_id) == "failed"
    assert store.records() == []  # never reported as a result
    assert "metrics" not in store.get(spec.run_id)


def test_run_that_cannot_start_writes_nothing(tmp_path):
    spec = plan_runs(["ce"], ["digits_lt"], "smoke", overrides=["n_max=1000"], out_dir=tmp_path)[0]
    store = ResultStore(tmp_path / "s.db")
    with pytest.raises(
        RunSetupError, match="class 0 has 118 images, but the long tail asks for 1000; lower longtail.n_max"
    ):
        execute_run(spec, store, "cpu")
    assert store.records(status=None) == []
    assert not (spec.run_dir / "record.json").exists()


def test_bad_patch_size_for_image(smoke_config, digits, tmp_path):
    with pytest.raises(ValueError, match="not a multiple of patch_size 3"):
        fit(smoke_config("ce", "patch_size=3"), digits, tmp_path)
