"""The order of runs comes from how long finished runs of their kind took per epoch, not from
epoch counts alone (ltbench.execution.cost)."""

import dataclasses

import pytest

from ltbench.execution.cost import CostModel, epochs_guess
from ltbench.execution.pool import schedule_order
from ltbench.planning.sweep import plan_runs


def _finished(spec, seconds_per_epoch: float, epochs: int) -> dict:
    c = spec.config
    train = {k: getattr(c.train, k) for k in ("img_size", "views", "batch_size", "embed_dim", "depth", "cnn_depth")}
    train.update(num_experts=c.train.num_experts, sam_rho=c.train.sam_rho)
    return {
        "status": "done",
        "dataset": c.data.name,
        "config": {"method": {"model": c.method.model}, "train": train},
        "history": [{"epoch": e} for e in range(1, epochs + 1)],
        "timings": {"train_seconds": seconds_per_epoch * epochs},
    }


@pytest.fixture(scope="module")
def vit_and_cnn(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    vit, cnn = plan_runs(["ce", "cnn_ce"], ["digits_lt"], "smoke", [0], out_dir=out)
    return vit, cnn


def test_learned_seconds_per_epoch_decide_the_order(vit_and_cnn):
    vit, cnn = vit_and_cnn
    # By epochs alone, the run with more epochs goes first.
    config = dataclasses.replace(cnn.config, train=dataclasses.replace(cnn.config.train, epochs=40))
    long_cnn = dataclasses.replace(cnn, config=config)
    assert epochs_guess(long_cnn) > epochs_guess(vit)
    assert schedule_order([vit, long_cnn])[0] is long_cnn
    # Finished runs say an epoch of the ViT takes 20x the CNN's: the ViT goes first.
    cost = CostModel.from_records([_finished(vit, 2.0, 3), _finished(cnn, 0.1, 5)])
    assert cost(vit) == pytest.approx(2.0 * vit.config.train.epochs)
    assert cost(long_cnn) == pytest.approx(0.1 * 40)
    assert schedule_order([vit, long_cnn], cost)[0] is vit


def test_kinds_never_seen_take_the_median_rate_and_failed_runs_teach_nothing(vit_and_cnn):
    vit, cnn = vit_and_cnn
    failed = {**_finished(cnn, 99.0, 2), "status": "failed"}
    cost = CostModel.from_records([_finished(vit, 3.0, 2), failed])
    assert list(cost.rates.values()) == [3.0]
    assert cost(cnn) == pytest.approx(3.0 * cnn.config.train.epochs)  # unknown kind: the median rate
    assert CostModel.from_records([])(cnn) == epochs_guess(cnn)  # nothing finished: the epoch count


def test_a_bigger_model_of_the_same_family_does_not_take_the_small_ones_rate(vit_and_cnn):
    vit, _ = vit_and_cnn
    wide = dataclasses.replace(
        vit, config=dataclasses.replace(vit.config, train=dataclasses.replace(vit.config.train, embed_dim=384))
    )
    cost = CostModel.from_records([_finished(vit, 0.5, 2), _finished(wide, 8.0, 2)])
    assert cost(wide) == pytest.approx(8.0 * wide.config.train.epochs)
    assert cost(vit) == pytest.approx(0.5 * vit.config.train.epochs)
