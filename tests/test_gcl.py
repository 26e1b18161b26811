"""GCL (Gaussian clouded logits): the loss by hand on tiny cases, and its two stages run."""

import math

import pytest
import torch

from ltbench.training.losses import build_loss


def test_without_noise_it_is_the_cross_entropy_of_the_scaled_margin_logits():
    loss = build_loss("gcl", [100, 10, 1], m=0.1, s=2.0, noise_mul=0.0)
    cos = torch.tensor([[0.5, 0.2, -0.1]])
    z = [2.0 * (0.5 - 0.1), 2.0 * 0.2, 2.0 * -0.1]  # the true class (0) loses m, then scale s
    by_hand = -(z[0] - math.log(sum(math.exp(v) for v in z)))
    assert float(loss(cos, torch.tensor([0]))) == pytest.approx(by_hand, rel=1e-6)


def test_the_focal_form_weighs_by_one_minus_the_true_probability():
    loss = build_loss("gcl", [5, 5], m=0.0, s=1.0, noise_mul=0.0, gamma=1.0)
    cos = torch.tensor([[0.3, -0.3]])
    p = math.exp(0.3) / (math.exp(0.3) + math.exp(-0.3))
    assert float(loss(cos, torch.tensor([0]))) == pytest.approx((1 - p) * -math.log(p), rel=1e-6)


def test_the_rarest_class_is_clouded_most_and_the_head_class_not_at_all():
    counts = [1000, 100, 10]
    loss = build_loss("gcl", counts, m=0.0, s=30.0, noise_mul=0.5)
    gap = [math.log(1000) - math.log(n) for n in counts]
    assert loss.cloud.tolist() == pytest.approx([g / gap[-1] for g in gap])  # 0, 0.5, 1
    cos = torch.tensor([[0.4, 0.1, 0.2], [0.0, 0.3, 0.6]])
    y = torch.tensor([0, 2])
    torch.manual_seed(7)
    got = loss(cos, y)
    torch.manual_seed(7)  # the same draw, by hand: |N(0, 1/3)| clipped to [0, 1]
    delta = (torch.randn(2, 3) / 3).clamp(-1, 1).abs()
    z = 30.0 * (cos - 0.5 * delta * torch.tensor([0.0, 0.5, 1.0]))
    assert float(got) == pytest.approx(float(torch.nn.functional.cross_entropy(z, y)), rel=1e-6)


def test_equal_counts_leave_no_cloud_and_bad_settings_are_refused():
    assert build_loss("gcl", [7, 7, 7]).cloud.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="noise_mul"):
        build_loss("gcl", [3, 1], noise_mul=-1.0)


def test_gcl_stage_two_trains_stage_one_cosine_classifier_on_a_frozen_backbone(tmp_path):
    from ltbench import api

    records = api.run(
        methods=["cnn_gcl"], data=["digits_lt"], budget="smoke", out_dir=tmp_path, store=tmp_path / "s.db", jobs=1
    )
    by_method = {r["method"]: r for r in records}
    assert by_method["cnn_gcl"]["status"] == "done"
    assert by_method["cnn_gcl"]["needs_selection"]["backbone"]["run_id"] == by_method["cnn_gcl_stage1"]["run_id"]
