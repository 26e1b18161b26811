"""Plan and execute benchmark runs: methods x datasets x seeds under one budget.

:func:`plan_runs` resolves every run's configuration before anything starts, so a bad name,
recipe or override fails the whole command with nothing written. :func:`execute_run` is the
unit of work: a plain function of a picklable :class:`RunSpec` that trains, evaluates,
writes the run's record atomically into its folder and ingests it into the store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data import LTData, build_data
from .distributed import is_main, rank_world
from .errors import DataError, RunSetupError, UserError
from .metrics import summarize
from .provenance import provenance
from .recipes import (
    SAFE_NAME,
    Catalog,
    MethodConfig,
    RecipeError,
    RunConfig,
    TrainConfig,
    config_hash,
    from_mapping,
    identity,
    load_catalog,
    overrides_for,
    resolve,
    run_config_from_dict,
    stage_overrides,
)
from .record import RECORD_SCHEMA, RunRecord
from .runlock import RunLock
from .store import DEFAULT_OUT, ResultStore, read_record, write_record

if TYPE_CHECKING:
    from .train import Dependencies, EpochCallback

DEFAULT_DATASET = "mnist_lt"


@dataclass(frozen=True)
class RunSpec:
    """One run: its resolved configuration and where it writes."""

    config: RunConfig
    run_id: str
    run_dir: Path
    data_root: str | None = None  # where the dataset's files are; None: the recipe's default_root
    verify: bool = True  # check found figures and checksums against the recipe
    needs: tuple[tuple[str, Path], ...] = ()  # (role, run folder) of the stages this one builds on
    overrides: tuple[str, ...] = ()  # the user's --set values, to name the variant in tables
    need_ids: tuple[tuple[str, str], ...] = ()  # (role, run id) of those stages: part of run_id
    variant: str = ""  # identity apart from the seeds, lineage included: runs of one variant are seeds

    @property
    def label(self) -> str:
        c = self.config
        return f"{c.method.name} on {c.data.name} ({c.budget}, seed {c.seed})"


@dataclass(frozen=True)
class Sweep:
    """What one command runs: methods x datasets x seeds under one budget, and where.

    ``methods`` None means the main job's methods (recipes with ``in_main_job``), ``data``
    None the embedded default dataset. :meth:`plan` resolves every run.
    """

    methods: tuple[str, ...] | None = None
    data: tuple[str, ...] | None = None
    budget: str = "quick"
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    overrides: tuple[str, ...] = ()
    out_dir: Path = DEFAULT_OUT
    recipes: tuple[str, ...] = ()  # extra recipe folders
    root: str | None = None  # the dataset's files (None: the recipe's default_root)
    verify: bool = True  # check found figures and checksums against the recipe

    @classmethod
    def of(cls, **kw: Any) -> Sweep:
        """A sweep from plain arguments (lists, paths), as the library functions take them."""
        for key in ("methods", "data", "seeds", "overrides", "recipes"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if kw.get("out_dir") is not None:
            kw["out_dir"] = Path(kw["out_dir"])
        if kw.get("root") is not None:
            kw["root"] = str(kw["root"])
        return cls(**{k: v for k, v in kw.items() if v is not None or k in ("methods", "data", "root")})

    def plan(self) -> list[RunSpec]:
        """Every run of the sweep and the stages they consume (see :func:`plan_runs`)."""
        catalog = load_catalog(self.recipes)
        methods = self.methods if self.methods is not None else main_job_methods(catalog)
        return plan_runs(
            methods,
            self.data if self.data is not None else (DEFAULT_DATASET,),
            self.budget,
            self.seeds,
            self.data_seed,
            self.overrides,
            self.out_dir,
            catalog,
            self.root,
            self.verify,
        )


def main_job_methods(catalog: Catalog | None = None) -> list[str]:
    """The methods ``ltbench run`` trains without ``--methods``: those whose recipe keeps
    ``in_main_job = true`` (the default)."""
    catalog = catalog or load_catalog()
    return [m for m in catalog.methods.names() if catalog.methods.get(m).in_main_job]


def plan_runs(
    methods: Sequence[str] = ("ce",),
    datasets: Sequence[str] = (DEFAULT_DATASET,),
    budget: str = "quick",
    seeds: Sequence[int] = (0,),
    data_seed: int = 0,
    overrides: Sequence[str] = (),
    out_dir: Path = DEFAULT_OUT,
    catalog: Catalog | None = None,
    data_root: str | None = None,
    verify: bool = True,
) -> list[RunSpec]:
    """Resolve every run of the sweep, in dataset, method, seed order.

    Raises:
        UnknownNameError: a method or dataset that no recipe defines.
        RecipeError: a budget the method lacks, or a bad override.
    """
    catalog = catalog or load_catalog()
    method_specs = [catalog.methods.get(m) for m in methods]
    dataset_specs = [catalog.datasets.get(d) for d in datasets]
    planned: dict[str, RunSpec] = {}  # run_id -> spec; a shared stage appears once, before its users
    for ds in dataset_specs:
        for ms in method_specs:
            for seed in seeds:
                own = tuple(overrides_for(ms, overrides, method_specs, budget))
                cfg = resolve(ms, ds, budget, seed, data_seed, own)
                sweep = _SweepOverrides(tuple(overrides), tuple(m.name for m in method_specs), budget)
                spec = _add_with_stages(cfg, planned, catalog, Path(out_dir), data_root, verify, sweep)
                planned[spec.run_id] = dataclasses.replace(spec, overrides=own)  # the row label names them
    return list(planned.values())


# The [[needs]] roles that the command's --set overrides reach (recipes.stage_overrides), so
# that `--methods cnn_ce,cnn_crt --set epochs=5` builds cRT on that command's cnn_ce run. A
# teacher and an MGP stage are trained apart from their users and keep their recipes.
OVERRIDDEN_ROLES = ("backbone",)


@dataclass(frozen=True)
class _SweepOverrides:
    """The command's --set values and selected methods, for the stages they reach."""

    overrides: tuple[str, ...] = ()
    selected: tuple[str, ...] = ()
    budget: str | None = None


