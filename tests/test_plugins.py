"""Methods from a folder outside the package: recipes that include the built-in bases, losses
named as ``module:attr`` or through entry points, load-time checks, per-method --set."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import torch

from ltbench import api
from ltbench.config.overrides import overrides_for
from ltbench.config.run_config import resolve
from ltbench.config.specs import RecipeError
from ltbench.core import registry
from ltbench.core.registry import PluginImportError, Registry, UnknownNameError
from ltbench.planning.catalog import load_catalog
from ltbench.training.losses import LOSSES, build_loss, loss_parameters

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding_a_method.md"


def doc_block(marker: str) -> str:
    """The fenced block after ``<!-- marker -->`` in docs/adding_a_method.md: the test runs
    exactly what the walkthrough shows."""
    m = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"docs/adding_a_method.md lost its {marker} block"
    return m.group(1)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """The walkthrough's lab folder; plugin state of this process is restored afterwards."""
    monkeypatch.setattr(registry, "_IMPORT_DIRS", [])
    monkeypatch.delenv(registry.IMPORT_PATH_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "my_losses", raising=False)
    root = tmp_path / "lab"
    (root / "methods").mkdir(parents=True)
    (root / "methods" / "cnn_my_focal.toml").write_text(doc_block("plugin-recipe"))
    (root / "my_losses.py").write_text(doc_block("plugin-code"))
    yield root
    sys.modules.pop("my_losses", None)


def fresh(*dirs):
    """The catalog as the files are now (load_catalog caches per folder tuple)."""
    return load_catalog.__wrapped__(tuple(map(str, dirs)))


def quiet():
    from rich.console import Console

    return Console(file=open("/dev/null", "w"))  # noqa: SIM115


def test_the_walkthrough_runs_focal_loss_from_a_folder_outside_the_package(lab, tmp_path, monkeypatch):
    catalog = load_catalog((str(lab),))
    spec = catalog.methods.get("cnn_my_focal")
    cls = LOSSES.get(spec.loss)
    assert cls.__module__ == "my_losses" and Path(sys.modules["my_losses"].__file__).parent == lab
    assert str(lab) not in sys.path  # on the path only while importing
    seen = []
    forward = cls.forward

    def spy(self, logits, target):
        seen.append(type(self))
        return forward(self, logits, target)

    monkeypatch.setattr(cls, "forward", spy)
    (record,) = run_lab(lab, tmp_path, overrides=["epochs=1"])
    assert record["status"] == "done"
    assert record["config"]["method"]["loss"] == "my_losses:FocalLoss"
    assert record["config"]["method"]["loss_params"] == {"gamma": 2.0}
    assert seen and set(seen) == {cls}  # training called the plugin's loss, nothing else


def run_lab(lab, tmp_path, method="cnn_my_focal", **kw):
    """A lab method (the focal one by default), smoke budget, on digits_lt, into ``tmp_path``."""
    return api.run(
        methods=[method],
        data=["digits_lt"],
        budget="smoke",
        recipes=[str(lab)],
        store=tmp_path / "s.db",
        out_dir=tmp_path / "runs",
        console=quiet(),
        **kw,
    )


def test_a_recipe_outside_includes_the_builtin_base(lab):
    catalog = fresh(lab)
    mine, cnn_ce = catalog.methods.get("cnn_my_focal"), catalog.methods.get("cnn_ce")
    assert mine.model == "cnn" and mine.budgets == cnn_ce.budgets  # all from _cnn.toml
    assert catalog.origins["methods/cnn_my_focal"] == lab / "methods" / "cnn_my_focal.toml"
    (lab / "methods" / "broken.toml").write_text('include = "_nope.toml"\nname = "broken"\n')
    with pytest.raises(RecipeError, match=r"broken\.toml: include '_nope\.toml' not found.*_cnn\.toml"):
        fresh(lab)


def test_a_base_next_to_the_recipe_wins_over_the_builtin_one(lab):
    builtin = load_catalog().methods.get("cnn_ce").budgets["smoke"]
    base = (Path(load_catalog().origins["methods/cnn_ce"]).parent / "_cnn.toml").read_text()
    (lab / "methods" / "_cnn.toml").write_text(base.replace("epochs = 2", "epochs = 7", 1))
    mine = fresh(lab).methods.get("cnn_my_focal").budgets["smoke"]
    assert builtin.epochs != 7 and mine.epochs == 7


