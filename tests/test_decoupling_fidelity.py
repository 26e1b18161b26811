"""Decoupling as Kang et al.'s code does it (facebookresearch/classifier-balancing): stage 2 on
stage 1's best-on-validation weights, --set reaching the backbone, BatchNorm in train mode,
hard labels and plain augmentation, the tau grid, undecayed LWS scales, class-aware sampling.
Imports of what these fixes add stay inside the tests, so each fails on its own."""

import json

import pytest
import torch

from ltbench.config.identity import config_hash
from ltbench.config.recipe_files import builtin_recipe_dir
from ltbench.config.run_config import resolve
from ltbench.config.specs import RecipeError
from ltbench.planning.catalog import load_catalog
from ltbench.planning.sweep import plan_runs
from ltbench.training.models.resnet_cifar import CifarResNet
from ltbench.training.objectives import LearnScales, RetrainClassifier

DECOUPLED = ("cnn_crt", "cnn_lws", "crt", "lws")  # the stages that train on a frozen backbone


def tiny_backbone():
    torch.manual_seed(0)
    return CifarResNet(8, num_classes=3, in_chans=1)


def by_method(specs):
    return {s.config.method.name: s for s in specs}


# ------------------------------------------------------------ 1. best-on-validation weights


def test_a_finished_run_keeps_its_best_on_val_weights(smoke_config, digits, tmp_path, monkeypatch):
    from ltbench.training import loop as train
    from ltbench.training.checkpoints import BEST_VAL, CHECKPOINT
    from ltbench.training.loop import fit

    cfg = smoke_config("cnn_ce")
    seen = {}
    real = train._Loop.train_epoch

    def train_epoch(self, epoch):
        loss = real(self, epoch)
        if epoch == cfg.train.epochs:  # the last epoch predicts class 0 everywhere: chance on val
            with torch.no_grad():
                self.objective.model.fc.weight.zero_()
                self.objective.model.fc.bias.zero_()
        seen[epoch] = {k: v.clone() for k, v in self.objective.model.state_dict().items()}
        return loss

    monkeypatch.setattr(train._Loop, "train_epoch", train_epoch)
    result = fit(cfg, digits, tmp_path, "cpu")
    assert (result.results["best_val"]["epoch"], result.results["last"]["epoch"]) == (1, 2)
    best = torch.load(tmp_path / BEST_VAL, weights_only=True)
    assert best["epoch"] == 1
    assert all(torch.equal(best["model"][k], v) for k, v in seen[1].items())  # epoch 1's, not the last
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert ckpt["best_model"] is None and torch.equal(ckpt["model"]["fc.weight"], seen[2]["fc.weight"])


def _finished_stage(folder, best_epoch, last_epoch=2, best_file=True):
    folder.mkdir(parents=True)
    results = {"last": {"epoch": last_epoch}}
    if best_epoch is not None:
        results["best_val"] = {"epoch": best_epoch}
    record = {"run_id": "abc123" * 5, "method": "cnn_ce", "status": "done", "results": results}
    (folder / "record.json").write_text(json.dumps(record))
    torch.save({"epoch": last_epoch, "model": {"w": torch.zeros(1)}}, folder / "checkpoint.pt")
    if best_file:
        torch.save({"epoch": best_epoch, "model": {"w": torch.ones(1)}}, folder / "best_val.pt")
    return record


def test_stage_weights_follow_the_selection(tmp_path):
    from ltbench.execution.runner import DependencyFailed, stage_weights

    rec = _finished_stage(tmp_path / "a", best_epoch=1)
    path, used = stage_weights("backbone", tmp_path / "a", rec, "best_val")
    assert path.name == "best_val.pt" and used["epoch"] == 1 and used["selection"] == "best_val"
    assert used["run_id"] == rec["run_id"]
    path, used = stage_weights("backbone", tmp_path / "a", rec, "last")
    assert path.name == "checkpoint.pt" and used["epoch"] == 2
    rec = _finished_stage(tmp_path / "b", best_epoch=2, best_file=False)  # best is last: the checkpoint
    assert stage_weights("backbone", tmp_path / "b", rec, "best_val")[0].name == "checkpoint.pt"
    rec = _finished_stage(tmp_path / "c", best_epoch=None, best_file=False)  # no validation set
    path, used = stage_weights("backbone", tmp_path / "c", rec, "best_val")
    assert path.name == "checkpoint.pt" and used["selection"] == "last" and used["asked"] == "best_val"
    rec = _finished_stage(tmp_path / "d", best_epoch=1, best_file=False)  # finished before this change
    with pytest.raises(DependencyFailed, match=r"chose epoch 1 of 2 .*re-run .*--methods cnn_ce.*selection = \"last\""):
        stage_weights("backbone", tmp_path / "d", rec, "best_val")


