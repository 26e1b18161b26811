"""Recipes: parsing, validation errors that name file and key, overrides and config hashes."""

import re
from pathlib import Path

import pytest

from ltbench.config.identity import config_hash
from ltbench.config.overrides import apply_overrides
from ltbench.config.run_config import resolve
from ltbench.config.specs import RecipeError, run_config_from_dict
from ltbench.core.registry import UnknownNameError
from ltbench.planning.catalog import load_catalog, load_method


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_builtin_recipes(catalog):
    assert {"ce", "la", "bce", "bal_bce"} <= set(catalog.methods.names())
    assert {"mnist_lt", "digits_lt"} <= set(catalog.datasets.names())
    for name in catalog.methods:
        assert {"smoke", "quick", "paper"} <= set(catalog.methods.get(name).budgets)
    assert catalog.methods.get("la").loss_params == {"tau": 1.0}
    assert catalog.methods.names("*bce") == ["bal_bce", "bce"]


def test_unknown_name_suggests(catalog):
    valid = ", ".join(catalog.methods.names())
    with pytest.raises(UnknownNameError, match=r"Did you mean 'bal_bce'\?.*Valid: " + re.escape(valid)):
        catalog.methods.get("bal_bc")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / "methods").mkdir(exist_ok=True)
    path = tmp_path / "methods" / f"{name}.toml"
    path.write_text(text)
    return path


BASE = """name = "{name}"
title = "t"
paper = "p"
version = 1
model = "vit"
loss = "ce"
[budgets.smoke]
epochs = 1
batch_size = 8
lr = 1e-3
warmup_epochs = 0
patch_size = 4
embed_dim = 16
depth = 1
num_heads = 1
"""


def test_unknown_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, "m", BASE.format(name="m") + "epochz = 3\n")
    with pytest.raises(RecipeError, match=r"m\.toml: budgets\.smoke: unknown key 'epochz'; valid keys: .*epochs"):
        load_method(path)


def test_missing_key_and_wrong_type(tmp_path):
    path = _write(tmp_path, "m", BASE.format(name="m").replace('loss = "ce"\n', ""))
    with pytest.raises(RecipeError, match=r"m\.toml: missing required key 'loss'"):
        load_method(path)
    path = _write(tmp_path, "m", BASE.format(name="m").replace("epochs = 1", 'epochs = "one"'))
    with pytest.raises(RecipeError, match=r"budgets\.smoke\.epochs: expected an integer"):
        load_method(path)
    path = _write(tmp_path, "m", BASE.format(name="other"))
    with pytest.raises(RecipeError, match="must match the file name"):
        load_method(path)


def test_include_and_user_folder(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "_base.toml").write_text(BASE.format(name="x"))
    (tmp_path / "methods" / "mine.toml").write_text(
        'include = "_base.toml"\nname = "mine"\n[budgets.smoke]\nepochs = 7\n'
    )
    cat = load_catalog((str(tmp_path),))
    m = cat.methods.get("mine")
    assert m.budgets["smoke"].epochs == 7 and m.budgets["smoke"].batch_size == 8
    assert "ce" in cat.methods  # built-ins stay


@pytest.mark.parametrize(
    ("good", "bad", "message"),
    [
        ("lr = 1e-3", "lr = -1.0", r"train\.lr = -1\.0 is out of range"),
        ("epochs = 1", 'epochs = "ten"', r"epochs: expected an integer"),
    ],
)
def test_a_bad_value_from_a_base_is_reported_against_the_base(tmp_path, good, bad, message):
    methods = tmp_path / "methods"
    methods.mkdir()
    (methods / "_base.toml").write_text(BASE.format(name="x").replace(good + "\n", bad + "\n"))
    mine = methods / "mine.toml"
    head = 'include = "_base.toml"\nname = "mine"\n[budgets.smoke]\n'
    mine.write_text(head + "batch_size = 4\n")
    with pytest.raises(RecipeError, match=rf"_base\.toml \(included by .*mine\.toml\): budgets\.smoke.*{message}"):
        load_catalog((str(tmp_path),))
    # The same value set by the recipe itself is reported against the recipe; overridden, it is no error.
    mine.write_text(head + bad + "\n")
    with pytest.raises(RecipeError, match=rf"mine\.toml: budgets\.smoke.*{message}") as raised:
        load_catalog((str(tmp_path),))
    assert "_base.toml" not in str(raised.value)
    mine.write_text(head + good + "\n")
    assert load_catalog((str(tmp_path),)).methods.get("mine").budgets["smoke"].batch_size == 8


