"""The 2021-2022 baselines' pieces, by hand on tiny cases: LADE, label-aware smoothing, the
weight-balancing code's class-balanced loss, MaxNorm, and the fine-tuned classifier stage."""

import math

import pytest
import torch

from ltbench.config.specs import RecipeError
from ltbench.planning.catalog import load_catalog
from ltbench.training.losses import LOSSES, build_loss, label_aware_smoothing
from ltbench.training.models.resnet_cifar import CifarResNet
from ltbench.training.objectives import FinetuneClassifier, MaxNorm


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


def test_max_norm_radius_is_relative_to_the_starting_norms_and_projects_only_long_vectors():
    head = torch.nn.Linear(2, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 4.0], [0.6, 0.8], [0.0, 2.0]]))  # norms 5, 1, 2
        head.bias.copy_(torch.tensor([5.0, 5.0, 5.0]))
    model = torch.nn.Sequential()
    model.fc = head
    project = MaxNorm(model, 0.25)
    assert project.radius == pytest.approx(1 + 0.25 * (5 - 1))  # n_min + 0.25 (n_max - n_min) = 2
    with torch.no_grad():
        head.weight.mul_(2)  # after a step: norms 10, 2, 4
    project(model)
    want = [1.2, 1.6, 1.2, 1.6, 0.0, 2.0]  # 10 and 4 scaled back to 2; 2 is on the radius
    assert head.weight.flatten().tolist() == pytest.approx(want)
    assert head.bias.tolist() == [5.0, 5.0, 5.0]  # the bias is not projected
    assert MaxNorm(model, 0.25).radius == pytest.approx(project.radius)  # a second build agrees


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
    for bad in ("-1", "1.5"):
        with pytest.raises(RecipeError, match="max_norm"):
            smoke_config("cnn_wb", f"max_norm={bad}")


def _ce(logits, label):
    return -(logits[label] - math.log(sum(math.exp(v) for v in logits)))


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_ride_loss_by_hand():
    counts, s, lam = [3, 1], 2.0, -0.2
    m = [0.5 * 3**-0.25, 0.5]  # n^(-1/4), the largest 0.5
    z = torch.tensor([[[0.5, 0.1]], [[0.2, 0.4]]])  # 2 experts, 1 image, 2 classes (cosines)
    y = torch.tensor([0])
    scaled = [[s * v for v in z[e, 0].tolist()] for e in range(2)]
    mean = [(a + b) / 2 for a, b in zip(*scaled)]
    p_mean = _softmax(mean)
    want = 0.0
    for ze in scaled:
        want += _ce([ze[0] - s * m[0], ze[1]], 0)
        q = _softmax(ze)
        want += lam * sum(p * (math.log(p) - math.log(qq)) for p, qq in zip(p_mean, q))
    loss = build_loss("ride", counts, s=s, diversity=lam)
    assert float(loss(z, y)) == pytest.approx(want, abs=1e-6)
    # After the DRW epoch: per-class temperatures t0 (C pi f + 1 - f) / max.
    pi, f = [0.75, 0.25], 0.05
    w = [2 * p * f + 1 - f for p in pi]
    assert loss.temp_weights.tolist() == pytest.approx([v / max(w) for v in w])
    with pytest.raises(ValueError, match="cnn_experts"):
        loss(z[0], y)  # one slice: not a multi-expert model


def test_sade_inverse_prior_and_loss_by_hand():
    from ltbench.training.expert_losses import inverse_prior

    prior = torch.tensor([0.5, 1 / 6, 1 / 3])  # ranks 0, 2, 1
    assert inverse_prior(prior).tolist() == pytest.approx([1 / 6, 0.5, 1 / 3])
    z = torch.tensor([[[1.0, 0.0, 0.5]], [[0.2, 0.3, 0.1]], [[0.0, 1.0, 0.0]]])
    y = torch.tensor([1])
    lp = [math.log(p) for p in prior.tolist()]
    li = [math.log(p) for p in (1 / 6, 0.5, 1 / 3)]
    want = _ce(z[0, 0].tolist(), 1)
    want += _ce([a + b for a, b in zip(z[1, 0].tolist(), lp)], 1)
    want += _ce([a + b - 2 * c for a, b, c in zip(z[2, 0].tolist(), lp, li)], 1)
    loss = build_loss("sade", [3, 1, 2], s=1.0, tau=2.0)
    assert float(loss(z, y)) == pytest.approx(want, abs=1e-6)