def _stage_config(cfg: RunConfig, need, catalog: Catalog, sweep: _SweepOverrides) -> tuple[RunConfig, tuple[str, ...]]:
    """The configuration of the stage ``need`` names, and the --set values that reached it."""
    if need.role not in OVERRIDDEN_ROLES or need.stage != "run" or not sweep.overrides:
        return STAGE_CONFIGS[need.stage](cfg, need, catalog), ()
    own = stage_overrides(catalog.methods.get(need.method), sweep.overrides, sweep.selected, sweep.budget)
    return consumed_config(cfg, need.method, need.seed, catalog, own), own


def _add_with_stages(
    cfg: RunConfig,
    planned: dict[str, RunSpec],
    catalog: Catalog,
    out_dir: Path,
    data_root: str | None,
    verify: bool,
    sweep: _SweepOverrides = _SweepOverrides(),
    overrides: tuple[str, ...] = (),
) -> RunSpec:
    needs = []
    resolved = {need.role: _stage_config(cfg, need, catalog, sweep) for need in cfg.method.stages}
    stages = {role: stage for role, (stage, _) in resolved.items()}
    _check_needs(cfg, stages)
    for role, (stage, own) in resolved.items():
        needs.append((role, _add_with_stages(stage, planned, catalog, out_dir, data_root, verify, sweep, own)))
    need_ids = tuple((role, dep.run_id) for role, dep in needs)
    h = run_id(cfg, dict(need_ids), verify)
    if h not in planned:
        planned[h] = RunSpec(
            cfg,
            h,
            run_dir_for(out_dir, cfg, h),
            data_root,
            verify,
            tuple((role, dep.run_dir) for role, dep in needs),
            overrides,
            need_ids=need_ids,
            variant=variant_id(cfg, {role: dep.variant for role, dep in needs}, verify),
        )
    return planned[h]


def run_id(cfg: RunConfig, needs: dict[str, str] | None = None, verify: bool = True) -> str:
    """A run's identity: its configuration's hash, the ids of the runs it consumes (so any
    change upstream, recursively, gives a new id downstream) and whether its data was verified.

    A run that consumes nothing on verified data keeps the plain :func:`config_hash`.
    """
    h = config_hash(cfg)
    if needs:
        blob = json.dumps({"config": h, "needs": needs}, sort_keys=True, separators=(",", ":"))
        h = hashlib.sha256(blob.encode()).hexdigest()
    if not verify:  # a custom, unverified copy of the data is another run than the official files
        h = hashlib.sha256(f"{h}:unverified".encode()).hexdigest()
    return h


