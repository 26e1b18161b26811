"""Recipes and training code against the papers' released code (issue 12, item 6).

Sources: val-iisc/Saddle-LongTail (run.sh, imnet_train_sam.py / inat_train_sam.py: the
LDAM-DRW + SAM teacher), val-iisc/DeiT-LT (sh/train_*.sh), LiVT's released fine-tuning args,
MAE's fixed 2-D sin-cos position embeddings, kaidic/LDAM-DRW's optimiser.
"""

import math
import re

import pytest
import torch
from fakes import interrupt_after
from timm.models.vision_transformer import VisionTransformer

from ltbench.config.overrides import apply_overrides
from ltbench.config.run_config import resolve
from ltbench.config.specs import RecipeError
from ltbench.planning.catalog import load_method
from ltbench.training.loop import Dependencies, build_objective, build_optimizer, fit
from ltbench.training.sam import SAM

# --------------------------------------------------------------- the DeiT-LT teacher


def _paper(catalog, method, dataset, *overrides):
    return resolve(catalog.methods.get(method), catalog.datasets.get(dataset), "paper", overrides=tuple(overrides))


def test_teacher_rho_is_0_8_on_small_long_tailed_images(catalog):
    m = catalog.methods.get("cnn_ldam_drw_sam")
    assert m.version == 2
    assert {b: t.sam_rho for b, t in m.budgets.items()} == {"smoke": 0.8, "quick": 0.05, "paper": 0.8}
    for ds in ("cifar10_lt", "cifar100_lt"):  # run.sh: LDAM + DRW + SAM, --rho 0.8 on both
        cfg = _paper(catalog, "cnn_ldam_drw_sam", ds)
        assert (cfg.train.sam_rho, cfg.train.sam_rho_schedule) == (0.8, ())
        assert (cfg.train.epochs, cfg.train.drw_epoch, cfg.method.loss_params["max_m"]) == (200, 160, 0.5)
        assert cfg.train.sam_freeze_bn is False  # the authors' SAM updates BatchNorm in both passes


@pytest.mark.parametrize(("dataset", "lr", "wd"), [("imagenet_lt", 0.2, 2e-4), ("inat2018", 0.1, 1e-4)])
def test_teacher_large_dataset_recipe(catalog, dataset, lr, wd):
    from ltbench.training.loop import sam_rho

    cfg = _paper(catalog, "cnn_ldam_drw_sam", dataset)
    t = cfg.train
    assert (t.epochs, t.batch_size, t.weight_decay, t.drw_epoch) == (90, 256, wd, 60)
    assert t.scaled_lr == pytest.approx(lr)
    assert (t.warmup_epochs, t.min_lr) == (0.0, 0.0)  # CosineAnnealingLR(90, eta_min=0), no warm-up
    assert cfg.method.loss_params == {"max_m": 0.3, "s": 30.0}  # --margin 0.3
    # adjust_rho with --rho_steps 0.05 0.1 0.5 0.5: epochs 1-5, 6-60, 61-75, 76-90
    expected = [0.05] * 5 + [0.1] * 55 + [0.5] * 15 + [0.5] * 15
    assert [sam_rho(cfg, e) for e in range(1, 91)] == expected
    # the optimiser: SGD momentum 0.9 on every parameter, a ResNet-50 at 224
    opt = build_optimizer(cfg, torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)))
    assert isinstance(opt, SAM) and opt.rho == 0.05
    assert all(g["weight_decay"] == wd for g in opt.param_groups)


def test_dataset_overrides_apply_before_the_commands_overrides(catalog):
    cfg = _paper(catalog, "cnn_ldam_drw_sam", "imagenet_lt", "epochs=30", "max_m=0.4")
    assert (cfg.train.epochs, cfg.method.loss_params["max_m"], cfg.train.batch_size) == (30, 0.4, 256)
    plain = _paper(catalog, "cnn_ldam_drw_sam", "places_lt")  # no table for it: the budget as written
    assert (plain.train.epochs, plain.train.batch_size, plain.method.loss_params["max_m"]) == (200, 128, 0.5)