def test_a_multi_expert_resnet_shares_its_early_layers_and_reports_each_expert():
    from ltbench.training.models.multi_expert import MultiExpertResNet
    from ltbench.training.objectives import MultiExpert

    torch.manual_seed(0)
    model = MultiExpertResNet(depth=8, num_classes=4, in_chans=1, num_experts=3, shared_stages=1, normed=True)
    x = torch.randn(5, 1, 8, 8)
    out = model(x)
    assert out.shape == (3, 5, 4)
    assert len(model.experts) == 3 and not torch.equal(out[0], out[1])  # own weights per expert
    shared = {n for n, _ in model.named_parameters() if not n.startswith(("experts.", "heads."))}
    assert any(n.startswith("shared.") for n in shared)
    loss = build_loss("ride", [4, 3, 2, 1])
    obj = MultiExpert(model, loss, 4)
    model.eval()
    logits = obj.logits(x)
    assert set(logits) == {"main", "expert0", "expert1", "expert2"}
    assert torch.allclose(logits["main"], torch.stack([logits[f"expert{i}"] for i in range(3)]).mean(0))
    assert torch.allclose(logits["expert1"], 30 * model(x)[1])  # the loss's scale s, as LDAM's


def test_a_multi_expert_loss_and_model_must_go_together(tmp_path):
    import shutil

    from ltbench.config.recipe_files import builtin_recipe_dir
    from ltbench.planning.catalog import load_method

    src = (builtin_recipe_dir() / "methods" / "cnn_ride.toml").read_text()
    (tmp_path / "methods").mkdir()
    shutil.copy(builtin_recipe_dir() / "methods" / "_cnn.toml", tmp_path / "methods" / "_cnn.toml")
    for name, text, match in (
        ("no_experts", src.replace('model = "cnn_experts"\n', ""), "set model = 'cnn_experts'"),
        ("plain_loss", src.replace('loss = "ride"', 'loss = "ce"').split("[loss_params]")[0], "multi_expert"),
    ):
        path = tmp_path / "methods" / f"{name}.toml"
        path.write_text(text.replace('name = "cnn_ride"', f'name = "{name}"'))
        with pytest.raises(RecipeError, match=match):
            load_method(path)


# ------------------------------------------------------------------ contrastive (BCL, PaCo)


def test_views_augment_each_image_independently(digits):
    from ltbench.config.specs import AugmentSpec
    from ltbench.data.memory import DeviceBatches

    split, aug = digits.train, AugmentSpec(crop_pad=2, flip=True)
    one = DeviceBatches(split.images, split.labels, (0.5,), (0.5,), "cpu", aug=aug, views=1)
    two = DeviceBatches(split.images, split.labels, (0.5,), (0.5,), "cpu", aug=aug, views=2)
    (x1, y1), (x2, y2) = next(one.train_batches(16, 0)), next(two.train_batches(16, 0))
    assert x1.shape == (16, 1, 8, 8) and x2.shape == (16, 2, 1, 8, 8)
    assert torch.equal(y1, y2)  # the same images, in the same order
    assert torch.equal(x2[:, 0], x1)  # the first view is the plain batch's draw
    assert not torch.equal(x2[:, 0], x2[:, 1])  # the second its own draw


def test_views_refuse_mixed_labels(smoke_config):
    with pytest.raises(RecipeError, match="hard labels"):
        smoke_config("cnn_bcl", "mixup=0.5")


