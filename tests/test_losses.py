"""Each loss against values worked out by hand with math, not with the same torch calls."""

import math

import pytest
import torch

from ltbench.losses import build_loss, list_losses, posthoc_logit_adjust

Z = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
Y = [0, 2]
COUNTS = [6, 3, 1]
PI = [0.6, 0.3, 0.1]


def logits():
    return torch.tensor(Z, dtype=torch.float64)


def ce_row(z, t):
    """-sum_j t_j log softmax(z)_j, by hand."""
    lse = math.log(sum(math.exp(v) for v in z))
    return -sum(tj * (zj - lse) for zj, tj in zip(z, t))


def bce_row(z, t):
    """sum_j softplus(z_j) - t_j z_j, by hand."""
    return sum(math.log1p(math.exp(zj)) - tj * zj for zj, tj in zip(z, t))


def onehot(y, c=3):
    return [1.0 if j == y else 0.0 for j in range(c)]


def smooth(y, eps=0.1, c=3):
    return [1 - eps + eps / c if j == y else eps / c for j in range(c)]


def mixed(a, b, lam=0.7, c=3):
    return [lam * x + (1 - lam) * y for x, y in zip(onehot(a, c), onehot(b, c))]


TARGETS = {
    "hard": [onehot(0), onehot(2)],
    "smoothed": [smooth(0), smooth(2)],
    "mixed": [mixed(0, 1), mixed(2, 0)],
}


def expected(name, targets, tau=1.0):
    if name == "ce":
        rows = [ce_row(z, t) for z, t in zip(Z, targets)]
    elif name == "la":
        rows = [ce_row([zj + tau * math.log(p) for zj, p in zip(z, PI)], t) for z, t in zip(Z, targets)]
    elif name == "bce":
        rows = [bce_row(z, t) for z, t in zip(Z, targets)]
    else:  # bal_bce: shift by tau * log(pi / (1 - pi))
        rows = [bce_row([zj + tau * math.log(p / (1 - p)) for zj, p in zip(z, PI)], t) for z, t in zip(Z, targets)]
    return sum(rows) / len(rows)


@pytest.mark.parametrize("name", ["ce", "la", "bce", "bal_bce"])
@pytest.mark.parametrize("kind", ["hard", "smoothed", "mixed"])
def test_loss_by_hand(name, kind):
    loss = build_loss(name, COUNTS).double()
    target = torch.tensor(Y) if kind == "hard" else torch.tensor(TARGETS[kind], dtype=torch.float64)
    assert loss(logits(), target).item() == pytest.approx(expected(name, TARGETS[kind]), rel=1e-6)


def test_hand_values_pinned():
    # A few numbers written out, so the helpers above are themselves checked.
    assert ce_row(Z[0], onehot(0)) == pytest.approx(0.40760596, rel=1e-7)
    assert bce_row(Z[0], onehot(0)) == pytest.approx(0.31326169 + 0.69314718 + 0.31326169, rel=1e-7)
    assert math.log(0.6 / 0.4) == pytest.approx(0.40546511, rel=1e-7)


@pytest.mark.parametrize("name", ["la", "bal_bce"])
def test_tau(name):
    target = torch.tensor(Y)
    got = build_loss(name, COUNTS, tau=1.05).double()(logits(), target).item()
    assert got == pytest.approx(expected(name, TARGETS["hard"], tau=1.05), rel=1e-6)
    plain = "ce" if name == "la" else "bce"
    zero = build_loss(name, COUNTS, tau=0.0).double()(logits(), target).item()
    assert zero == pytest.approx(build_loss(plain, COUNTS).double()(logits(), target).item(), rel=1e-12)


def test_bal_bce_bias_by_hand():
    # counts [6, 3, 1]: pi = [.6, .3, .1], b_j = log(pi_j) - log(1 - pi_j)
    b = [math.log(0.6) - math.log(0.4), math.log(0.3) - math.log(0.7), math.log(0.1) - math.log(0.9)]
    assert b == pytest.approx([0.40546511, -0.84729786, -2.19722458], rel=1e-7)
    assert build_loss("bal_bce", COUNTS).shift.tolist() == pytest.approx(b, rel=1e-6)
    assert build_loss("bal_bce", COUNTS, tau=1.05).shift.tolist() == pytest.approx([1.05 * v for v in b], rel=1e-6)