@pytest.mark.parametrize(
    ("dataset", "schedule"),
    [("cifar10_lt", (1200, 1100, 1100)), ("imagenet_lt", (1400, 1200, 0)), ("inat2018", (1000, 900, 0))],
)
def test_deit_lt_schedules_per_dataset(catalog, dataset, schedule):
    t = _paper(catalog, "deit_lt", dataset).train
    assert (t.epochs, t.drw_epoch, t.mixup_off_epoch) == schedule


def test_sam_rho_schedule_splits_training_evenly(smoke_config):
    from ltbench.training.loop import sam_rho

    cfg = smoke_config("cnn_ldam_drw_sam", "epochs=8", "sam_rho_schedule=[0.05, 0.1, 0.5, 0.5]")
    assert [sam_rho(cfg, e) for e in range(1, 9)] == [0.05, 0.05, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5]
    cfg = smoke_config("cnn_ldam_drw_sam", "epochs=10", "sam_rho_schedule=[0.2, 0.4, 0.6]")
    assert [sam_rho(cfg, e) for e in range(1, 11)] == [0.2] * 4 + [0.4] * 3 + [0.6] * 3
    assert sam_rho(smoke_config("cnn_ldam_drw_sam"), 2) == 0.8  # no schedule: sam_rho


def test_fit_sets_rho_per_epoch_and_resume_stays_exact(smoke_config, digits, tmp_path, monkeypatch):
    cfg = smoke_config("cnn_ldam_drw_sam", "epochs=3", "sam_rho_schedule=[0.1, 0.4, 0.7]")
    seen: list[float] = []
    step = SAM.step

    def spy(self, closure):
        seen.append(self.rho)
        return step(self, closure)

    monkeypatch.setattr(SAM, "step", spy)
    full = fit(cfg, digits, tmp_path / "full")
    per_epoch = len(seen) // 3
    assert seen == [0.1] * per_epoch + [0.4] * per_epoch + [0.7] * per_epoch

    interrupt_after(cfg, digits, tmp_path / "cut", 2)
    seen.clear()
    resumed = fit(cfg, digits, tmp_path / "cut")
    assert resumed.resumed_from_epoch == 2 and seen == [0.7] * per_epoch
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in full.history])
    assert resumed.results["last"]["correct"] == full.results["last"]["correct"]


BASE = """name = "m"
title = "t"
paper = "p"
version = 1
model = "cnn"
loss = "ldam"
[loss_params]
max_m = 0.5
[budgets.smoke]
epochs = 1
batch_size = 8
lr = 0.1
warmup_epochs = 0
"""


def _method(tmp_path, extra: str):
    path = tmp_path / "m.toml"
    path.write_text(BASE + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("sam_rho_schedule = [0.1, 0.0]\n", r"m\.toml: budgets\.smoke: sam_rho_schedule values must be > 0"),
        (
            "[dataset_overrides.some_lt.paper]\nepochs = 2\n",
            r"m\.toml: dataset_overrides\.some_lt\.paper names no budget",
        ),
        (
            "[dataset_overrides.some_lt.smoke]\nepochz = 2\n",
            r"m\.toml: dataset_overrides\.some_lt\.smoke: unknown key 'epochz'",
        ),
        (
            '[dataset_overrides.some_lt.smoke]\nepochs = "two"\n',
            r"dataset_overrides\.some_lt\.smoke\.epochs: expected an integer",
        ),
        (
            "[dataset_overrides.some_lt.smoke]\nsam_rho_schedule = [-1]\n",
            r"some_lt\.smoke: sam_rho_schedule values must be > 0",
        ),
        (
            "[dataset_overrides.some_lt.smoke.loss_params]\ntau = 2\n",
            r"some_lt\.smoke\.loss_params: 'tau' is not a loss parameter",
        ),
    ],
)
def test_recipe_checks_name_file_and_key(tmp_path, extra, message):
    with pytest.raises(RecipeError, match=message):
        load_method(_method(tmp_path, extra))


def test_dataset_override_for_a_dataset_the_catalog_lacks(tmp_path, catalog):
    m = load_method(_method(tmp_path, "[dataset_overrides.not_yet_lt.smoke]\nepochs = 4\n"))
    assert m.dataset_overrides == {"not_yet_lt": {"smoke": {"epochs": 4}}}
    assert resolve(m, catalog.datasets.get("digits_lt"), "smoke").train.epochs == 1