def _bcl_by_hand(z, centers, labels, t):
    """The balanced contrastive loss, one anchor at a time."""
    b, v, _ = z.shape
    anchors = [z[i, j] for j in range(v) for i in range(b)]  # view-major
    ys = [labels[i] for j in range(v) for i in range(b)]
    every = anchors + list(centers)
    ys_all = ys + list(range(len(centers)))
    count = {c: ys_all.count(c) for c in set(ys_all)}
    total = 0.0
    for i, (a, yi) in enumerate(zip(anchors, ys)):
        pos = [k for k, yk in enumerate(ys_all) if yk == yi and k != i]
        denom = 0.0
        for k, (e, yk) in enumerate(zip(every, ys_all)):
            if k == i:
                continue
            share = count[yk] - (1 if yk == yi else 0)
            denom += math.exp(float(a @ e) / t) / share
        total += -sum(float(a @ every[p]) / t - math.log(denom) for p in pos) / len(pos)
    return total / len(anchors)


def test_bcl_by_hand():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(3, 2, 4), dim=2)
    centers = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    labels = [0, 1, 0]
    loss = build_loss("bcl", [5, 2], alpha=1.0, beta=0.35, temperature=0.5)
    got = float(loss.balanced_contrast(z, centers, torch.tensor(labels)))
    assert got == pytest.approx(_bcl_by_hand(z, centers, labels, 0.5), abs=1e-5)
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    out = {"logits": logits, "z": z, "centers": centers}
    ce = float(build_loss("la", [5, 2], tau=1.0)(logits, torch.tensor(labels)))
    assert float(loss(out, torch.tensor(labels))) == pytest.approx(ce + 0.35 * got, abs=1e-5)


def test_paco_by_hand():
    torch.manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(2, 3), dim=1)
    k = torch.nn.functional.normalize(torch.randn(2, 3), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(2, 3), dim=1)
    sup = torch.tensor([[1.0, -1.0], [0.2, 0.4]])
    y, qy = [0, 1], [1, -1]  # one queue slot still empty (-1)
    counts, alpha, beta, gamma, t = [3, 1], 0.5, 1.0, 0.8, 0.2
    log_pi = [math.log(0.75), math.log(0.25)]
    keys, key_y = [*q, *k, *queue], [*y, *y, *qy]
    total = 0.0
    for i in range(2):
        centre = [float(sup[i, j]) + log_pi[j] for j in range(2)]
        contrast = [float(q[i] @ key) / t for key in keys]
        gate = [1.0, 1.0] + [0.0 if j == i else gamma for j in range(len(keys))]
        terms = centre + contrast
        lse = math.log(sum(g * math.exp(v) for g, v in zip(gate, terms)))
        weights = [beta if j == y[i] else 0.0 for j in range(2)]
        weights += [alpha if (key_y[j] == y[i] and j != i) else 0.0 for j in range(len(keys))]
        total += -sum(w * (v - lse) for w, v in zip(weights, terms)) / sum(weights)
    out = {"logits": sup, "z": torch.stack([q, q], 1), "keys": k, "queue": queue, "queue_labels": torch.tensor(qy)}
    loss = build_loss("paco", counts, alpha=alpha, beta=beta, gamma=gamma, temperature=t, base_temperature=t)
    assert float(loss(out, torch.tensor(y))) == pytest.approx(total / 2, abs=1e-5)


def test_the_momentum_queue_is_a_ring_of_the_latest_keys():
    from ltbench.training.models.contrastive import ContrastiveResNet

    model = ContrastiveResNet(depth=8, num_classes=3, in_chans=1, feat_dim=4, queue_size=5)
    keys = torch.eye(4)[:3]
    model.enqueue(keys, torch.tensor([0, 1, 2]))
    model.enqueue(keys, torch.tensor([2, 1, 0]))
    # slots 0-2 then 3, 4, 0 (the ring wraps): the oldest label (slot 0) is overwritten
    assert model.queue_labels.tolist() == [0, 1, 2, 2, 1] and int(model.queue_ptr) == 1
    assert model.queue[0].tolist() == keys[2].tolist()
    assert {"queue", "queue_labels", "queue_ptr"} <= set(model.state_dict())  # in every checkpoint
    assert all(not p.requires_grad for p in model.key_encoder.parameters())