def variant_id(cfg: RunConfig, needs: dict[str, str] | None = None, verify: bool = True) -> str:
    """What runs that differ only in their seeds share: the configuration without ``seed`` and
    ``data_seed``, the variants of the stages consumed, and whether the data was verified."""
    plain = identity(cfg.to_dict())
    plain.pop("seed", None)
    plain.pop("data_seed", None)
    blob = json.dumps({"config": plain, "needs": needs or {}, "verified": verify}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_dir_for(out_dir: Path, cfg: RunConfig, h: str) -> Path:
    """``out/runs/<dataset>/<method>/<budget>-s<seed>-d<data seed>-<id>``, from checked names only
    (recipes refuse names that are not :data:`SAFE_NAME`; ``--set`` cannot change them)."""
    for name in (cfg.data.name, cfg.method.name, cfg.budget):
        if not SAFE_NAME.fullmatch(name) or ".." in name:
            raise RecipeError(f"name {name!r} cannot name a run folder; use letters, digits, '_', '-' and '.'")
    if min(cfg.seed, cfg.data_seed) < 0:
        raise RecipeError(f"seeds must be >= 0, got seed {cfg.seed} and data seed {cfg.data_seed}")
    return (
        Path(out_dir) / "runs" / cfg.data.name / cfg.method.name / f"{cfg.budget}-s{cfg.seed}-d{cfg.data_seed}-{h[:10]}"
    )


def spec_from_record(record: dict[str, Any], get_record, out_dir: Path) -> list[RunSpec]:
    """The specs that redo ``record``'s run under ``out_dir`` from stored records alone: each
    stage it consumed (found with ``get_record(run_id)``), then the run, in execution order.

    A spec keeps the stored run id, so the re-run can be compared with the original; where
    today's code would give another id (a record of an older ltbench), its ``variant`` is
    left empty to say so.

    Raises:
        ValueError: a consumed stage is not in the store.
    """
    specs: dict[str, RunSpec] = {}

    def add(rec: dict[str, Any]) -> RunSpec:
        needs = []
        for role, need_id in (rec.get("needs") or {}).items():
            dep = get_record(need_id)
            if dep is None:
                raise ValueError(
                    f"run {rec['run_id'][:10]} consumed {role} run {need_id[:10]}, which is not in the store"
                )
            needs.append((role, specs.get(need_id) or add(dep)))
        cfg = run_config_from_dict(rec["config"], f"record {rec['run_id'][:10]}")
        prov = rec.get("provenance") or {}
        verify = bool(prov.get("data_verified", True))
        need_ids = tuple((role, dep.run_id) for role, dep in needs)
        same = run_id(cfg, dict(need_ids), verify) == rec["run_id"]
        spec = RunSpec(
            cfg,
            rec["run_id"],
            run_dir_for(out_dir, cfg, rec["run_id"]),
            prov.get("data_root"),
            verify,
            tuple((role, dep.run_dir) for role, dep in needs),
            tuple(rec.get("overrides") or ()),
            need_ids,
            variant_id(cfg, {role: dep.variant for role, dep in needs}, verify) if same else "",
        )
        specs[spec.run_id] = spec
        return spec

    add(record)
    return list(specs.values())


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


def _check_needs(cfg: RunConfig, stages: dict[str, RunConfig]) -> None:
    """A named objective gets the roles it needs, and a stage whose model it re-uses sees
    images of the same size."""
    from .models import input_size
    from .objectives import OBJECTIVE_ROLES, OBJECTIVES

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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _base_record(spec: RunSpec, data: LTData, device: torch.device) -> RunRecord:
    cfg = spec.config
    return {  # see ltbench.record.RunRecord
        "schema": RECORD_SCHEMA,
        "run_id": spec.run_id,
        "method": cfg.method.name,
        "dataset": cfg.data.name,
        "budget": cfg.budget,
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "config": cfg.to_dict(),
        "config_hash": spec.run_id,
        "needs": dict(spec.need_ids),  # role -> run id of each stage consumed (its lineage)
        "variant": spec.variant,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "train_counts": data.class_counts.tolist(),
        # Per class, the validation images that best_val selects on (None: no validation set).
        "val_counts": None if data.val is None else np.bincount(data.val.labels, minlength=data.num_classes).tolist(),
        "index_sizes": list(cfg.data.groups.index_sizes) or None,
        "group_convention": "threshold",
        "effective_batch": min(cfg.train.batch_size, len(data.train) - len(data.train) % 2),
        "world_size": rank_world()[1],  # processes sharing each step; the effective batch stays the recipe's
        "provenance": {
            **provenance(device, data.fingerprint()),
            "data_root": str(data.root) if data.root else None,
            "data_verified": data.verified,
            "data_files": data.files,
        },
        "run_dir": str(spec.run_dir),
        "overrides": list(spec.overrides),
        "started_at": _now(),
    }


class DependencyFailed(RuntimeError):
    """A stage this run builds on did not finish."""


def _dependencies(spec: RunSpec, store: ResultStore | None = None) -> Dependencies:
    from .train import CHECKPOINT, Dependencies

    found, selections = {}, {}
    ids = dict(spec.need_ids)
    wanted = {need.role: need.chosen for need in spec.config.method.stages}  # which weights, per role
    for role, run_dir in spec.needs:
        record = read_record(run_dir)
        stored = store.get(ids[role]) if store is not None and role in ids and record is None else None
        if stored and stored.get("status") == "done" and stored.get("run_dir"):
            run_dir = Path(stored["run_dir"])  # done under another --out: use it where it is
            record = read_record(run_dir)
        if record is None or record.get("status") != "done" or not (run_dir / CHECKPOINT).is_file():
            why = record.get("error") if record else "it has not run"
            raise DependencyFailed(f"its {role} stage ({run_dir}) did not finish: {why}")
        if role in ids and record.get("run_id") != ids[role]:  # never build on another lineage
            raise DependencyFailed(
                f"its {role} stage folder {run_dir} holds run {record.get('run_id')}, not {ids[role]}"
            )
        path, selections[role] = stage_weights(role, run_dir, record, wanted.get(role, "last"))
        found[role] = (run_config_from_dict(record["config"]), path)
    return Dependencies(
        found["pretrained"][1] if "pretrained" in found else None,
        found.get("teacher"),
        {role: v for role, v in found.items() if role not in ("pretrained", "teacher")},
        selections,
    )


def stage_weights(role: str, run_dir: Path, record: dict[str, Any], selection: str) -> tuple[Path, dict[str, Any]]:
    """The weights file of the finished stage in ``run_dir`` (its ``record``) that ``selection``
    asks for, and what the consuming run's record says of it (``needs_selection``).

    "best_val" is the best-on-validation weights file, or the checkpoint where that epoch was the
    last; a stage without a validation set has no such epoch and gives its last (said so).

    Raises:
        DependencyFailed: the stage chose an earlier epoch but kept no weights of it (it
            finished under an ltbench that did not keep them).
    """
    from .train import BEST_VAL, CHECKPOINT

    results = record.get("results") or {}
    last = (results.get("last") or {}).get("epoch")
    best = (results.get("best_val") or {}).get("epoch")
    used = {"run_id": record.get("run_id"), "selection": selection, "epoch": last, "file": CHECKPOINT}
    if selection != "best_val":
        return run_dir / CHECKPOINT, used
    if best is None:  # no validation set picked an epoch
        return run_dir / CHECKPOINT, {**used, "selection": "last", "asked": "best_val", "why": "no validation set"}
    used["epoch"] = best
    if best == last:
        return run_dir / CHECKPOINT, used
    if not (run_dir / BEST_VAL).is_file():
        raise DependencyFailed(
            f"its {role} stage {record.get('run_id', '?')[:10]} ({run_dir}) chose epoch {best} of {last} on "
            f"validation but kept no weights of it ({BEST_VAL}: it finished before ltbench kept them); re-run "
            f"that stage (ltbench run --methods {record.get('method')} ... --force), or consume its last epoch "
            f'with selection = "last" in the [[needs]] table of a recipe of your own'
        )
    return run_dir / BEST_VAL, {**used, "file": BEST_VAL}


def finished_before(specs: Sequence[RunSpec], store: ResultStore, force: bool = False) -> dict[str, dict[str, Any]]:
    """The stored records of ``specs`` already done (none with ``force``), marked ``skipped``:
    what an executor reports at once instead of running."""
    if force:
        return {}
    return {s.run_id: {**store.get(s.run_id), "skipped": True} for s in specs if store.status(s.run_id) == "done"}


def execute_run(
    spec: RunSpec,
    store: ResultStore,
    device: str | torch.device | None = None,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run, then store its record; skip it if already done.

    A run that fails while training (NaN loss, a crash) is stored as ``failed`` with its
    error and returned; Ctrl-C propagates and leaves the latest checkpoint (the last epoch's,
    or with ``train.checkpoint_minutes`` the last one saved), from which the same command
    resumes.

    Returns:
        The run's record as the store gives it back (per-class vectors as read-only NumPy
        arrays; ``json.dumps(record, default=numpy.ndarray.tolist)`` writes it), with
        ``"skipped": True`` when it was already done.

    Raises:
        RunSetupError: the run could not start; nothing was written to the store.
        UserError: the run's checkpoint is damaged (truncated); nothing was written.
    """
    if not force and store.status(spec.run_id) == "done":
        return {**store.get(spec.run_id), "skipped": True}
    if rank_world()[1] > 1:  # data-parallel ranks run it together: no lock among them
        return _execute_run(spec, store, device, force, on_epoch)
    # One process per run: a second one started at once waits here, then finds it done.
    with RunLock(spec.run_dir, on_wait=_say_waiting) as lock:
        return _execute_run(spec, store, device, force and not lock.waited, on_epoch)


def _say_waiting(owner: dict[str, Any], path: Path) -> None:
    import sys

    print(f"waiting: pid {owner.get('pid')} on {owner.get('host')} is running this run ({path})", file=sys.stderr)


def _check_checkpoint(run_dir: Path) -> None:
    """A checkpoint to resume from must load (weights only, memory-mapped: cheap)."""
    from .train import CHECKPOINT

    path = run_dir / CHECKPOINT
    if not path.is_file():
        return
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]
    except Exception as e:  # noqa: BLE001 - truncated, garbled or not ltbench's: one answer
        raise UserError(
            f"the checkpoint {path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
            "delete it to start the run from epoch 0"
        ) from None


def _execute_run(
    spec: RunSpec,
    store: ResultStore,
    device: str | torch.device | None,
    force: bool,
    on_epoch: EpochCallback | None,
) -> dict[str, Any]:
    """:func:`execute_run` under the run's lock (the store is asked again: done meanwhile?)."""
    if not force and store.status(spec.run_id) == "done":
        return {**store.get(spec.run_id), "skipped": True}
    on_disk = None if force else read_record(spec.run_dir)
    if on_disk and on_disk.get("status") == "done" and on_disk.get("run_id") == spec.run_id:
        _ingest(store, on_disk)  # finished, but killed before the store heard of it
        return {**(store.get(spec.run_id) or on_disk), "skipped": True}
    if force and spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    device = torch.device(device) if device is not None else default_device()
    _check_checkpoint(spec.run_dir)
    try:
        data = build_data(spec.config.data, spec.config.data_seed, spec.data_root, spec.verify)
    except (ValueError, ImportError, OSError) as e:
        raise RunSetupError(f"{spec.label}: cannot build its data: {e}") from e
    record = _base_record(spec, data, device)
    tick = time.perf_counter()
    try:
        deps = _dependencies(spec, store)
        if deps.selections:  # which weights of each consumed stage (its run id, epoch, file)
            record["needs_selection"] = deps.selections
        from .train import fit  # here: planning needs neither timm nor the training loop

        result = fit(spec.config, data, spec.run_dir, device, on_epoch, deps)
    except (KeyboardInterrupt, RunSetupError):
        raise
    except DataError as e:  # bad input found while streaming (an undecodable image): not a result
        raise RunSetupError(f"{spec.label}: {e}") from e
    except Exception as e:  # noqa: BLE001 - any training failure becomes a failed record
        record.update(
            status="failed",
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
            finished_at=_now(),
            timings={"total_seconds": time.perf_counter() - tick},
        )
        write_record(record, spec.run_dir)
        return _ingest(store, record)
    if not is_main():  # data-parallel: process 0 writes the one record
        return record
    counts = record["train_counts"]
    record.update(
        status="done",
        error=None,
        results=result.results,
        metrics={sel: summarize(r["correct"], r["total"], counts, r.get("calib")) for sel, r in result.results.items()},
        history=result.history,
        timings={
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "total_seconds": time.perf_counter() - tick,
            "resumed_from_epoch": result.resumed_from_epoch,
        },
        skipped_images=result.skipped_images,
        unreadable_images=result.unreadable,
        finished_at=_now(),
    )
    if result.logits is not None:  # an output: never part of the run's identity
        record["logits"] = result.logits
    write_record(record, spec.run_dir)
    return _ingest(store, record)


def _ingest(store: ResultStore, record: dict[str, Any]) -> dict[str, Any]:
    """Index a record written to its folder; the record as the store gives it back (one type for
    fresh and skipped runs), or as written if the store stayed locked (the next command that
    reads the store ingests it from the folder)."""
    if not store.ingest_retrying(record):
        warnings.warn(
            f"the store {store.path} stayed locked; run {record['run_id'][:10]} is safe in "
            f"{record['run_dir']} and reaches the store with the next command that reads it",
            stacklevel=2,
        )
        return record
    return store.get(record["run_id"])
