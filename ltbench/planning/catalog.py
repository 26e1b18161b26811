"""The catalog of recipes, checked against the registries: every model, loss (and its parameters)
and objective a recipe names resolves before anything runs.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..config import recipe_files
from ..config.recipe_files import Catalog, builtin_recipe_dir, read_catalog
from ..config.specs import DatasetSpec, MethodSpec, RecipeError


def _plugin_folder(name: str, path: Path) -> None:
    """A ``module:attr`` name in a recipe outside the package may import from its folder."""
    from ..core.registry import add_import_dir

    if ":" in name and path.parent.parent.resolve() != builtin_recipe_dir().resolve():
        add_import_dir(path.parent.parent)


def _check_named(registry, name: str, path: Path, key: str) -> None:
    """``name`` resolves in ``registry`` (registered, entry point or ``module:attr``) when the
    catalog loads; otherwise a RecipeError naming the file, the key and the choices."""
    from ..core.registry import PluginImportError, UnknownNameError

    _plugin_folder(name, path)
    try:
        registry.get(name)
    except (UnknownNameError, PluginImportError) as e:
        raise RecipeError(f"{path}: {key}: {e}") from None


def _check_model(spec: MethodSpec, path: Path) -> None:
    from ..training.models import MODELS

    _check_named(MODELS, spec.model, path, "model")


def _check_objective(spec: MethodSpec, path: Path) -> None:
    if spec.objective:
        from ..training.objectives import OBJECTIVES

        _check_named(OBJECTIVES, spec.objective, path, "objective")


# Capability flags of a loss class, the model family whose outputs such a loss takes, and what
# the error says on either side.
_PAIRED = (
    ("multi_expert", "cnn_experts", "a loss of every expert's logits, e.g. ride or sade", "one logit slice per expert"),
    ("contrastive", "cnn_contrastive", "a contrastive loss, e.g. bcl or paco", "a contrastive model's outputs"),
)


def _check_loss(spec: MethodSpec, path: Path) -> None:
    """The method's loss resolves (a registered name, an entry point of ``ltbench.losses`` or
    ``module:attr``) and accepts every key of its ``loss_params``: a misspelt key fails here,
    when the catalog loads, not after the data is built. Imports only the code the recipe names."""
    from ..core.registry import PluginImportError, UnknownNameError

    _plugin_folder(spec.loss, path)
    from ..training.losses import check_loss_params  # here: loads torch

    try:
        cls = check_loss_params(spec.loss, spec.loss_params)
    except (UnknownNameError, PluginImportError) as e:
        raise RecipeError(f"{path}: loss: {e}") from None
    except TypeError as e:  # no signature: not a class or function
        raise RecipeError(f"{path}: loss {spec.loss!r} is not a class or function of class_counts: {e}") from None
    except ValueError as e:
        raise RecipeError(f"{path}: loss_params: {e}") from None
    # Capabilities, not names: a distillation loss needs a two-token DeiT and a teacher.
    distills = bool(getattr(cls, "distills", False))
    if not spec.objective and distills != (spec.model == "deit"):
        need = "a distillation loss (one whose class sets distills = True, e.g. deit_lt)"
        why = (
            f"model 'deit' needs {need}" if spec.model == "deit" else f"loss {spec.loss!r} distils: set model = 'deit'"
        )
        raise RecipeError(f"{path}: {why}")
    for flag, model, needs, takes in _PAIRED:  # a loss of such outputs and the one model that gives them
        if bool(getattr(cls, flag, False)) != (spec.model == model):
            why = (
                f"model {model!r} needs {needs} (one whose class sets {flag} = True), not {spec.loss!r}"
                if spec.model == model
                else f"loss {spec.loss!r} takes {takes}: set model = {model!r}"
            )
            raise RecipeError(f"{path}: {why}")
    if distills and not spec.teacher:
        raise RecipeError(f"{path}: loss {spec.loss!r} distils from a teacher; set teacher = '<method>'")


def check_plugins(kind: str, spec: MethodSpec | DatasetSpec, path: Path) -> None:
    """A method's model, loss (with its parameters) and objective, and a dataset's source,
    resolve in their registries: a misspelt name fails when the recipes load, not mid-sweep."""
    if kind == "datasets":
        from ..data.sources import SOURCES

        if spec.source not in SOURCES:
            raise RecipeError(f"{path}: source: {SOURCES.unknown_message(spec.source)}")
        return
    _check_model(spec, path)
    _check_loss(spec, path)
    _check_objective(spec, path)
    for budget, train in spec.budgets.items():
        check_sampler(train.sampler, f"{path}: budgets.{budget}")
        check_test_views(train.test_views, spec.model, f"{path}: budgets.{budget}")


def check_test_views(test_views: int, model: str, where: str) -> None:
    """``train.test_views`` asks for each expert's logits on augmented test views: only a
    multi-expert model has experts (also checked after ``--set`` overrides)."""
    if test_views and model != "cnn_experts":
        raise RecipeError(
            f"{where}: train.test_views = {test_views} stores each expert's logits on test views, and model "
            f"{model!r} has no experts; use model = 'cnn_experts' or set test_views = 0"
        )


def check_sampler(name: str, where: str) -> None:
    """``train.sampler`` names a registered sampler (also after ``--set`` overrides)."""
    from ..data.samplers import SAMPLERS

    if name not in SAMPLERS:
        raise RecipeError(f"{where}: {SAMPLERS.unknown_message(name)}")


@functools.lru_cache(maxsize=8)
def load_catalog(extra_dirs: tuple[str, ...] = ()) -> Catalog:
    """Every recipe in the built-in folders and ``extra_dirs``, parsed
    (:func:`ltbench.config.recipe_files.read_catalog`) and checked against the registries.

    Raises:
        RecipeError: the first malformed recipe, naming its file and key.
    """
    return read_catalog(extra_dirs, check=check_plugins)


def load_method(path: Path) -> MethodSpec:
    """One method recipe, parsed (:func:`ltbench.config.recipe_files.load_method`) and checked
    against the registries, as :func:`load_catalog` loads each."""
    spec = recipe_files.load_method(path)
    check_plugins("methods", spec, path)
    return spec


def load_dataset(path: Path) -> DatasetSpec:
    """One dataset recipe, parsed and its source checked, as :func:`load_catalog` loads each."""
    spec = recipe_files.load_dataset(path)
    check_plugins("datasets", spec, path)
    return spec