def test_selection_is_part_of_the_consumer_identity(tmp_path):
    catalog = load_catalog()
    for name in ("cnn_crt", "cnn_lws", "cnn_tau_norm", "cnn_posthoc_la", "crt", "lws", "tau_norm", "posthoc_la"):
        (need,) = catalog.methods.get(name).needs
        assert (need.role, need.selection) == ("backbone", "best_val")  # the default, written out
    folder = tmp_path / "r" / "methods"
    folder.mkdir(parents=True)
    text = (builtin_recipe_dir() / "methods" / "cnn_crt.toml").read_text()
    (folder / "cnn_crt.toml").write_text(text.replace('method = "cnn_ce"\n', 'method = "cnn_ce"\nselection = "last"\n'))
    lab = load_catalog((str(tmp_path / "r"),))
    last = by_method(plan_runs(["cnn_crt"], ["digits_lt"], "smoke", out_dir=tmp_path, catalog=lab))
    best = by_method(plan_runs(["cnn_crt"], ["digits_lt"], "smoke", out_dir=tmp_path, catalog=catalog))
    assert last["cnn_ce"].run_id == best["cnn_ce"].run_id  # the same stage 1
    assert last["cnn_crt"].run_id != best["cnn_crt"].run_id  # other weights: another run
    assert last["cnn_crt"].config.to_dict()["method"]["needs"][0]["selection"] == "last"


def test_crt_records_the_backbone_run_and_weights_it_rests_on(tmp_path):
    from rich.console import Console

    import ltbench

    records = ltbench.run(
        methods=["cnn_ce", "cnn_crt"],
        data=["digits_lt"],
        budget="smoke",
        store=tmp_path / "s.db",
        out_dir=tmp_path,
        console=Console(file=open("/dev/null", "w")),  # noqa: SIM115
    )
    ce, crt = records
    assert [r["status"] for r in records] == ["done", "done"]
    used = json.loads((tmp_path / crt["run_dir"] / "record.json").read_text())["needs_selection"]["backbone"]
    assert used["run_id"] == ce["run_id"] == crt["needs"]["backbone"]
    assert used["selection"] == "best_val" and used["epoch"] == ce["results"]["best_val"]["epoch"]


# ------------------------------------------------------------------ 2. --set and the backbone


def test_set_reaches_the_backbone_so_crt_consumes_the_ce_row(tmp_path):
    for overrides in (["train.epochs=5"], ["epochs=5", "rho=20"], ["cnn_ce.epochs=3"]):
        specs = plan_runs(["cnn_ce", "cnn_crt"], ["digits_lt"], "smoke", overrides=overrides, out_dir=tmp_path)
        rows = [s for s in specs if s.config.method.name == "cnn_ce"]
        assert len(rows) == 1  # one cnn_ce run: the row and cRT's backbone
        crt = by_method(specs)["cnn_crt"]
        assert dict(crt.need_ids)["backbone"] == rows[0].run_id
    alone = by_method(plan_runs(["cnn_crt"], ["digits_lt"], "smoke", overrides=["epochs=5"], out_dir=tmp_path))
    assert alone["cnn_ce"].config.train.epochs == 5  # cnn_crt alone: the unscoped value reaches it too
    row = by_method(plan_runs(["cnn_ce"], ["digits_lt"], "smoke", overrides=["epochs=5"], out_dir=tmp_path))
    assert alone["cnn_ce"].run_id == row["cnn_ce"].run_id
    assert alone["cnn_ce"].overrides == ("epochs=5",)  # its record says what reached it


def test_a_stage_2_override_leaves_the_backbone_alone(tmp_path):
    plain = by_method(plan_runs(["cnn_ce"], ["digits_lt"], "smoke", out_dir=tmp_path))["cnn_ce"]
    for overrides in (["backbone_bn=frozen"], ["cnn_crt.epochs=3"]):
        specs = by_method(plan_runs(["cnn_crt"], ["digits_lt"], "smoke", overrides=overrides, out_dir=tmp_path))
        assert specs["cnn_ce"].run_id == plain.run_id
    both = ["cnn_ce", "cnn_crt"]
    with pytest.raises(RecipeError, match=r"cnn_ce has no setting 'backbone_bn'.*--set cnn_crt.backbone_bn=frozen"):
        plan_runs(both, ["digits_lt"], "smoke", overrides=["backbone_bn=frozen"], out_dir=tmp_path)