def test_rho_schedule_from_the_command_is_checked(catalog):
    cfg = _paper(catalog, "cnn_ldam_drw_sam", "cifar10_lt")
    assert apply_overrides(cfg, ("sam_rho_schedule=[0.1, 0.2]",)).train.sam_rho_schedule == (0.1, 0.2)
    with pytest.raises(RecipeError, match="sam_rho_schedule values must be > 0"):
        _paper(catalog, "cnn_ldam_drw_sam", "cifar10_lt", "sam_rho_schedule=[0.1, 0]")


# ------------------------------------------------------------------------- LiVT


def test_livt_fine_tuning_lr_scales_per_256_images(catalog):
    m = catalog.methods.get("livt")
    assert m.version == 2
    for ds in ("imagenet_lt", "cifar100_lt"):
        t = _paper(catalog, "livt", ds).train
        assert t.lr == 1e-3 and t.lr_base_batch == 256
        assert t.scaled_lr == pytest.approx(1e-3 * t.batch_size / 256)  # blr 1e-3 -> lr 8e-3 at 2048


def _table_by_hand(dim, h, w):
    """MAE's layout: [sin(c f), cos(c f), sin(r f), cos(r f)], f_k = 10000^(-k / (dim/4))."""
    q = dim // 4
    rows = []
    for r in range(h):
        for c in range(w):
            f = [10000 ** (-k / q) for k in range(q)]
            rows.append(
                [math.sin(c * x) for x in f]
                + [math.cos(c * x) for x in f]
                + [math.sin(r * x) for x in f]
                + [math.cos(r * x) for x in f]
            )
    return torch.tensor(rows)


def test_sincos_table_by_hand():
    from ltbench.training.models.mae import sincos_2d

    table = sincos_2d(16, 3, 4)
    assert table.shape == (12, 16)
    torch.testing.assert_close(table, _table_by_hand(16, 3, 4), atol=1e-6, rtol=0)
    grid = table.view(3, 4, 16)
    assert torch.equal(grid[:, :, :8], grid[:1, :, :8].expand(3, -1, -1))  # first half: column only
    assert torch.equal(grid[:, :, 8:], grid[:, :1, 8:].expand(-1, 4, -1))  # second half: row only
    assert not torch.equal(grid[0, 0, :8], grid[0, 1, :8]) and not torch.equal(grid[0, 0, 8:], grid[1, 0, 8:])


def _mgp_stage(smoke_config):
    from ltbench.planning.stages import pretrain_config

    return pretrain_config(smoke_config("livt"))


def test_mae_position_embeddings_are_fixed_sincos(smoke_config, digits):
    from ltbench.training.models.mae import sincos_2d

    cfg = _mgp_stage(smoke_config)
    objective = build_objective(cfg, digits, torch.device("cpu"), Dependencies())
    mae = objective.model
    opt = build_optimizer(cfg, mae)
    x = torch.randn(8, 1, 8, 8)
    objective.loss(x, x, 1).backward()
    opt.step()
    grid = mae.encoder.patch_embed.grid_size
    for pos in (mae.encoder.pos_embed, mae.decoder_pos):
        assert not pos.requires_grad
        dim = pos.shape[-1]
        assert torch.equal(pos[0, 0], torch.zeros(dim))  # the class token's
        torch.testing.assert_close(pos[0, 1:], sincos_2d(dim, *grid), atol=0, rtol=0)
    assert mae.decoder_embed.weight.grad is not None  # the rest did train


def _mgp_checkpoint(smoke_config, digits, tmp_path):
    cfg = _mgp_stage(smoke_config)
    fit(cfg, digits, tmp_path / "mgp")
    return tmp_path / "mgp" / "checkpoint.pt"


