"""Reading recipe files: ``include`` bases, method and dataset recipes, the recipe folders and the
catalog of every recipe.

A recipe is data: loading one runs no code. ``methods/*.toml`` and ``datasets/*.toml`` ship
inside the wheel; more folders can be added with ``--recipes DIR`` or the ``LTBENCH_RECIPES``
environment variable (``os.pathsep``-separated; each folder holds ``methods/`` and/or
``datasets/``; a later folder's recipe replaces a built-in one of the same name).

Files whose name starts with ``_`` are bases, not entries: a recipe may ``include`` a base
or a list of bases (one level: bases include nothing) and override any of their keys.
Unknown keys, missing keys and wrong types are errors that name the file and the key (see
:class:`RecipeError`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from ..core.registry import Registry
from .ranges import TRAIN_RANGES, check_backbone_bn, check_data, check_ranges, check_train
from .run_config import apply_dataset_table
from .specs import (
    AugmentSpec,
    DatasetSpec,
    MethodSpec,
    RecipeError,
    TrainConfig,
    convert,
    deep_merge,
    from_mapping,
    plain_name,
)


def _include_path(path: Path, name: str) -> Path:
    """Where recipe ``path``'s ``include = name`` is: next to it, else among the built-in bases
    (so that a recipe in a --recipes folder can include ``_vit.toml``, ``_cnn.toml``, ...)."""
    here = path.parent / name
    if here.is_file():
        return here
    kind = path.parent.name if path.parent.name in ("methods", "datasets") else "methods"
    builtin = builtin_recipe_dir() / kind / name
    if builtin.is_file():
        return builtin
    bases = sorted(p.name for p in (builtin_recipe_dir() / kind).glob("_*.toml") if p.name != "_template.toml")
    raise RecipeError(
        f"{path}: include {name!r} not found next to it ({here}) nor among the built-in bases "
        f"({', '.join(bases) or 'none'})"
    )


def read_toml(path: Path) -> dict[str, Any]:
    """Read a recipe, resolving one level of ``include``: next to the file first, then the
    built-in bases of its kind (``methods/_vit.toml``, ``_cnn.toml``, ``_mgp.toml``)."""
    return _merged(_layers(path))


def _merged(layers: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for _, layer in layers:  # later bases override earlier ones, the file all of them
        merged = deep_merge(merged, layer)
    return merged


def _layers(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The files a recipe is made of, in merge order: its bases, then the recipe itself."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: not valid TOML: {e}") from None
    inc = data.pop("include", None)
    layers = []
    for name in [] if inc is None else [inc] if isinstance(inc, str) else inc:
        base_path = _include_path(path, name)
        try:
            base = tomllib.loads(base_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise RecipeError(f"{base_path}: not valid TOML: {e}") from None
        if "include" in base:
            raise RecipeError(f"{base_path}: included files may not include others (one level only)")
        layers.append((base_path, base))
    return [*layers, (path, data)]


def _check_base_budgets(path: Path, layers: list[tuple[Path, dict[str, Any]]], budgets: dict[str, Any]) -> None:
    """Types and ranges of the budget values recipe ``path`` takes from its bases (``layers``:
    :func:`_layers`), each checked against the base that gave it, so that an error names the
    file that holds the value."""
    for budget, table in budgets.items():
        if not isinstance(table, dict):
            continue
        origin: dict[Path, dict[str, Any]] = {}
        for key, value in table.items():  # the last layer that sets a key gave its value
            source = next(f for f, layer in reversed(layers) if key in (layer.get("budgets") or {}).get(budget, {}))
            if source != path:
                origin.setdefault(source, {})[key] = value
        hints = typing.get_type_hints(TrainConfig)
        for base, own in origin.items():
            where = f"{base} (included by {path}): budgets.{budget}"
            unknown = sorted(set(own) - set(hints))
            if unknown:
                raise RecipeError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(hints))}")
            values = types.SimpleNamespace(**{k: convert(v, hints[k], f"{where}.{k}") for k, v in own.items()})
            check_ranges(values, {k: r for k, r in TRAIN_RANGES.items() if k.split(".")[0] in own}, where, "train.")


def load_method(path: Path) -> MethodSpec:
    layers = _layers(path)
    data = _merged(layers)
    budgets = data.get("budgets")
    if not isinstance(budgets, dict) or not budgets:
        raise RecipeError(f"{path}: missing required table 'budgets' (e.g. [budgets.quick])")
    data = {**data, "budgets": {}}
    spec = from_mapping(MethodSpec, data, str(path))
    _check_base_budgets(path, layers, budgets)
    parsed = {b: from_mapping(TrainConfig, v, f"{path}: budgets.{b}") for b, v in budgets.items()}
    _check_name(spec.name, path)
    for budget in parsed:
        _check_name(budget, path, "budget")
    augment = {}
    for budget, table in spec.augment.items():
        if budget not in parsed:
            raise RecipeError(f"{path}: augment.{budget} names no budget; budgets: {', '.join(parsed)}")
        checked = from_mapping(AugmentSpec, table, f"{path}: augment.{budget}")  # keys and types
        augment[budget] = {k: getattr(checked, k) for k in table}
    for budget, t in parsed.items():
        check_train(t, f"{path}: budgets.{budget}")
    by_dataset: dict[str, dict[str, Any]] = {}
    for ds, budget_tables in spec.dataset_overrides.items():  # from_mapping checked: tables of tables
        for budget, table in budget_tables.items():
            where = f"{path}: dataset_overrides.{ds}.{budget}"
            if budget not in parsed:
                raise RecipeError(f"{where} names no budget; budgets: {', '.join(parsed)}")
            if not isinstance(table, dict):
                raise RecipeError(f"{where}: expected a table of training settings, got {table!r}")
            train, _ = apply_dataset_table(parsed[budget], spec.loss_params, table, where)  # keys and types
            checked = {k: getattr(train, k) for k in table if k != "loss_params"}
            if "loss_params" in table:
                checked["loss_params"] = dict(table["loss_params"])
            by_dataset.setdefault(ds, {})[budget] = checked
    if spec.teacher and any(n.role == "teacher" for n in spec.needs):
        raise RecipeError(f"{path}: both `teacher` and a [[needs]] role 'teacher'; keep one")
    for budget, t in parsed.items():
        check_backbone_bn(spec.objective, t.backbone_bn, f"{path}: budgets.{budget}")
    needs = tuple(dataclasses.replace(n, selection=n.chosen) for n in spec.needs)  # the default, explicit
    return dataclasses.replace(spec, budgets=parsed, augment=augment, dataset_overrides=by_dataset, needs=needs)


def load_dataset(path: Path) -> DatasetSpec:
    spec = from_mapping(DatasetSpec, read_toml(path), str(path))
    _check_name(spec.name, path)
    if spec.file_prefix:
        _check_name(spec.file_prefix, path, "file_prefix")
    if len(spec.mean) != spec.channels or len(spec.std) != spec.channels:
        raise RecipeError(f"{path}: mean and std need {spec.channels} values (one per channel)")
    if spec.groups.index_sizes and sum(spec.groups.index_sizes) != spec.num_classes:
        raise RecipeError(f"{path}: groups.index_sizes must sum to num_classes ({spec.num_classes})")
    check_data(spec, str(path))
    return spec


def _check_name(name: str, path: Path, what: str = "name") -> None:
    if what == "name" and name != path.stem:
        raise RecipeError(f"{path}: name {name!r} must match the file name {path.stem!r}")
    if not plain_name(name):
        raise RecipeError(
            f"{path}: {what} {name!r} cannot name a folder; use letters, digits, '_', '-' and '.' (no '..')"
        )


def builtin_recipe_dir() -> Path:
    """Recipes inside the installed wheel, or the repository root in a source checkout."""
    package = Path(__file__).resolve().parents[1]  # ltbench/, above config/
    packaged = package / "_recipes"
    return packaged if packaged.is_dir() else package.parent


def recipe_dirs(extra: tuple[str, ...] = ()) -> tuple[Path, ...]:
    env = tuple(p for p in os.environ.get("LTBENCH_RECIPES", "").split(os.pathsep) if p)
    dirs = (builtin_recipe_dir(), *map(Path, env), *map(Path, extra))
    for d in dirs[1:]:
        if not d.is_dir():
            raise RecipeError(f"recipe folder {d} does not exist (from --recipes or LTBENCH_RECIPES)")
    return dirs


@dataclass(frozen=True)
class Catalog:
    """All known methods and datasets, with the file each came from."""

    methods: Registry[MethodSpec]
    datasets: Registry[DatasetSpec]
    origins: dict[str, Path]


def read_catalog(extra_dirs: tuple[str, ...] = (), check: Callable[[str, Any, Path], None] | None = None) -> Catalog:
    """Parse every recipe in the built-in folders and ``extra_dirs``; ``check(kind, spec, path)``
    runs on each recipe as it loads (``kind``: ``methods`` or ``datasets``). The names a recipe
    gives to registries (models, losses, sources) are checked one layer up, by
    :func:`ltbench.planning.catalog.load_catalog`, which every command uses.

    Raises:
        RecipeError: the first malformed recipe, naming its file and key.
    """
    methods: Registry[MethodSpec] = Registry("method", targets=False)
    datasets: Registry[DatasetSpec] = Registry("dataset", targets=False)
    origins: dict[str, Path] = {}
    for root in recipe_dirs(extra_dirs):
        for sub, loader, reg in (("methods", load_method, methods), ("datasets", load_dataset, datasets)):
            for path in sorted((root / sub).glob("*.toml")):
                if path.name.startswith("_"):
                    continue
                spec = loader(path)
                if check is not None:
                    check(sub, spec, path)
                reg.add(spec.name, spec, replace=True)
                origins[f"{sub}/{spec.name}"] = path
    return Catalog(methods, datasets, origins)
