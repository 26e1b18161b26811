"""A run's configuration from a method, a dataset and a budget: the method's per-dataset settings,
then the command's overrides.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .overrides import apply_overrides
from .ranges import check_auto_augment, check_backbone_bn, check_data, check_train
from .specs import (
    BN_OBJECTIVES,
    DatasetSpec,
    MethodConfig,
    MethodSpec,
    RecipeError,
    RunConfig,
    TrainConfig,
    deep_merge,
    from_mapping,
    to_plain,
)


def apply_dataset_table(
    train: TrainConfig, loss_params: dict[str, Any], table: dict[str, Any], where: str
) -> tuple[TrainConfig, dict[str, Any]]:
    """``train`` and ``loss_params`` with one ``dataset_overrides.<dataset>.<budget>`` table applied."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(table) - fields - {"loss_params"})
    if unknown:
        raise RecipeError(
            f"{where}: unknown key {unknown[0]!r}; valid keys: loss_params (a table), {', '.join(sorted(fields))}"
        )
    own = {k: v for k, v in table.items() if k != "loss_params"}
    merged = from_mapping(TrainConfig, deep_merge(to_plain(dataclasses.asdict(train)), own), where)
    check_train(merged, where)
    params = table.get("loss_params", {})
    if not isinstance(params, dict):
        raise RecipeError(f"{where}.loss_params: expected a table, got {params!r}")
    new = sorted(set(params) - set(loss_params))
    if new:
        raise RecipeError(
            f"{where}.loss_params: {new[0]!r} is not a loss parameter the method sets; "
            f"it sets: {', '.join(sorted(loss_params)) or '(none)'}"
        )
    return merged, {**loss_params, **params}


def resolve(
    method: MethodSpec,
    dataset: DatasetSpec,
    budget: str,
    seed: int = 0,
    data_seed: int = 0,
    overrides: tuple[str, ...] = (),
) -> RunConfig:
    """The run configuration for ``method`` on ``dataset`` under ``budget``, with overrides."""
    if budget not in method.budgets:
        raise RecipeError(f"method {method.name!r} has no budget {budget!r}; it has {', '.join(method.budgets)}")
    train, loss_params = method.budgets[budget], dict(method.loss_params)
    table = method.dataset_overrides.get(dataset.name, {}).get(budget)
    if table:  # the method's settings for this dataset, before the command's overrides
        where = f"method {method.name}: dataset_overrides.{dataset.name}.{budget}"
        train, loss_params = apply_dataset_table(train, loss_params, table, where)
    mcfg = MethodConfig(
        method.name,
        method.version,
        method.model,
        method.loss,
        loss_params,
        method.pretrain,
        method.teacher,
        method.teacher_seed,
        method.pretrain_seed,
        method.objective,
        method.needs,
    )
    own = method.augment.get(budget)
    if own:  # the method's augmentation, before the command's overrides
        dataset = dataclasses.replace(dataset, augment=dataclasses.replace(dataset.augment, **own))
    cfg = RunConfig(mcfg, dataset, train, budget, seed, data_seed)
    cfg = apply_overrides(cfg, overrides) if overrides else cfg
    where = f"method {method.name}, budget {budget}" + (f" (with --set {' '.join(overrides)})" if overrides else "")
    check_backbone_bn(method.objective, cfg.train.backbone_bn, where)
    if method.objective in BN_OBJECTIVES and not cfg.train.backbone_bn:  # the reference's, explicit
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, backbone_bn="train"))
    check_train(cfg.train, where)
    if overrides:  # the dataset recipe was checked when it loaded
        check_data(cfg.data, f"dataset {dataset.name} (with --set {' '.join(overrides)})")
    check_auto_augment(cfg.data)
    return cfg