@pytest.mark.parametrize("c", [2, 4, 10])
def test_bal_bce_bias_on_balanced_counts_is_constant(c):
    shift = build_loss("bal_bce", [5] * c).shift.tolist()
    pi = 1 / c
    # log(pi / (1 - pi)) = log((1/C) / ((C-1)/C)) = log(1 / (C-1)); zero for two classes
    assert shift == pytest.approx([math.log(pi / (1 - pi))] * c, rel=1e-6, abs=1e-7)
    assert shift == pytest.approx([math.log(1 / (c - 1))] * c, rel=1e-6, abs=1e-7)
    assert max(shift) - min(shift) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", ["ce", "la", "bce", "bal_bce", "ldam"])
def test_integer_labels_equal_onehot_targets(name):
    loss = build_loss(name, COUNTS).double()
    hard = loss(logits(), torch.tensor(Y)).item()
    soft = loss(logits(), torch.tensor([onehot(y) for y in Y], dtype=torch.float64)).item()
    assert soft == pytest.approx(hard, rel=1e-12)
    assert loss(logits(), torch.tensor(Y, dtype=torch.int32)).item() == pytest.approx(hard, rel=1e-12)


def test_every_loss_is_listed_and_keeps_raw_logits_at_inference():
    assert {"ce", "la", "bce", "bal_bce"} <= set(list_losses())
    for name in list_losses():
        assert build_loss(name, COUNTS).adjusts_inference is False


@pytest.mark.parametrize("name", ["la", "bal_bce"])
def test_prior_is_a_buffer_that_moves(name):
    loss = build_loss(name, COUNTS)
    assert "shift" in dict(loss.named_buffers()) and "shift" in loss.state_dict()
    assert loss.to(torch.float64).shift.dtype == torch.float64
    if torch.cuda.is_available():
        cuda = loss.to("cuda")
        assert cuda.shift.is_cuda
        z = logits().cuda()
        assert cuda(z, torch.tensor(Y).cuda()).item() == pytest.approx(expected(name, TARGETS["hard"]), rel=1e-6)


def test_bce_family_sums_classes_and_averages_batch():
    for name in ("bce", "bal_bce"):
        loss = build_loss(name, COUNTS).double()
        one = loss(logits(), torch.tensor(Y)).item()
        twice = loss(torch.cat([logits(), logits()]), torch.tensor(Y + Y)).item()
        assert twice == pytest.approx(one, rel=1e-12)  # mean over the batch
    # Sum over classes: with zero logits each class costs log 2, so the loss is C log 2.
    for c in (2, 10):
        assert build_loss("bce", [1] * c)(torch.zeros(3, c), torch.zeros(3, dtype=torch.long)).item() == pytest.approx(
            c * math.log(2)
        )


def test_gradients_and_device_move():
    for name in ("ce", "la", "bce", "bal_bce", "ldam"):
        loss = build_loss(name, COUNTS).to(torch.float64)
        z = logits().requires_grad_()
        loss(z, torch.tensor(Y)).backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_posthoc_logit_adjustment():
    adjusted = posthoc_logit_adjust(logits(), COUNTS)
    assert adjusted[0].tolist() == pytest.approx([1 - math.log(0.6), -math.log(0.3), -1 - math.log(0.1)], rel=1e-6)
    half = posthoc_logit_adjust(logits(), torch.tensor(COUNTS), tau=0.5)
    assert half[1].tolist() == pytest.approx(
        [0.5 - 0.5 * math.log(0.6), 0.5 - 0.5 * math.log(0.3), -0.5 * math.log(0.1)], rel=1e-6
    )
    # row 1 raw [.5, .5, 0] predicts class 0; adjusted [1.01, 1.70, 2.30] predicts the rare class 2.
    # row 0 adjusted [1.51, 1.20, 1.30] keeps class 0.
    assert logits().argmax(1).tolist() == [0, 0]
    assert adjusted.argmax(1).tolist() == [0, 2]


