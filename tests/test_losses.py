"""Each loss against values worked out by hand with math, not with the same torch calls."""

import math

import pytest
import torch

from ltbench.training.losses import build_loss, list_losses, posthoc_logit_adjust

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
    with pytest.raises(ValueError, match=r"Did you mean 'bal_bce'.*Valid: ") as e:
        build_loss("bal_bcee", COUNTS)
    assert f"Valid: {', '.join(list_losses())}" in str(e.value)
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
    from ltbench.training.losses import drw_weights

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


# ---- focal, class-balanced focal, CE-DRW: two classes, z = [0, ln 3], so p = [1/4, 3/4].
Z2 = [[0.0, math.log(3.0)], [0.0, math.log(3.0)]]
Y2 = [0, 1]  # p_y = 1/4, then 3/4
# counts [3, 1] with beta 0.5: raw (1 - .5) / (1 - .5^n) = 4/7 and 1; scaled to sum to 2: 8/11, 14/11
W2 = [8 / 11, 14 / 11]


def z2():
    return torch.tensor(Z2, dtype=torch.float64)


def test_two_class_hand_values():
    p = torch.softmax(z2()[0], 0).tolist()
    assert p == pytest.approx([0.25, 0.75], rel=1e-12)
    assert (0.75**2 * math.log(4) + 0.25**2 * math.log(4 / 3)) / 2 == pytest.approx(0.39888535, rel=1e-7)
    assert build_loss("ce_drw", [3, 1], beta=0.5).weights.tolist() == pytest.approx(W2, rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 0.5])
def test_focal_by_hand(gamma):
    loss = build_loss("focal", [3, 1], gamma=gamma).double()
    rows = [0.75**gamma * math.log(4), 0.25**gamma * math.log(4 / 3)]  # (1 - p_y)^g * -log p_y
    assert loss(z2(), torch.tensor(Y2)).item() == pytest.approx(sum(rows) / 2, rel=1e-9)
    # soft targets [0.5, 0.5]: each class's term with its own probability
    soft = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    row = 0.5 * 0.75**gamma * math.log(4) + 0.5 * 0.25**gamma * math.log(4 / 3)
    assert loss(z2(), soft).item() == pytest.approx(row, rel=1e-9)
    if gamma == 2.0:
        assert loss(z2(), torch.tensor(Y2)).item() == pytest.approx(0.39888535, rel=1e-7)
    if gamma == 0.0:  # focal with gamma 0 is CE
        assert loss(logits(), torch.tensor(Y)).item() == pytest.approx(expected("ce", TARGETS["hard"]), rel=1e-9)


def test_focal_default_gamma_is_lins():
    loss = build_loss("focal", [3, 1]).double()
    assert loss.gamma == 2.0
    assert loss(z2(), torch.tensor(Y2)).item() == pytest.approx(0.39888535, rel=1e-7)


def test_cb_focal_by_hand():
    loss = build_loss("cb_focal", [3, 1], beta=0.5, gamma=1.0).double()
    rows = [W2[0] * 0.75 * math.log(4), W2[1] * 0.25 * math.log(4 / 3)]
    assert loss(z2(), torch.tensor(Y2)).item() == pytest.approx(sum(rows) / 2, rel=1e-6)  # / batch, as Cui et al.
    assert (loss.beta, loss.gamma) == (0.5, 1.0)
    default = build_loss("cb_focal", COUNTS)
    assert (default.beta, default.gamma) == (0.9999, 1.0)
    beta = 0.9999
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    assert default.weights.tolist() == pytest.approx([3 * r / sum(raw) for r in raw], rel=1e-6)
    soft = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    row = 0.5 * W2[0] * 0.75 * math.log(4) + 0.5 * W2[1] * 0.25 * math.log(4 / 3)
    assert loss(z2(), soft).item() == pytest.approx(row, rel=1e-6)


def test_ce_drw_by_hand_and_through_the_drw_epoch():
    from ltbench.training.objectives import Classify

    loss = build_loss("ce_drw", [3, 1], beta=0.5).double()
    ce = [math.log(4), math.log(4 / 3)]  # -log p_y
    assert loss(z2(), torch.tensor(Y2)).item() == pytest.approx(sum(ce) / 2, rel=1e-9)
    loss.set_reweight(True)
    weighted = (W2[0] * ce[0] + W2[1] * ce[1]) / (W2[0] + W2[1])  # = (8 ln 4 + 14 ln 4/3) / 22
    assert weighted == pytest.approx((8 * math.log(4) + 14 * math.log(4 / 3)) / 22, rel=1e-12)
    assert loss(z2(), torch.tensor(Y2)).item() == pytest.approx(weighted, rel=1e-6)
    # the same as F.cross_entropy with weight=, the LDAM code's CE-DRW
    ref = torch.nn.functional.cross_entropy(z2(), torch.tensor(Y2), weight=torch.tensor(W2, dtype=torch.float64))
    assert loss(z2(), torch.tensor(Y2)).item() == pytest.approx(ref.item(), rel=1e-6)
    # Classify switches it on after drw_epoch (epochs count from 1)
    loss.set_reweight(False)
    model = torch.nn.Identity()
    clf = Classify(model, loss, 2, drw_epoch=2)
    x = z2().float()
    got = [clf.loss(x, torch.tensor(Y2), epoch).item() for epoch in (1, 2, 3)]
    assert got == pytest.approx([sum(ce) / 2, sum(ce) / 2, weighted], rel=1e-5)


def test_every_loss_takes_hard_and_soft_targets_and_has_gradients():
    from ltbench.training.losses import loss_class

    for name in list_losses():
        cls = loss_class(name)
        if any(getattr(cls, flag, False) for flag in ("distills", "multi_expert", "contrastive")):
            continue  # not a loss of one (B, C) logit matrix: tested in their own files
        loss = build_loss(name, COUNTS).double()
        torch.manual_seed(0)  # a loss that draws noise (GCL) draws the same for both target forms
        hard = loss(logits(), torch.tensor(Y)).item()
        torch.manual_seed(0)
        soft = loss(logits(), torch.tensor([onehot(y) for y in Y], dtype=torch.float64)).item()
        assert soft == pytest.approx(hard, rel=1e-12), name
        z = logits().requires_grad_()
        loss(z, torch.tensor(Y)).backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0, name


def test_focal_parameter_errors():
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        build_loss("focal", COUNTS, gamma=-1.0)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        build_loss("cb_focal", COUNTS, beta=1.0)
