"""The configurations of the stages a run consumes: the MGP pretraining stage, a teacher and any ``[[needs]]`` run."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..config.recipe_files import Catalog
from ..config.run_config import resolve
from ..config.specs import (
    MethodConfig,
    RecipeError,
    RunConfig,
    TrainConfig,
    from_mapping,
)

if TYPE_CHECKING:
    pass


# Budget keys that shape the ViT encoder and so carry over from fine-tuning to its MGP stage.
_ENCODER_KEYS = (
    "img_size",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "eval_batch_size",
    "num_workers",
)


# The MGP stage's own version: bump it when a change to the stage's code changes its result,
# so every run built on the stage gets a new id (lineage) and trains again.
MGP_STAGE_VERSION = 2  # 2: fixed 2-D sin-cos position embeddings, as MAE


def pretrain_config(cfg: RunConfig, seed: int | None = None) -> RunConfig:
    """The MGP stage of ``cfg``: encoder shape from the budget, the rest from its ``pretrain``
    table. Fine-tuning settings are left out, so methods sharing an encoder share the stage.
    Its seed is the fine-tuning run's unless the recipe pins ``pretrain_seed``."""
    seed = cfg.method.pretrain_seed if seed is None else seed
    t = cfg.train
    if not t.pretrain:
        raise RecipeError(
            f"method {cfg.method.name}, budget {cfg.budget}: a pretrain stage needs "
            f"[budgets.{cfg.budget}.pretrain] (epochs, batch_size, lr, warmup_epochs, ...)"
        )
    table = {**{k: getattr(t, k) for k in _ENCODER_KEYS}, **t.pretrain}
    train = from_mapping(TrainConfig, table, f"method {cfg.method.name}: budgets.{cfg.budget}.pretrain")
    method = MethodConfig("mgp_pretrain", MGP_STAGE_VERSION, "mae", "mae")
    # MAE's own augmentation: RandomResizedCrop(0.2-1) and flip, none of fine-tuning's
    # RandAugment or random erasing (streamed data; in-memory sets keep their batched ones).
    aug = dataclasses.replace(cfg.data.augment, auto_augment="", re_prob=0.0, rrc_scale_min=0.2)
    return RunConfig(
        method,
        dataclasses.replace(cfg.data, augment=aug),
        train,
        cfg.budget,
        seed=cfg.seed if seed < 0 else seed,
        data_seed=cfg.data_seed,
    )


def teacher_config(cfg: RunConfig, catalog: Catalog) -> RunConfig:
    """The teacher run: its own recipe and budget on the same data, with the student's seed
    unless the recipe pins ``teacher_seed``.

    The student method's own augmentation (its ``[augment.<budget>]``) is taken back off:
    the teacher trains with the dataset's, as the papers' teachers were trained apart.
    """
    return consumed_config(cfg, cfg.method.teacher, cfg.method.teacher_seed, catalog)


def consumed_config(
    cfg: RunConfig, method: str, seed: int, catalog: Catalog, overrides: tuple[str, ...] = ()
) -> RunConfig:
    """The run of ``method`` that ``cfg`` consumes: its own recipe and budget on the same data,
    with ``cfg``'s seed (``seed`` < 0) or ``seed``, and the ``--set`` values that reach it
    (``overrides``; a backbone's, :func:`_stage_config`). The consuming method's own
    augmentation (its ``[augment.<budget>]``) is taken back off: the stage trains with the
    dataset's."""
    data = cfg.data
    own = catalog.methods.get(cfg.method.name).augment.get(cfg.budget)
    if own:
        base = catalog.datasets.get(cfg.data.name).augment
        data = dataclasses.replace(
            data, augment=dataclasses.replace(data.augment, **{k: getattr(base, k) for k in own})
        )
    return resolve(
        catalog.methods.get(method), data, cfg.budget, cfg.seed if seed < 0 else seed, cfg.data_seed, overrides
    )


def check_needs(cfg: RunConfig, stages: dict[str, RunConfig]) -> None:
    """A named objective gets the roles it needs, and a stage whose model it re-uses sees
    images of the same size."""
    from ..training.models import input_size
    from ..training.objectives import OBJECTIVE_ROLES, OBJECTIVES

    name = cfg.method.objective
    if not name:
        return
    try:
        build = OBJECTIVES.get(name)
    except (KeyError, ImportError) as e:
        raise RecipeError(f"method {cfg.method.name}: {e}") from None
    # A plugin's builder may declare its roles as an attribute, as the built-in ones do.
    missing = [r for r in OBJECTIVE_ROLES.get(name, getattr(build, "roles", ())) if r not in stages]
    if missing:
        raise RecipeError(
            f"method {cfg.method.name}: objective {name} needs a stage as {missing[0]!r}; "
            f'add [[needs]] role = "{missing[0]}" method = "..." to its recipe'
        )
    for role, stage in stages.items():
        if input_size(stage) != input_size(cfg):
            raise RecipeError(
                f"method {cfg.method.name} (budget {cfg.budget}) sees {input_size(cfg)} px images, its {role} "
                f"{stage.method.name} {input_size(stage)} px; give both the same train.img_size"
            )


# How a [[needs]] entry becomes the configuration of the stage it names, by its ``stage`` kind.
STAGE_CONFIGS = {
    "run": lambda cfg, need, catalog: consumed_config(cfg, need.method, need.seed, catalog),
    "pretrain": lambda cfg, need, catalog: pretrain_config(cfg, need.seed),
}