def test_a_misspelt_loss_param_is_a_recipe_error_before_any_data(lab, tmp_path, monkeypatch):
    recipe = lab / "methods" / "cnn_my_focal.toml"
    recipe.write_text(recipe.read_text().replace("gamma = 2.0", "gama = 2.0"))
    import ltbench.data

    def no_data(*a, **k):
        raise AssertionError("data built for a recipe that cannot run")

    monkeypatch.setattr(ltbench.data, "build_data", no_data)
    with pytest.raises(RecipeError) as err:
        run_lab(lab, tmp_path)
    msg = str(err.value)
    assert str(recipe) in msg and "'gama'" in msg and "Did you mean 'gamma'" in msg and "Valid: gamma" in msg
    assert not (tmp_path / "runs").exists() and not (tmp_path / "s.db").exists()


def test_the_cli_exits_2_on_a_misspelt_loss_param(lab, capsys):
    from ltbench.cli import main

    recipe = lab / "methods" / "cnn_my_focal.toml"
    recipe.write_text(recipe.read_text().replace("gamma = 2.0", "gama = 2.0"))
    assert main(["--recipes", str(lab), "list", "methods"]) == 2
    out = capsys.readouterr()
    assert "gama" in out.out + out.err


def test_a_module_that_does_not_import_is_a_clear_recipe_error(lab):
    recipe = lab / "methods" / "cnn_my_focal.toml"
    recipe.write_text(recipe.read_text().replace("my_losses:FocalLoss", "no_such_lab_module:FocalLoss"))
    with pytest.raises(RecipeError, match=r"cnn_my_focal\.toml: loss: cannot import 'no_such_lab_module'.*Python path"):
        fresh(lab)
    recipe.write_text(recipe.read_text().replace("no_such_lab_module:FocalLoss", "my_losses:FocalLos"))
    with pytest.raises(RecipeError, match=r"no attribute 'FocalLos'\. Did you mean 'FocalLoss'"):
        fresh(lab)
    (lab / "broken_lab_losses.py").write_text("raise RuntimeError('lab code is broken')\n")
    recipe.write_text(recipe.read_text().replace("my_losses:FocalLos", "broken_lab_losses:FocalLoss"))
    with pytest.raises(
        RecipeError, match=r"cannot import .broken_lab_losses. .*plugin folder.*RuntimeError: lab code is broken"
    ):
        fresh(lab)


def test_an_unknown_plain_loss_name_lists_every_loss(lab):
    recipe = lab / "methods" / "cnn_my_focal.toml"
    recipe.write_text(recipe.read_text().replace("my_losses:FocalLoss", "not_a_loss"))
    with pytest.raises(RecipeError) as err:
        fresh(lab)
    assert all(name in str(err.value) for name in LOSSES.names()) and "module:attr" in str(err.value)


def test_a_recipe_present_but_not_naming_code_imports_nothing(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "unused_lab_mod", raising=False)
    (tmp_path / "methods").mkdir()
    (tmp_path / "unused_lab_mod.py").write_text("raise RuntimeError('imported')\n")
    (tmp_path / "methods" / "plain.toml").write_text(
        'include = "_cnn.toml"\nname = "plain"\ntitle = "t"\npaper = "p"\nversion = 1\nloss = "ce"\n'
    )
    assert "plain" in fresh(tmp_path).methods
    assert "unused_lab_mod" not in sys.modules