def test_set_still_does_not_reach_a_teacher(tmp_path):
    plain = by_method(plan_runs(["deit_lt"], ["digits_lt"], "smoke", out_dir=tmp_path))
    changed = by_method(plan_runs(["deit_lt"], ["digits_lt"], "smoke", overrides=["epochs=3"], out_dir=tmp_path))
    assert changed["cnn_ldam_drw_sam"].run_id == plain["cnn_ldam_drw_sam"].run_id
    assert changed["deit_lt"].run_id != plain["deit_lt"].run_id


# ---------------------------------------------------------------- 3. BatchNorm in train mode


def test_crt_and_lws_keep_backbone_batchnorm_in_train_mode():
    for build in (RetrainClassifier, LearnScales):
        model = tiny_backbone()
        obj = build(model, torch.nn.CrossEntropyLoss(), 3)
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if n not in ("fc.weight", "fc.bias")}
        mean = model.bn1.running_mean.clone()
        obj.train_mode()
        assert model.bn1.training and not model.training  # BatchNorm only; the rest in eval
        obj.loss(torch.randn(6, 1, 8, 8) + 3.0, torch.tensor([0, 1, 2, 0, 1, 2]), 1).backward()
        assert not torch.equal(model.bn1.running_mean, mean)  # statistics of the balanced batches
        assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
        with pytest.raises(ValueError, match="backbone_bn='off'; use one of train, frozen"):
            build(tiny_backbone(), torch.nn.CrossEntropyLoss(), 3, backbone_bn="off")


def test_backbone_bn_is_a_validated_key_in_the_identity(catalog):
    digits = catalog.datasets.get("digits_lt")
    crt = catalog.methods.get("cnn_crt")
    default = resolve(crt, digits, "smoke")
    frozen = resolve(crt, digits, "smoke", overrides=("backbone_bn=frozen",))
    assert default.train.backbone_bn == "train" and frozen.train.backbone_bn == "frozen"
    assert config_hash(default) != config_hash(frozen)
    assert crt.version >= 2 and catalog.methods.get("cnn_lws").version >= 2
    with pytest.raises(RecipeError, match="backbone_bn"):
        resolve(crt, digits, "smoke", overrides=("backbone_bn=sometimes",))
    with pytest.raises(RecipeError, match="only the objectives retrain_classifier, learn_scales.* read it"):
        resolve(catalog.methods.get("cnn_ce"), digits, "smoke", overrides=("backbone_bn=frozen",))


def test_the_new_key_leaves_other_runs_ids_alone(catalog):
    from ltbench.config.identity import identity

    cfg = resolve(catalog.methods.get("cnn_ce"), catalog.datasets.get("digits_lt"), "smoke")
    assert cfg.train.backbone_bn == ""
    assert "backbone_bn" not in identity(cfg.to_dict())["train"]  # the hash of every older run


def test_frozen_keeps_the_old_behaviour():
    model = tiny_backbone()
    obj = RetrainClassifier(model, torch.nn.CrossEntropyLoss(), 3, backbone_bn="frozen")
    mean = model.bn1.running_mean.clone()
    obj.train_mode()
    obj.loss(torch.randn(6, 1, 8, 8) + 3.0, torch.tensor([0, 1, 2, 0, 1, 2]), 1).backward()
    assert not model.bn1.training and torch.equal(model.bn1.running_mean, mean)


# ------------------------------------------------------- 4. hard labels, plain augmentation


def test_decoupled_stages_train_on_hard_labels_and_plain_augmentation(catalog):
    for name in DECOUPLED:
        spec = catalog.methods.get(name)
        for budget in spec.budgets:
            for ds in catalog.datasets.names():
                cfg = resolve(spec, catalog.datasets.get(ds), budget)
                where = f"{name} on {ds} ({budget})"
                t, aug = cfg.train, cfg.data.augment
                assert (t.mixup, t.cutmix, t.label_smoothing) == (0, 0, 0), where
                assert (aug.auto_augment, aug.re_prob) == ("", 0), where
                assert t.sampler == "class_aware", where


def test_the_backbone_keeps_its_own_augmentation(tmp_path):
    specs = by_method(plan_runs(["crt"], ["imagenet_lt"], "paper", out_dir=tmp_path, verify=False))
    ce = resolve(load_catalog().methods.get("ce"), load_catalog().datasets.get("imagenet_lt"), "paper")
    assert specs["ce"].config == ce  # the ce row's own run: RandAugment, mixup and all