def test_errors():
    with pytest.raises(ValueError, match=r"Did you mean 'bal_bce'.*Valid: bal_bce, bce, ce, deit_lt, la, ldam"):
        build_loss("bal_bcee", COUNTS)
    with pytest.raises(ValueError, match=r"loss 'ce' takes no parameter 'tau'"):
        build_loss("ce", COUNTS, tau=1.0)
    with pytest.raises(ValueError, match=r"'taux'. Did you mean 'tau'"):
        build_loss("la", COUNTS, taux=1.0)
    with pytest.raises(ValueError, match="class 1 has training count 0"):
        build_loss("la", [3, 0, 1])
    with pytest.raises(ValueError, match="class 2 has training count -1"):
        build_loss("bal_bce", [3, 1, -1])
    with pytest.raises(ValueError, match="class 0 has training count nan"):
        build_loss("ce", [float("nan"), 1])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        build_loss("ce", [])


def test_drw_weights_by_hand():
    from ltbench.losses import drw_weights

    beta = 0.9999
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    expected = [3 * r / sum(raw) for r in raw]
    assert drw_weights(COUNTS).tolist() == pytest.approx(expected, rel=1e-6)
    assert sum(drw_weights([5000, 50]).tolist()) == pytest.approx(2.0)


def test_ldam_by_hand():
    # margins proportional to n^-1/4, the largest (rarest class) = 0.5
    m = [n**-0.25 for n in COUNTS]
    delta = [0.5 * v / max(m) for v in m]
    loss = build_loss("ldam", COUNTS, s=30.0).double()
    rows = []
    for z, y in zip(Z, Y):
        shifted = [30.0 * (zj - (delta[j] if j == y else 0.0)) for j, zj in enumerate(z)]
        rows.append(ce_row(shifted, onehot(y)))
    assert loss(logits(), torch.tensor(Y)).item() == pytest.approx(sum(rows) / 2, rel=1e-6)
    # DRW: weighted mean with the true class's effective-number weight
    beta = 0.9999
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    w = [3 * r / sum(raw) for r in raw]
    loss.set_reweight(True)
    expected = (w[0] * rows[0] + w[2] * rows[1]) / (w[0] + w[2])
    assert loss(logits(), torch.tensor(Y)).item() == pytest.approx(expected, rel=1e-6)


def test_deit_lt_loss_by_hand():
    loss = build_loss("deit_lt", COUNTS).double()
    cls, dist = logits(), torch.tensor([[0.0, 2.0, 1.0], [1.0, 0.0, 3.0]], dtype=torch.float64)
    teacher = torch.tensor([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05]], dtype=torch.float64)  # argmax 1, 0
    soft = torch.tensor(TARGETS["mixed"], dtype=torch.float64)
    cls_term = sum(ce_row(z, t) for z, t in zip(Z, TARGETS["mixed"])) / 2
    d = [ce_row([0.0, 2.0, 1.0], onehot(1)), ce_row([1.0, 0.0, 3.0], onehot(0))]
    got = loss(cls, dist, soft, teacher, reweight=False).item()
    assert got == pytest.approx(0.5 * cls_term + 0.5 * (d[0] + d[1]) / 2, rel=1e-6)
    beta = 0.9999
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    w = [3 * r / sum(raw) for r in raw]
    weighted = (w[1] * d[0] + w[0] * d[1]) / (w[1] + w[0])  # weights of the teacher's classes
    got = loss(cls, dist, soft, teacher, reweight=True).item()
    assert got == pytest.approx(0.5 * cls_term + 0.5 * weighted, rel=1e-6)
    # hard labels for the CLS term work too
    assert loss(cls, dist, torch.tensor(Y), teacher).item() == pytest.approx(
        0.5 * sum(ce_row(z, onehot(y)) for z, y in zip(Z, Y)) / 2 + 0.5 * (d[0] + d[1]) / 2, rel=1e-6
    )
