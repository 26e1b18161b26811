"""Stored logits reproduce the record exactly (float32, the very tensor the statistics counted),
and a post-hoc transform runs at one precision on validation and test (issue 25, item 7)."""

import warnings

import numpy as np
import pytest
import torch

from ltbench.execution.runner import execute_run
from ltbench.planning.sweep import plan_runs
from ltbench.store.sqlite import ResultStore
from ltbench.training.logits import LOGITS_FILE, LogitKeeper, load_logits
from ltbench.training.loop import fit
from ltbench.training.objectives import Classify, PosthocTransform, logit_adjusted, tau_normalised

# float16 has 10 mantissa bits: 1 + 2**-12 rounds to 1.0 there, and stays itself in float32.
NEAR = 1.0 + 2.0**-12


def counted(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[int]:
    """Per-class correct of the stored logits' argmax, as a record stores ``correct``."""
    pred = logits.argmax(1)
    return np.bincount(labels[pred == labels], minlength=num_classes).tolist()


def balanced(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    correct = np.bincount(labels[logits.argmax(1) == labels], minlength=num_classes)
    total = np.bincount(labels, minlength=num_classes)
    present = total > 0
    return float((correct[present] / total[present]).mean())


def assert_reproduces(record: dict, num_classes: int = 10) -> None:
    """Every stored selection's test argmax gives the record's per-class ``correct`` exactly,
    and its validation argmax the recorded validation score."""
    entry = record["logits"]
    assert set(entry["selections"]) == set(record["results"]) == {"last", "best_val"}
    for sel, res in record["results"].items():
        logits = load_logits(record, sel)
        z, y = logits["test"]
        assert counted(z, y, num_classes) == list(res["correct"]), sel
        assert np.bincount(y, minlength=num_classes).tolist() == list(res["total"])
        zv, yv = logits["val"]
        if "tau" in res:  # an evaluation-only stage: val_top1 is its mean per-class accuracy
            assert balanced(zv, yv, num_classes) == pytest.approx(res["val_top1"], rel=1e-12, abs=0)
        else:  # a training run: top-1 on validation, as the trainer counts it
            correct = counted(zv, yv, num_classes)
            assert sum(correct) / max(len(yv), 1) == res["val_top1"], sel
        assert z.dtype == zv.dtype == np.float32
    assert entry["dtype"] == "float32"


def test_a_trained_run_stores_logits_that_reproduce_its_record(smoke_config, digits, tmp_path):
    # best_val (epoch 2) and last (epoch 3) at different epochs: two sets of arrays.
    result = fit(smoke_config("ce", "epochs=3"), digits, tmp_path)
    assert result.logits["selections"] == {"best_val": "e2", "last": "e3"}
    assert_reproduces({"run_id": "tiny", "run_dir": str(tmp_path), "logits": result.logits, "results": result.results})


def test_a_posthoc_stage_stores_logits_that_reproduce_its_record(tmp_path):
    # cnn_posthoc_la seed 0 on digits_lt: with float16 storage its file gave 222 correct where
    # the record counted 221 (4 of the 500 test rows tied in float16).
    store = ResultStore(tmp_path / "s.db")
    specs = plan_runs(["cnn_posthoc_la"], ["digits_lt"], "smoke", seeds=[0], out_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backbone, stage = (execute_run(spec, store, "cpu") for spec in specs)
    assert sum(stage["results"]["last"]["correct"]) == 221
    assert_reproduces(stage)
    assert_reproduces(backbone)


# ------------------------------------------------------------------------ float16 ties


class Fixed(torch.nn.Module):
    """A "model" that returns its input: the logits are the batch itself."""

    def forward(self, x):
        return x


class Rows:
    """Evaluation batches of fixed rows (what ``Classify.evaluate`` iterates)."""

    device = torch.device("cpu")

    def __init__(self, x, y):
        self.x, self.y = x, y

    def eval_batches(self, batch_size):
        for start in range(0, len(self.y), batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]


def test_logits_that_tie_in_float16_keep_their_float32_argmax(tmp_path):
    # Row 0: class 1 is ahead by 2**-12, which float16 rounds away (a tie: argmax would say 0).
    # Row 1 the other way round; row 2 a clear case.
    x = torch.tensor([[1.0, NEAR, 0.0], [NEAR, 1.0, 0.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([1, 0, 2])
    assert x.half()[0, 0] == x.half()[0, 1]  # the tie the old storage made
    kept: dict = {}
    stats = Classify(Fixed(), None, 3).evaluate(Rows(x, y), 2, kept)
    assert stats["correct"] == [1, 1, 1]
    keeper = LogitKeeper(tmp_path)
    keeper.keep(1, kept, kept)
    entry = keeper.finish({"last": {"epoch": 1}, "best_val": {"epoch": 1}})
    z, labels = load_logits({"run_id": "ties", "run_dir": str(tmp_path), "logits": entry})["test"]
    assert z.argmax(1).tolist() == x.argmax(1).tolist() == [1, 0, 2]  # float16 said [0, 0, 2]
    assert counted(z, labels, 3) == stats["correct"]
    np.testing.assert_array_equal(z, x.numpy())  # exactly, not rounded
    assert z.dtype == np.float32 and entry["dtype"] == "float32"


def test_bf16_logits_are_stored_exactly(tmp_path):
    # Under CUDA autocast the logits the statistics count are bf16 (here a "model" that returns
    # bf16 rows stands in): stored as their exact float32, beyond float16's range included.
    z = torch.tensor([[1.0, 1.0078125, -3e38], [70000.0, 0.5, 1.0], [1.0, 1.0078125, 2**-12]], dtype=torch.bfloat16)
    y = torch.tensor([1, 0, 1])
    kept: dict = {}
    stats = Classify(Fixed(), None, 3).evaluate(Rows(z, y), 2, kept)
    keeper = LogitKeeper(tmp_path)
    keeper.keep(1, kept)
    entry = keeper.finish({"last": {"epoch": 1}})
    stored, labels = load_logits({"run_id": "bf16", "run_dir": str(tmp_path), "logits": entry})["test"]
    assert stored.dtype == np.float32 and np.isfinite(stored).all()
    np.testing.assert_array_equal(stored, z.float().numpy())
    assert counted(stored, labels, 3) == stats["correct"] == [1, 2, 0]


def test_a_file_from_before_float32_storage_still_reads(tmp_path):
    # A record written with float16 logits: its entry says so, and load_logits gives them back.
    keeper = LogitKeeper(tmp_path)
    keeper.keep(1, {"logits": torch.zeros(2, 3), "labels": torch.tensor([0, 1])})
    keeper.finish({"last": {"epoch": 1}})
    old = {"e1_test_logits": np.array([[1.0, NEAR, 0.0]], np.float16), "e1_test_labels": np.array([1], np.int16)}
    with open(tmp_path / LOGITS_FILE, "wb") as f:
        np.savez(f, **old)
    # A keeper resumed over that file (nothing kept in memory) names the least precise dtype.
    entry = LogitKeeper(tmp_path).finish({"last": {"epoch": 1}})
    assert entry["dtype"] == "float16"
    z, y = load_logits({"run_id": "old", "run_dir": str(tmp_path), "logits": entry})["test"]
    assert z.dtype == np.float16 and z.tolist() == [[1.0, 1.0, 0.0]] and y.tolist() == [1]


# ------------------------------------------------------------------ one precision in post-hoc


class Backbone(torch.nn.Module):
    """A backbone with a linear ``fc``, which a PosthocTransform takes off (then it gives its input)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc = torch.nn.Linear(dim, num_classes)
        gen = torch.Generator().manual_seed(0)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=gen)

    def forward(self, x):
        return self.fc(x)


PRIOR = torch.log(torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]))


def recording(transform, exact: list):
    """``transform``, noting for each call whether it gave exactly the float32 result (the
    dtype alone does not tell: LA's ``- tau * log p`` promotes a bf16 product to float32)."""

    def run(feats, weight, bias, tau):
        z = transform(feats, weight, bias, tau)
        with torch.autocast(feats.device.type, enabled=False):
            ref = transform(feats.float(), weight.float(), None if bias is None else bias.float(), tau)
        exact.append(z.dtype == torch.float32 and torch.equal(z, ref))
        return z

    return run


TRANSFORMS = pytest.mark.parametrize(
    "transform", [logit_adjusted(PRIOR), tau_normalised], ids=["posthoc_la", "tau_norm"]
)


@TRANSFORMS
def test_the_posthoc_transform_runs_in_float32_inside_autocast(transform):
    # Evaluation runs logits() under bf16 autocast (on CUDA); choose_tau transforms in float32.
    # The test set must be transformed at validation's precision: float32 even inside autocast
    # (CPU autocast, enabled here, stands in for CUDA's: it too would run the matmul in bf16).
    stage = PosthocTransform(Backbone(16, 5), 5, transform, (0.0, 0.5, 1.0), 0.5)
    feats = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=True):
        z = stage.logits(feats)["main"]
    assert z.dtype == torch.float32  # not bf16: the transform ran outside autocast
    with torch.inference_mode():
        exact = transform(feats, stage.weight, stage.bias, 0.5)
    torch.testing.assert_close(z, exact, rtol=0, atol=0)


@TRANSFORMS
def test_choose_tau_transforms_in_float32_inside_autocast(transform):
    # choose_tau's predictions come from float32 transforms even when its caller is in autocast,
    # and so equal those made without it.
    exact: list = []
    stage = PosthocTransform(Backbone(16, 5), 5, recording(transform, exact), (0.0, 0.5, 1.0, 2.0), 1.0)
    gen = torch.Generator().manual_seed(2)
    batches = Rows(torch.randn(64, 16, generator=gen), torch.randint(0, 5, (64,), generator=gen))
    plain = stage.choose_tau(batches, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=True):
        inside = stage.choose_tau(batches, 16)
        stage.logits(batches.x)  # and the test set's transform, as evaluate calls it
    assert exact == [True] * 9
    assert inside == plain