def test_overrides_change_config_and_hash(catalog):
    cfg = resolve(catalog.methods.get("la"), catalog.datasets.get("mnist_lt"), "quick")
    new = apply_overrides(cfg, ("tau=1.5", "data.longtail.rho=100", "epochs=3", "profile=step"))
    assert new.method.loss_params["tau"] == 1.5
    assert new.data.longtail.rho == 100.0 and new.data.longtail.profile == "step"
    assert new.train.epochs == 3
    assert config_hash(new) != config_hash(cfg)
    same = f"epochs={cfg.train.epochs}"
    assert config_hash(apply_overrides(cfg, (same,))) == config_hash(cfg)  # same value, same run
    assert run_config_from_dict(new.to_dict()) == new  # round trip through the record form


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs", "not key=value"),
        ("nope=1", "matches no setting"),
        ("lr=fast", "expected a number"),
        ("profile=linear", "is not one of"),
        ("mixup=x", "expected a number"),
        ("seed=1", "is chosen with --seeds"),
    ],
)
def test_bad_overrides(catalog, override, message):
    cfg = resolve(catalog.methods.get("ce"), catalog.datasets.get("digits_lt"), "smoke")
    with pytest.raises(RecipeError, match=message):
        apply_overrides(cfg, (override,))


def test_descriptive_fields_do_not_change_identity(catalog):
    import dataclasses

    cfg = resolve(catalog.methods.get("ce"), catalog.datasets.get("digits_lt"), "smoke")
    renamed = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, title="another title"))
    assert config_hash(renamed) == config_hash(cfg)
    assert config_hash(dataclasses.replace(cfg, seed=1)) != config_hash(cfg)


def test_unknown_budget(catalog):
    with pytest.raises(RecipeError, match="has no budget 'huge'; it has smoke, quick, paper"):
        resolve(catalog.methods.get("ce"), catalog.datasets.get("digits_lt"), "huge")


def test_stage_only_keys_point_to_the_pretrain_table(catalog):
    cfg = resolve(catalog.methods.get("livt"), catalog.datasets.get("digits_lt"), "smoke")
    with pytest.raises(RecipeError, match=r"only the MGP stage uses; set train.pretrain.mask_ratio"):
        apply_overrides(cfg, ("mask_ratio=0.5",))
    assert apply_overrides(cfg, ("pretrain.mask_ratio=0.5",)).train.pretrain["mask_ratio"] == 0.5


def test_int_and_float_values_are_the_same_setting(catalog):
    cfg = resolve(catalog.methods.get("la"), catalog.datasets.get("digits_lt"), "smoke")
    assert config_hash(apply_overrides(cfg, ("tau=1",))) == config_hash(cfg)  # recipe says 1.0


def test_unverified_data_is_another_run(tmp_path):
    from ltbench.planning.sweep import plan_runs

    official = plan_runs(["ce"], ["digits_lt"], "smoke", out_dir=tmp_path)[0]
    custom = plan_runs(["ce"], ["digits_lt"], "smoke", out_dir=tmp_path, verify=False)[0]
    assert official.run_id != custom.run_id and official.run_dir != custom.run_dir


def test_a_method_brings_its_own_augmentation_to_its_budget(catalog):
    from ltbench.planning.stages import teacher_config

    cifar = catalog.datasets.get("cifar10_lt")
    paper = resolve(catalog.methods.get("livt"), cifar, "paper")
    assert paper.data.augment.auto_augment == "rand-m9-mstd0.5-inc1" and paper.data.augment.re_prob == 0.25
    assert paper.data.augment.crop_pad == 4  # the dataset's own augmentation stays
    assert resolve(catalog.methods.get("livt"), cifar, "quick").data.augment == cifar.augment
    assert resolve(catalog.methods.get("ce"), cifar, "paper").data.augment == cifar.augment
    # The command's overrides come after the method's.
    assert resolve(catalog.methods.get("livt"), cifar, "paper", overrides=("re_prob=0.1",)).data.augment.re_prob == 0.1
    # DeiT-LT's teacher trains with the dataset's augmentation, not the student's.
    student = resolve(catalog.methods.get("deit_lt"), cifar, "paper")
    assert student.data.augment.auto_augment and teacher_config(student, catalog).data.augment == cifar.augment


def test_method_augmentation_is_checked(tmp_path):
    path = _write(tmp_path, "m", BASE.format(name="m") + "[augment.paper]\nre_prob = 0.25\n")
    with pytest.raises(RecipeError, match=r"augment\.paper names no budget; budgets: smoke"):
        load_method(path)
    path = _write(tmp_path, "m", BASE.format(name="m") + "[augment.smoke]\nre_porb = 0.25\n")
    with pytest.raises(RecipeError, match=r"augment\.smoke: unknown key 're_porb'"):
        load_method(path)
    path = _write(tmp_path, "m", BASE.format(name="m") + "[augment.smoke]\nre_prob = 0.25\n")
    assert load_method(path).augment == {"smoke": {"re_prob": 0.25}}
