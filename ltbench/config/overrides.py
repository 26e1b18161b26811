"""``--set key=value`` overrides: which keys a run has, which stage an override reaches, and applying them."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import tomllib

from .specs import (
    BN_OBJECTIVES,
    DESCRIPTIVE_KEYS,
    STAGE_ONLY_KEYS,
    MethodSpec,
    RecipeError,
    RunConfig,
    plain_name,
    run_config_from_dict,
)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# What --set may not change: the names a run is filed and labelled under, its seeds, and
# where its files come from. Each says how to get what the user wanted instead.
_NEW_RECIPE = "names the recipe; copy the recipe under another name into a folder given with --recipes DIR"


_FIXED = {
    "method.name": _NEW_RECIPE,
    "method.version": _NEW_RECIPE,
    "data.name": _NEW_RECIPE,
    "data.version": _NEW_RECIPE,
    "data.source": _NEW_RECIPE,
    "budget": "is chosen with --budget",
    "seed": "is chosen with --seeds",
    "data_seed": "is chosen with --data-seed",
    "data.default_root": "is a path; give the data's folder with --root",
    "data.checksums": "is what verifies the data; use --no-verify for a custom copy",
    "method.needs": "names the stages a run consumes; write a recipe (--recipes DIR)",
    "method.objective": _NEW_RECIPE,
}


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set profile=step


def _match_key(keys, key: str) -> list[str]:
    """The dotted paths among ``keys`` that override key ``key`` names: itself, else those
    ending in ``.key``, the shallowest if it is the only one (``epochs`` means train.epochs,
    not train.pretrain.epochs)."""
    matches = [k for k in keys if k == key] or [k for k in keys if k.endswith("." + key)]
    if len(matches) > 1:
        depth = min(k.count(".") for k in matches)
        shallowest = [k for k in matches if k.count(".") == depth]
        matches = shallowest if len(shallowest) == 1 else matches
    return matches


def _type_keys(cls: type, prefix: str) -> set[str]:
    """The dotted paths of a config dataclass's fields, nested dataclasses expanded."""
    hints = typing.get_type_hints(cls)
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out |= _type_keys(tp, f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out


def _method_keys(spec: MethodSpec, budget: str | None) -> set[str]:
    """The settings ``--set`` can reach in a run of ``spec``: its loss parameters, its
    budget's stage table (all budgets' when ``budget`` is None), and the keys every run has."""
    keys = _type_keys(RunConfig, "") - {"method.loss_params", "train.pretrain"}
    if spec.objective not in BN_OBJECTIVES:
        keys.discard("train.backbone_bn")  # read by cRT / LWS only
    keys |= {f"method.loss_params.{k}" for k in spec.loss_params}
    budgets = [spec.budgets[budget]] if budget in spec.budgets else list(spec.budgets.values())
    for t in budgets:
        keys |= {f"train.pretrain.{k}" for k in _flatten(t.pretrain)}
    return keys


def overrides_for(
    method: MethodSpec | str,
    overrides: typing.Sequence[str],
    selected: typing.Sequence[MethodSpec | str],
    budget: str | None = None,
) -> tuple[str, ...]:
    """The ``--set`` overrides that apply to ``method`` among the ``selected`` methods.

    A key whose first dotted part is a selected method's name is scoped to that method:
    ``la.tau=1.5`` gives ``tau=1.5`` to ``la`` and nothing to the others. Any other key
    applies to every selected method, and must then be a setting of each: with specs (not
    bare names) given, ``tau=1.5`` for ``ce`` and ``la`` is refused, naming ``ce``, which
    has no ``tau``, and saying how to scope it. Everything else is checked later by
    :func:`apply_overrides` (unknown keys, fixed fields).

    Raises:
        RecipeError: an override that is not ``key=value``, or an unscoped key that some
            selected methods lack.
    """
    name = method if isinstance(method, str) else method.name
    names = [m if isinstance(m, str) else m.name for m in selected]
    specs = [m for m in selected if not isinstance(m, str)]
    out: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value (e.g. --set train.epochs=3)")
        key, text = (s.strip() for s in item.split("=", 1))
        scope, dot, rest = key.partition(".")
        if dot and scope in names:
            if scope == name:
                out.append(f"{rest}={text}")
            continue
        if len(specs) > 1:
            has = {m.name: bool(_match_key(_method_keys(m, budget), key)) for m in specs}
            lacking = [m for m, ok in has.items() if not ok]
            if lacking and len(lacking) < len(has):
                having = [m for m, ok in has.items() if ok]
                scoped = " ".join(f"--set {m}.{key}={text}" for m in having)
                raise RecipeError(
                    f"override {item!r}: {', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no setting "
                    f"{key!r} ({', '.join(having)} {'has' if len(having) == 1 else 'have'}); "
                    f"scope it to a method with its name: {scoped}"
                )
        out.append(item)
    return tuple(out)


def stage_overrides(
    stage: MethodSpec,
    overrides: typing.Sequence[str],
    selected: typing.Sequence[MethodSpec | str],
    budget: str | None = None,
) -> tuple[str, ...]:
    """The ``--set`` overrides that reach a consumed backbone stage of method ``stage``, so that
    it is the very run that ``stage`` gives as a selected method under the same command: those
    scoped to ``stage`` by name, and the unscoped ones that name a setting ``stage`` has. An
    unscoped key it lacks (``backbone_bn``, a loss parameter of the consuming method only) and
    one scoped to another method stay with the consuming stage."""
    names = [m if isinstance(m, str) else m.name for m in selected]
    keys = _method_keys(stage, budget)
    out: list[str] = []
    for item in overrides:
        key, text = (s.strip() for s in item.split("=", 1))  # overrides_for checked key=value
        scope, dot, rest = key.partition(".")
        if dot and scope in names:
            if scope == stage.name:
                out.append(f"{rest}={text}")
        elif _match_key(keys, key):
            out.append(item)
    return tuple(out)


def apply_overrides(cfg: RunConfig, overrides: tuple[str, ...]) -> RunConfig:
    """Apply ``key=value`` overrides; a key is a dotted path or a unique last part of one.

    Example: ``rho=10``, ``data.longtail.rho=10``, ``epochs=3``, ``tau=1.05``.
    """
    d = cfg.to_dict()
    flat = _flatten(d)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value (e.g. --set train.epochs=3)")
        key, text = (s.strip() for s in item.split("=", 1))
        matches = _match_key(flat, key)
        if len(matches) != 1:
            valid = sorted(k for k in flat if k.split(".")[-1] not in DESCRIPTIVE_KEYS)
            what = "is ambiguous" if matches else "matches no setting"
            options = matches or valid
            raise RecipeError(f"override key {key!r} {what}; use one of: {', '.join(options)}")
        path = matches[0].split(".")
        fixed = _FIXED.get(matches[0]) or _FIXED.get(".".join(path[:2]))
        if fixed:
            raise RecipeError(f"override {item!r} would change {matches[0]}, which {fixed}")
        if matches[0] == "data.file_prefix" and not plain_name(text):
            raise RecipeError(f"override {item!r}: file_prefix is a file name prefix, not a path (e.g. ImageNet_LT)")
        if len(path) == 2 and path[0] == "train" and path[1] in STAGE_ONLY_KEYS and cfg.method.model != "mae":
            raise RecipeError(
                f"override {key!r} sets {matches[0]}, which only the MGP stage uses; "
                f"set train.pretrain.{path[-1]} (e.g. --set pretrain.{path[-1]}={text})"
            )
        node = d
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = _parse_value(text)
    out = run_config_from_dict(d, "override")
    sizes, n = out.data.groups.index_sizes, out.data.num_classes
    if sizes and sum(sizes) != n:  # e.g. num_classes=3 on a dataset whose index blocks name 8,142 classes
        raise RecipeError(
            f"overrides {' '.join(overrides)}: groups.index_sizes {list(sizes)} sum to {sum(sizes)}, not "
            f"num_classes {n}; set them together (e.g. --set groups.index_sizes=[1,1,1] for 3 classes)"
        )
    return out