def test_kang_per_dataset_stage_2_schedules(catalog):
    expected = {  # config/<dataset>/cls_{crt,lws}.yaml: (epochs, batch, lr, wd)
        ("cnn_crt", "imagenet_lt"): (10, 512, 0.2, 5e-4),
        ("cnn_crt", "inat2018"): (30, 512, 0.2, 1e-4),
        ("cnn_crt", "places_lt"): (10, 256, 0.1, 5e-4),
        ("cnn_lws", "imagenet_lt"): (5, 512, 0.2, 5e-4),
        ("cnn_lws", "inat2018"): (5, 512, 0.2, 1e-4),
        ("cnn_lws", "places_lt"): (5, 256, 0.1, 5e-4),
    }
    for (name, ds), (epochs, batch, lr, wd) in expected.items():
        t = resolve(catalog.methods.get(name), catalog.datasets.get(ds), "paper").train
        assert (t.epochs, t.batch_size, t.scaled_lr, t.weight_decay, t.warmup_epochs) == (epochs, batch, lr, wd, 0)


# ------------------------------------------------------------------------------ 5. minors


def test_tau_norm_grid_is_kangs_zero_to_two():
    from ltbench.training.objectives import TAU_NORM_GRID

    assert TAU_NORM_GRID == tuple(round(0.1 * i, 1) for i in range(21))
    assert TAU_NORM_GRID[0] == 0.0 and TAU_NORM_GRID[-1] == 2.0


@pytest.mark.parametrize("method", ["cnn_lws", "lws"])
def test_lws_scales_are_never_weight_decayed(smoke_config, method):
    from ltbench.training.loop import build_optimizer

    cfg = smoke_config(method)
    backbone = tiny_backbone()
    obj = LearnScales(backbone, torch.nn.CrossEntropyLoss(), 3)
    opt = build_optimizer(cfg, obj.model)
    decay = [g["weight_decay"] for g in opt.param_groups for p in g["params"] if p is obj.model.scale]
    assert decay == [0.0]
    # With no gradient, an undecayed scale stays at 1 (a decayed one would shrink).
    obj.model.scale.grad = torch.zeros_like(obj.model.scale)
    opt.step()
    assert obj.model.scale.tolist() == [1.0, 1.0, 1.0]


def test_class_aware_cycles_classes_and_each_class_images():
    from ltbench.data.samplers import SAMPLERS, epoch_indices

    counts = [7, 3, 1, 0, 2]  # class 3 has no image
    labels = torch.cat([torch.full((n,), j) for j, n in enumerate(counts)])
    idx = epoch_indices("class_aware", labels, torch.Generator().manual_seed(0))
    assert len(idx) == len(labels) == 13
    per_visit = SAMPLERS.get("class_aware").per_visit
    assert per_visit == 4  # the reference configs' num_samples_cls
    visits = [labels[idx[i : i + per_visit]].unique().tolist() for i in range(0, len(idx), per_visit)]
    assert all(len(v) == 1 for v in visits)  # each visit: one class's images
    classes = [v[0] for v in visits]
    present = [0, 1, 2, 4]
    for start in range(0, len(classes), len(present)):  # a shuffled cycle over the present classes
        chunk = classes[start : start + len(present)]
        assert len(set(chunk)) == len(chunk) and set(chunk) <= set(present)
    longer = epoch_indices("class_aware", labels.repeat(3), torch.Generator().manual_seed(1))  # more visits
    for j in present:  # each class walks its own reshuffled cycle: every image once per round
        drawn = longer[labels.repeat(3)[longer] == j].tolist()
        size = counts[j] * 3
        for r in range(0, len(drawn) - size + 1, size):
            assert sorted(drawn[r : r + size]) == sorted(torch.nonzero(labels.repeat(3) == j).flatten().tolist())


def test_class_aware_is_seeded_per_epoch():
    from ltbench.data.samplers import epoch_indices

    labels = torch.tensor([0] * 9 + [1] * 4 + [2] * 2)
    a = epoch_indices("class_aware", labels, torch.Generator().manual_seed(5))
    b = epoch_indices("class_aware", labels, torch.Generator().manual_seed(5))
    c = epoch_indices("class_aware", labels, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)  # a resumed epoch draws the same batches


def test_docs_state_the_decoupling_settings():
    methods = (builtin_recipe_dir() / "docs" / "methods.md").read_text()
    for needle in ("backbone_bn", "class_aware", "selection", "world_size"):
        assert needle in methods, needle
    arch = (builtin_recipe_dir() / "docs" / "architecture.md").read_text()
    assert "backbone stage" in arch and "do not reach a teacher" in arch