def test_mgp_encoder_arrives_and_a_missing_block_is_an_error(smoke_config, digits, tmp_path):
    from ltbench.training.models.mae import sincos_2d

    path = _mgp_checkpoint(smoke_config, digits, tmp_path)
    state = torch.load(path, weights_only=False)
    cfg = smoke_config("livt")
    model = build_objective(cfg, digits, torch.device("cpu"), Dependencies(pretrained=path)).model
    assert torch.equal(model.blocks[0].attn.qkv.weight, state["model"]["encoder.blocks.0.attn.qkv.weight"])
    assert torch.equal(model.patch_embed.proj.weight, state["model"]["encoder.patch_embed.proj.weight"])
    # pos_embed is learned in fine-tuning, starting from the sin-cos table
    assert model.pos_embed.requires_grad
    torch.testing.assert_close(model.pos_embed[0, 1:], sincos_2d(model.embed_dim, *model.patch_embed.grid_size))

    broken = {k: v for k, v in state["model"].items() if not k.startswith("encoder.blocks.0.")}
    bad = tmp_path / "broken.pt"
    torch.save({**state, "model": broken}, bad)
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}.*missing blocks\.0\.") as err:
        build_objective(cfg, digits, torch.device("cpu"), Dependencies(pretrained=bad))
    assert "unexpected" not in str(err.value)

    extra = {**state["model"], "encoder.dist_token": torch.zeros(1, 1, model.embed_dim)}
    torch.save({**state, "model": extra}, bad)
    with pytest.raises(ValueError, match=r"unexpected dist_token"):
        build_objective(cfg, digits, torch.device("cpu"), Dependencies(pretrained=bad))


def test_token_pooled_model_takes_the_checkpoints_norm(smoke_config, digits, tmp_path):
    path = _mgp_checkpoint(smoke_config, digits, tmp_path)
    state = torch.load(path, weights_only=False)["model"]
    model = build_objective(smoke_config("mgp"), digits, torch.device("cpu"), Dependencies(pretrained=path)).model
    assert isinstance(model, VisionTransformer) and model.global_pool == "token"
    assert torch.equal(model.norm.weight, state["encoder.norm.weight"])


# ------------------------------------------------------------------ CNN optimiser


def test_cnn_weight_decay_on_every_parameter_vit_spares_biases(smoke_config, digits):
    cfg = smoke_config("cnn_ce")
    model = build_objective(cfg, digits, torch.device("cpu"), Dependencies()).model
    opt = build_optimizer(cfg, model)
    assert all(g["weight_decay"] == 2e-4 for g in opt.param_groups)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))

    cfg = smoke_config("ce")
    model = build_objective(cfg, digits, torch.device("cpu"), Dependencies()).model
    opt = build_optimizer(cfg, model)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert decay[id(named["blocks.0.attn.qkv.bias"])] == 0.0 and decay[id(named["norm.weight"])] == 0.0
    assert decay[id(named["blocks.0.attn.qkv.weight"])] == 0.05


# ------------------------------------------------------------------ SAM and BatchNorm


def _bn_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 2))


def _sam_step(net, model_arg):
    x, y = torch.randn(16, 4, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 2
    sam = SAM(torch.optim.SGD(net.parameters(), lr=0.1), 0.5, model_arg)

    def closure():
        sam.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

    net.train()
    sam.step(closure)
    return x


def test_sam_second_pass_leaves_batchnorm_statistics_alone():
    net, once = _bn_net(), _bn_net()
    x = _sam_step(net, net)
    once.train()
    once(x)  # one forward pass at the starting weights
    bn, ref = net[1], once[1]
    torch.testing.assert_close(bn.running_mean, ref.running_mean, atol=0, rtol=0)
    torch.testing.assert_close(bn.running_var, ref.running_var, atol=0, rtol=0)
    assert bn.num_batches_tracked.item() == 1 and bn.momentum == 0.1  # momentum restored

    plain = _bn_net()
    _sam_step(plain, None)  # the authors' SAM: both passes update the statistics
    assert plain[1].num_batches_tracked.item() == 2
    assert not torch.allclose(plain[1].running_mean, ref.running_mean)


def test_build_optimizer_gives_sam_the_model_when_asked(smoke_config, digits):
    cfg = smoke_config("cnn_ldam_drw_sam", "sam_freeze_bn=true")
    model = build_objective(cfg, digits, torch.device("cpu"), Dependencies()).model
    assert build_optimizer(cfg, model).model is model
    assert build_optimizer(smoke_config("cnn_ldam_drw_sam"), model).model is None