def test_a_paco_run_resumed_from_its_checkpoint_matches_the_uninterrupted_run(smoke_config, digits, tmp_path):
    from fakes import interrupt_after

    from ltbench.training.loop import fit

    cfg = smoke_config("cnn_paco", "epochs=3", "queue_size=64")
    full = fit(cfg, digits, tmp_path / "full")
    interrupt_after(cfg, digits, tmp_path / "cut", 2)
    resumed = fit(cfg, digits, tmp_path / "cut")
    assert resumed.resumed_from_epoch == 2
    assert resumed.results["last"]["correct"] == full.results["last"]["correct"]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    whole = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    for name in ("queue", "queue_labels", "queue_ptr", "key_encoder.proj.0.weight"):
        assert torch.equal(cut[name], whole[name]), name


# ------------------------------------------------------------------ ResNet-50 forms (images above 64 px)


def test_resnet50_experts_share_the_stem_and_early_stages_and_train_their_own_branch():
    from ltbench.training.models.multi_expert import MultiExpertResNet50

    torch.manual_seed(0)
    model = MultiExpertResNet50(num_classes=3, in_chans=3, num_experts=2, shared_stages=2)
    x = torch.randn(2, 3, 96, 96)
    out = model(x)
    assert out.shape == (2, 2, 3)
    assert len(model.shared) == 2 and len(model.experts[0]) == 2  # layer1-2 shared, layer3-4 per expert
    assert model.experts[0][0] is not model.experts[1][0]
    assert not torch.equal(model.experts[0][0][0].conv1.weight, model.experts[1][0][0].conv1.weight)
    # One optimiser step on expert 0's loss moves expert 0 and the shared layers, never expert 1.
    other = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("experts.1.", "heads.1."))}
    stem = model.stem[0].weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(out[0], torch.tensor([0, 2])).backward()
    opt.step()
    assert all(torch.equal(p, other[n]) for n, p in model.named_parameters() if n in other)
    assert not torch.equal(model.stem[0].weight, stem)
    assert model.experts[0][0][0].conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shared_stages"):
        MultiExpertResNet50(num_classes=3, shared_stages=4)


def test_resnet50_contrastive_model_keeps_the_small_models_outputs_and_starts_its_key_encoder_equal():
    from ltbench.training.models.contrastive import ContrastiveResNet

    torch.manual_seed(0)
    model = ContrastiveResNet(num_classes=3, in_chans=1, feat_dim=8, centers=True, queue_size=4, arch="resnet50")
    query, key = model.encoder.state_dict(), model.key_encoder.state_dict()
    assert query.keys() == key.keys() and all(torch.equal(query[k], key[k]) for k in query)
    assert model.fc.in_features == 2048
    views = torch.randn(2, 2, 1, 96, 96)  # (B, V, C, H, W)
    out = model(views)
    assert out["logits"].shape == (2, 3) and out["z"].shape == (2, 2, 8) and out["keys"].shape == (2, 8)
    assert out["centers"].shape == (3, 8) and out["queue"].shape == (4, 8)
    assert torch.allclose(out["z"].norm(dim=-1), torch.ones(2, 2))
    model.eval()
    assert model(views[:, 0]).shape == (2, 3)  # plain images: the classifier's logits


def test_large_images_build_the_resnet50_forms(smoke_config):
    from ltbench.training.models import build_model
    from ltbench.training.models.contrastive import ContrastiveResNet
    from ltbench.training.models.multi_expert import MultiExpertResNet, MultiExpertResNet50

    assert isinstance(build_model(smoke_config("cnn_ride")), MultiExpertResNet)
    assert isinstance(build_model(smoke_config("cnn_ride", "img_size=96")), MultiExpertResNet50)
    model = build_model(smoke_config("cnn_paco", "img_size=96"))
    assert isinstance(model, ContrastiveResNet) and model.encoder.arch == "resnet50"
    assert build_model(smoke_config("cnn_bcl")).encoder.arch == "cifar"
