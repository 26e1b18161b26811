"""Decoupling (Kang et al.) and post-hoc logit adjustment: stages that start from a trained
CE model, their maths by hand, and their plans."""

import math

import pytest
import torch

from ltbench.config.specs import RecipeError
from ltbench.planning.catalog import load_catalog
from ltbench.planning.sweep import plan_runs
from ltbench.training.models.resnet_cifar import CifarResNet
from ltbench.training.objectives import (
    OBJECTIVE_ROLES,
    OBJECTIVES,
    LearnScales,
    PosthocTransform,
    RetrainClassifier,
    logit_adjusted,
    tau_normalised,
)


def test_tau_normalisation_by_hand():
    w = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # norms 5 and 1
    f = torch.tensor([[1.0, 1.0]])
    assert tau_normalised(f, w, None, 0.0).tolist() == [[7.0, 1.0]]  # tau 0: the raw weights, no bias
    assert tau_normalised(f, w, torch.tensor([9.0, 9.0]), 1.0).tolist() == [pytest.approx([1.4, 1.0])]
    half = tau_normalised(f, w, None, 0.5)[0]
    assert half.tolist() == pytest.approx([7 / math.sqrt(5), 1.0])


def test_posthoc_logit_adjustment_by_hand():
    transform = logit_adjusted(torch.tensor([0.9, 0.1]).log())
    z = transform(torch.tensor([[1.0, 1.0]]), torch.eye(2), torch.zeros(2), 1.0)
    assert z[0].tolist() == pytest.approx([1 - math.log(0.9), 1 - math.log(0.1)], rel=1e-6)


class Identity2(torch.nn.Module):
    """Features = input; a 2-class linear classifier ``fc``."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x)


class Batches:
    device = torch.device("cpu")

    def __init__(self, x, y):
        self.x, self.y = x, y

    def eval_batches(self, batch_size):
        for i in range(0, len(self.x), batch_size):
            yield self.x[i : i + batch_size], self.y[i : i + batch_size]


def test_tau_is_chosen_on_validation_by_mean_class_accuracy():
    # log(0.9 / 0.1) = 2.197: a class-0 image with z = (1, 0.2) stays class 0 while
    # tau < 0.364, a class-1 image with z = (1, 0.8) becomes class 1 once tau > 0.091.
    val = Batches(torch.tensor([[1.0, 0.2], [1.0, 0.8]]), torch.tensor([0, 1]))
    obj = PosthocTransform(Identity2(), 2, logit_adjusted(torch.tensor([0.9, 0.1]).log()), (0.0, 0.25, 0.5), 1.0)
    scores = obj.choose_tau(val, 8)
    assert scores == {0.0: 0.5, 0.25: 1.0, 0.5: 0.5} and obj.tau == 0.25
    stats = obj.evaluate(val, 8)  # the test set is evaluated at the chosen tau
    assert stats["correct"] == [1, 1]


def tiny_backbone():
    torch.manual_seed(0)
    return CifarResNet(8, num_classes=3, in_chans=1)


def test_crt_trains_a_new_classifier_only():
    model = tiny_backbone()
    old_fc = model.fc.weight.detach().clone()
    body = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    obj = RetrainClassifier(model, torch.nn.CrossEntropyLoss(), 3, backbone_bn="frozen")
    assert not torch.equal(model.fc.weight, old_fc)  # re-initialised
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    obj.train_mode()
    assert not model.bn1.training and model.fc.training  # "frozen": BatchNorm statistics stay the backbone's
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before = model.fc.weight.detach().clone()
    obj.loss(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), 1).backward()
    opt.step()
    assert not torch.equal(model.fc.weight, before)
    after = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(body[k], after[k]) for k in body)  # running means included


def test_lws_learns_only_one_scale_per_class():
    model = tiny_backbone()
    obj = LearnScales(model, torch.nn.CrossEntropyLoss(), 3)
    x = torch.randn(2, 1, 8, 8)
    model.eval()
    assert torch.equal(obj.model(x), model(x))  # scales start at 1
    assert [n for n, p in obj.model.named_parameters() if p.requires_grad] == ["scale"]


def test_decoupling_plans_share_one_backbone_and_need_their_role(tmp_path):
    catalog = load_catalog()
    users = [m for m in catalog.methods.names() if catalog.methods.get(m).needs]
    assert users  # the decoupling methods, however many there are
    specs = plan_runs(users, ["digits_lt"], "smoke", seeds=[0, 1], out_dir=tmp_path, catalog=catalog)
    by_id = {s.run_id: s for s in specs}
    used = {}  # (seed, backbone method) -> the backbone runs used
    for s in specs:
        if s.need_ids:
            backbone = by_id[dict(s.need_ids)["backbone"]]
            assert backbone.config.seed == s.config.seed  # the stage follows the run's seed
            used.setdefault((s.config.seed, backbone.config.method.name), set()).add(backbone.run_id)
    assert all(len(ids) == 1 for ids in used.values())  # methods of a seed share one backbone run
    for name in users:  # every objective a recipe names is registered with the roles it gets
        spec = catalog.methods.get(name)
        assert spec.objective in OBJECTIVES
        assert set(OBJECTIVE_ROLES[spec.objective]) <= {n.role for n in spec.needs}


def test_an_objective_without_its_stage_is_refused_at_plan_time(tmp_path):
    import shutil

    from ltbench.config.recipe_files import builtin_recipe_dir

    folder = tmp_path / "r" / "methods"
    folder.mkdir(parents=True)
    shutil.copy(builtin_recipe_dir() / "methods" / "_cnn.toml", folder)
    text = (builtin_recipe_dir() / "methods" / "cnn_crt.toml").read_text()
    (folder / "cnn_crt.toml").write_text(text.replace('role = "backbone"', 'role = "trunk"'))
    catalog = load_catalog((str(tmp_path / "r"),))
    with pytest.raises(RecipeError, match="needs a stage as 'backbone'"):
        plan_runs(["cnn_crt"], ["digits_lt"], "smoke", out_dir=tmp_path / "out", catalog=catalog)
    assert not (tmp_path / "out").exists()


def test_evaluation_only_stages_store_their_tau(tmp_path):
    from rich.console import Console

    import ltbench

    records = ltbench.run(
        methods=["cnn_tau_norm", "cnn_posthoc_la"],
        data=["digits_lt"],
        budget="smoke",
        store=tmp_path / "s.db",
        out_dir=tmp_path,
        console=Console(file=open("/dev/null", "w")),  # noqa: SIM115
    )
    assert [r["status"] for r in records] == ["done"] * 3  # cnn_ce once, then both
    for r in records[1:]:
        last = r["results"]["last"]
        assert last["tau"] in [float(t) for t in last["val_scores"]]
        assert last["val_top1"] == max(last["val_scores"].values())
        assert r["results"]["best_val"]["correct"].tolist() == last["correct"].tolist()
        assert r["history"] == []  # nothing trained
