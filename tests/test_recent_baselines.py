"""The 2021-2022 baselines' pieces, by hand on tiny cases: LADE, label-aware smoothing, the
weight-balancing code's class-balanced loss, MaxNorm, and the fine-tuned classifier stage."""

import math

import pytest
import torch

from ltbench.config.specs import RecipeError
from ltbench.planning.catalog import load_catalog
from ltbench.training.losses import LOSSES, build_loss, label_aware_smoothing
from ltbench.training.models.resnet_cifar import CifarResNet
from ltbench.training.objectives import FinetuneClassifier, clamp_class_norms


def test_lade_is_pc_softmax_plus_alpha_lader_by_hand():
    counts, alpha, lam = [3, 1], 0.5, 0.2
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    pi = [0.75, 0.25]
    # PC softmax: CE of z + log pi.
    pc = 0.0
    for row, label in zip(z.tolist(), y.tolist()):
        adj = [v + math.log(p) for v, p in zip(row, pi)]
        pc += -(adj[label] - math.log(sum(math.exp(a) for a in adj)))
    pc /= 2
    # LADER: class 0 has the first image (z=1), class 1 the second (z=1): first_c = 1 for both.
    second0 = math.log((math.exp(1 - math.log(0.75 * 2)) + math.exp(0 - math.log(0.75 * 2))) / 2)
    second1 = math.log((math.exp(0 - math.log(0.25 * 2)) + math.exp(1 - math.log(0.25 * 2))) / 2)
    lader = -(0.75 * (1 - second0 - lam * second0**2) + 0.25 * (1 - second1 - lam * second1**2))
    loss = build_loss("lade", counts, alpha=alpha, remine_lambda=lam)
    assert float(loss(z, y)) == pytest.approx(pc + alpha * lader, abs=1e-6)
    assert float(loss.lader(z, y)) == pytest.approx(lader, abs=1e-6)
    # alpha 0: Balanced Softmax, i.e. the logit-adjusted loss with tau 1.
    plain = build_loss("lade", counts, alpha=0.0)
    assert float(plain(z, y)) == pytest.approx(float(build_loss("la", counts, tau=1.0)(z, y)), abs=1e-6)


def test_lader_ignores_a_class_absent_from_the_batch_in_its_first_term():
    loss = build_loss("lade", [2, 1, 1], remine_lambda=0.0)
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 1])  # class 2 absent: its first term is 0, its second still counts
    pi = [0.5, 0.25, 0.25]
    second = [math.log(sum(math.exp(z[i, c].item() - math.log(pi[c] * 3)) for i in range(2)) / 2) for c in range(3)]
    want = -(0.5 * (2 - second[0]) + 0.25 * (1 - second[1]) + 0.25 * (0 - second[2]))
    assert float(loss.lader(z, y)) == pytest.approx(want, abs=1e-6)


def test_label_aware_smoothing_shapes_by_hand():
    counts = [4, 2, 1]  # x = (n - 1) / 3 = 1, 1/3, 0
    lin = label_aware_smoothing(counts, 0.3, 0.0, "linear")
    assert lin.tolist() == pytest.approx([0.3, 0.1, 0.0])
    concave = label_aware_smoothing(counts, 0.3, 0.0, "concave")
    assert concave.tolist() == pytest.approx([0.3, 0.3 * math.sin(math.pi / 6), 0.0])
    convex = label_aware_smoothing(counts, 0.4, 0.1, "convex")
    assert convex.tolist() == pytest.approx([0.4, 0.1 + 0.3 * (1 - math.cos(math.pi / 6)), 0.1])
    with pytest.raises(ValueError, match="shape"):
        label_aware_smoothing(counts, 0.3, 0.0, "wavy")