def test_an_entry_point_registers_a_loss(tmp_path, monkeypatch, request):
    (tmp_path / "ep_lab_losses.py").write_text(doc_block("plugin-code"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ep_lab_losses", raising=False)
    ep = importlib.metadata.EntryPoint(name="ep_focal", value="ep_lab_losses:FocalLoss", group="ltbench.losses")
    real = importlib.metadata.entry_points

    def entry_points(**params):
        if params.get("group") == "ltbench.losses":
            return importlib.metadata.EntryPoints([ep])
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    request.addfinalizer(LOSSES.reload_entry_points)
    LOSSES.reload_entry_points()
    assert "ep_focal" in LOSSES and "ep_focal" in LOSSES.names()
    assert "ep_lab_losses" not in sys.modules  # listed from metadata, imported on first use
    cls = LOSSES.get("ep_focal")
    assert cls.__module__ == "ep_lab_losses" and loss_parameters(cls) == ["gamma"]
    loss = build_loss("ep_focal", [50, 5], gamma=0.0)
    assert isinstance(loss, cls)
    logits, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(loss(logits, y), torch.nn.functional.cross_entropy(logits, y))  # gamma 0: CE
    # and a recipe may name it
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "ep.toml").write_text(
        'include = "_cnn.toml"\nname = "ep"\ntitle = "t"\npaper = "p"\nversion = 1\nloss = "ep_focal"\n'
        "[loss_params]\ngamma = 1.0\n"
    )
    assert load_catalog((str(tmp_path),)).methods.get("ep").loss == "ep_focal"


def test_a_builtin_name_wins_over_an_entry_point(monkeypatch, request):
    name = LOSSES.names()[0]
    builtin = LOSSES.get(name)
    ep = importlib.metadata.EntryPoint(name=name, value="collections:OrderedDict", group="ltbench.losses")
    monkeypatch.setattr(registry, "_entry_points", lambda group: [ep])
    request.addfinalizer(LOSSES.reload_entry_points)
    LOSSES.reload_entry_points()
    with pytest.warns(UserWarning, match="left out"):
        LOSSES.names()
    assert LOSSES.get(name) is builtin


def test_any_registry_loads_its_entry_point_group_lazily(monkeypatch):
    calls = []

    def entry_points(group):
        calls.append(group)
        return [importlib.metadata.EntryPoint(name="od", value="collections:OrderedDict", group=group)]

    monkeypatch.setattr(registry, "_entry_points", entry_points)
    reg: Registry = Registry("sampler", entry_points="ltbench.samplers")
    reg.add("instance", "collections:Counter")
    assert calls == [] and reg.get("instance").__name__ == "Counter" and calls == []
    assert reg.get("od").__name__ == "OrderedDict" and calls == ["ltbench.samplers"]
    assert reg.names() == ["instance", "od"] and calls == ["ltbench.samplers"]  # discovered once
    assert reg.get("collections:deque").__name__ == "deque"  # module:attr in any registry
    with pytest.raises(UnknownNameError, match="unknown sampler 'odd'.*Did you mean 'od'"):
        reg.get("odd")
    with pytest.raises(PluginImportError, match="no attribute 'dequ'"):
        reg.get("collections:dequ")


def test_catalog_names_are_not_code():
    with pytest.raises(UnknownNameError):
        load_catalog().methods.get("collections:OrderedDict")


# ------------------------------------------------------------------ --set per method


def _loss_param_only_methods(catalog):
    """(a method with loss parameter p, a method without p, p), found by iterating the catalog."""
    specs = [catalog.methods.get(n) for n in catalog.methods.names()]
    for with_p in specs:
        for p in with_p.loss_params:
            for without in specs:
                if p not in without.loss_params and "smoke" in with_p.budgets and "smoke" in without.budgets:
                    if not any(k.endswith("." + p) or k == p for k in _non_loss_keys(catalog, without)):
                        return with_p, without, p
    pytest.skip("no two methods differ in a loss parameter")


def _non_loss_keys(catalog, spec):
    from ltbench.config.overrides import _flatten

    cfg = resolve(spec, catalog.datasets.get("digits_lt"), "smoke")
    return [k for k in _flatten(cfg.to_dict()) if not k.startswith("method.loss_params.")]


def test_a_scoped_set_changes_only_that_method(catalog):
    has, lacks, p = _loss_param_only_methods(catalog)
    value = has.loss_params[p] * 1.5 + 1.0
    sets = [f"{has.name}.{p}={value}", "epochs=1"]
    ds = catalog.datasets.get("digits_lt")
    mine = overrides_for(has, sets, [lacks, has], "smoke")
    theirs = overrides_for(lacks, sets, [lacks, has], "smoke")
    assert mine == (f"{p}={value}", "epochs=1") and theirs == ("epochs=1",)
    assert resolve(has, ds, "smoke", overrides=mine).method.loss_params[p] == value
    assert resolve(lacks, ds, "smoke", overrides=theirs).method.loss_params == lacks.loss_params


def test_ce_la_tau_through_the_planner(catalog, tmp_path):
    if not {"ce", "la"} <= set(catalog.methods.names()) or "tau" not in catalog.methods.get("la").loss_params:
        pytest.skip("needs the built-in ce and la")
    from ltbench.planning.sweep import plan_runs

    specs = plan_runs(["ce", "la"], ["digits_lt"], "smoke", overrides=["la.tau=1.5"], out_dir=tmp_path, catalog=catalog)
    by = {s.config.method.name: s.config for s in specs}
    assert by["la"].method.loss_params["tau"] == 1.5
    assert by["ce"].method.loss_params == catalog.methods.get("ce").loss_params
    with pytest.raises(RecipeError, match=r"'tau=1.5': ce has no setting 'tau' \(la has\).*--set la\.tau=1\.5"):
        plan_runs(["ce", "la"], ["digits_lt"], "smoke", overrides=["tau=1.5"], out_dir=tmp_path, catalog=catalog)


def test_an_unscoped_key_some_methods_lack_names_them(catalog):
    has, lacks, p = _loss_param_only_methods(catalog)
    with pytest.raises(RecipeError) as err:
        overrides_for(has, [f"{p}=2.0"], [lacks, has], "smoke")
    msg = str(err.value)
    assert f"{lacks.name} has no setting {p!r}" in msg and f"--set {has.name}.{p}=2.0" in msg
    assert overrides_for(has, [f"{p}=2.0"], [has], "smoke") == (f"{p}=2.0",)  # alone, it is fine


def test_keys_every_method_has_pass_unscoped(catalog):
    names = catalog.methods.names()
    specs = [catalog.methods.get(n) for n in names]
    for spec in specs:
        assert overrides_for(spec, ["epochs=1", "rho=5", "data.longtail.rho=5"], specs) == (
            "epochs=1",
            "rho=5",
            "data.longtail.rho=5",
        )


def test_scoped_sets_still_refuse_identity_fields(catalog):
    ce = catalog.methods.get(catalog.methods.names()[0])
    mine = overrides_for(ce, [f"{ce.name}.method.name=x"], [ce])
    with pytest.raises(RecipeError, match="names the recipe"):
        resolve(ce, catalog.datasets.get("digits_lt"), next(iter(ce.budgets)), overrides=mine)
    with pytest.raises(RecipeError, match="is not key=value"):
        overrides_for(ce, ["epochs"], [ce])


def test_model_and_loss_must_fit_by_capability(tmp_path):
    import shutil

    from ltbench.config.recipe_files import builtin_recipe_dir
    from ltbench.config.specs import RecipeError
    from ltbench.planning.catalog import load_method

    folder = tmp_path / "methods"
    folder.mkdir()
    shutil.copy(builtin_recipe_dir() / "methods" / "_cnn.toml", folder)
    head = 'include = "_cnn.toml"\nname = "{n}"\ntitle = "t"\npaper = "p"\nversion = 1\n'
    (folder / "cnn_distils.toml").write_text(head.format(n="cnn_distils") + 'loss = "deit_lt"\nteacher = "cnn_ce"\n')
    with pytest.raises(RecipeError, match="distils: set model = 'deit'"):
        load_method(folder / "cnn_distils.toml")
    (folder / "plain_deit.toml").write_text(head.format(n="plain_deit") + 'loss = "ce"\nmodel = "deit"\n')
    with pytest.raises(RecipeError, match="model 'deit' needs a distillation loss"):
        load_method(folder / "plain_deit.toml")


def test_crt_from_a_lab_folder_is_one_recipe_and_one_function(lab, tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "my_stages", raising=False)
    (lab / "methods" / "cnn_my_crt.toml").write_text(doc_block("crt-recipe"))
    (lab / "my_stages.py").write_text(doc_block("crt-code"))
    records = run_lab(lab, tmp_path, "cnn_my_crt")
    backbone, crt = records
    assert (backbone["method"], crt["method"]) == ("cnn_ce", "cnn_my_crt")
    assert [r["status"] for r in records] == ["done", "done"]
    assert crt["needs"] == {"backbone": backbone["run_id"]}
    assert crt["config"]["train"]["sampler"] == "class_balanced"
    sys.modules.pop("my_stages", None)


def test_a_model_family_from_a_lab_folder(lab, monkeypatch):
    from ltbench.training.models import MODELS, build_model

    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    (lab / "my_models.py").write_text(
        "import torch\n\n\ndef linear(cfg):\n"
        "    d = cfg.data\n"
        "    pixels = d.channels * d.image_size**2\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(pixels, d.num_classes))\n"
    )
    recipe = (lab / "methods" / "cnn_my_focal.toml").read_text()
    (lab / "methods" / "lin_focal.toml").write_text(
        recipe.replace('name = "cnn_my_focal"', 'name = "lin_focal"').replace(
            'model = "cnn"', 'model = "my_models:linear"'
        )
    )
    catalog = fresh(lab)
    cfg = resolve(catalog.methods.get("lin_focal"), catalog.datasets.get("digits_lt"), "smoke")
    model = build_model(cfg)
    assert isinstance(model[1], torch.nn.Linear) and model[1].out_features == 10
    assert "vit" in MODELS and "my_models:linear" not in MODELS.names()  # targets are not listed
    (lab / "methods" / "bad_model.toml").write_text(
        recipe.replace('name = "cnn_my_focal"', 'name = "bad_model"').replace('model = "cnn"', 'model = "cnnn"')
    )
    with pytest.raises(RecipeError, match=r"bad_model\.toml: model: unknown model 'cnnn'\. Did you mean 'cnn'"):
        fresh(lab)
    sys.modules.pop("my_models", None)


def test_a_dataset_recipe_with_an_unknown_source_is_refused_when_it_loads(tmp_path):
    from ltbench.config.recipe_files import builtin_recipe_dir
    from ltbench.planning.catalog import load_dataset

    text = (builtin_recipe_dir() / "datasets" / "digits_lt.toml").read_text()
    (tmp_path / "digits_lt.toml").write_text(text.replace('source = "sklearn_digits"', 'source = "sklearn_digit"'))
    with pytest.raises(RecipeError, match=r"digits_lt\.toml: source: unknown data source 'sklearn_digit'"):
        load_dataset(tmp_path / "digits_lt.toml")