def test_las_loss_is_the_codes_smoothing_by_hand():
    counts = [4, 2, 1]
    z = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.5, 1.0]])
    y = torch.tensor([0, 2])
    eps = [0.3, 0.1, 0.0]  # linear, head 0.3, tail 0
    total = 0.0
    for row, label in zip(z.tolist(), y.tolist()):
        lse = math.log(sum(math.exp(v) for v in row))
        nll = [lse - v for v in row]
        e = eps[label]
        total += (1 - e) * nll[label] + e * sum(nll) / 3  # eps spread over all 3 classes (the code)
    loss = build_loss("las", counts, smooth_head=0.3, smooth_tail=0.0, shape="linear")
    assert float(loss(z, y)) == pytest.approx(total / 2, abs=1e-6)
    hard_t = torch.nn.functional.one_hot(y, 3).float()  # a one-hot soft target is the same sample
    assert float(loss(z, hard_t)) == pytest.approx(total / 2, abs=1e-6)


def test_cb_softmax_bce_is_the_weight_balancing_codes_loss_by_hand():
    counts, beta = [3, 1], 0.9
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    w = [v / sum(raw) * 2 for v in raw]
    z = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([1])
    p1 = math.exp(0) / (math.exp(1) + math.exp(0))
    p0 = 1 - p1
    # BCE of the softmax probabilities against one-hot [0, 1], each term weighted by w[y], mean over classes.
    want = w[1] * (-math.log(1 - p0) - math.log(p1)) / 2
    assert float(build_loss("cb_softmax_bce", counts, beta=beta)(z, y)) == pytest.approx(want, abs=1e-6)


def test_max_norm_projects_only_the_long_class_vectors():
    head = torch.nn.Linear(2, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 4.0], [0.06, 0.08], [0.0, 0.0]]))
        head.bias.copy_(torch.tensor([5.0, 5.0, 5.0]))
    model = torch.nn.Sequential()
    model.fc = head
    clamp_class_norms(model, 0.1)
    assert head.weight.flatten().tolist() == pytest.approx([0.06, 0.08, 0.06, 0.08, 0.0, 0.0])
    assert head.bias.tolist() == [5.0, 5.0, 5.0]  # the bias is not projected


def tiny_backbone() -> CifarResNet:
    torch.manual_seed(0)
    return CifarResNet(depth=8, num_classes=3, in_chans=1)


@pytest.mark.parametrize("scales", [False, True])
def test_finetuning_keeps_and_trains_the_stage_1_classifier(scales):
    model = tiny_backbone()
    old_fc = model.fc.weight.detach().clone()
    body = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    obj = FinetuneClassifier(model, torch.nn.CrossEntropyLoss(), 3, backbone_bn="train", scales=scales)
    assert torch.equal(model.fc.weight, old_fc)  # not re-initialised (cRT's difference)
    trainable = {n for n, p in obj.model.named_parameters() if p.requires_grad}
    prefix = "inner." if scales else ""
    assert trainable == {f"{prefix}fc.weight", f"{prefix}fc.bias"} | ({"scale"} if scales else set())
    obj.train_mode()
    assert model.bn1.training and model.fc.training and not model.training  # BN shift learning
    opt = torch.optim.SGD([p for p in obj.model.parameters() if p.requires_grad], lr=0.5)
    obj.loss(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), 1).backward()
    opt.step()
    assert not torch.equal(model.fc.weight, old_fc)
    after = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    weights = [k for k in body if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(body[k], after[k]) for k in weights)  # frozen weights
    assert not torch.equal(body["bn1.running_mean"], after["bn1.running_mean"])  # statistics shifted


def test_the_recent_baselines_are_registered_recipes_outside_the_main_job():
    catalog = load_catalog()
    for loss in ("lade", "las", "cb_softmax_bce"):
        assert loss in LOSSES.names()
    recent = [
        m for m in catalog.methods.names() if any(key in m for key in ("balanced_softmax", "lade", "mislas", "wb"))
    ]
    assert recent and all(not catalog.methods.get(m).in_main_job for m in recent)


def test_max_norm_must_not_be_negative(smoke_config):
    assert smoke_config("cnn_wb").train.max_norm == pytest.approx(0.1)
    with pytest.raises(RecipeError, match="max_norm"):
        smoke_config("cnn_wb", "max_norm=-1")
