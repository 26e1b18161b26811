"""The plan of a sweep: run specs with their stages, each once, and run ids from lineage."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.identity import config_hash, identity
from ..config.overrides import overrides_for, stage_overrides
from ..config.recipe_files import Catalog
from ..config.run_config import resolve
from ..config.specs import (
    SAFE_NAME,
    RecipeError,
    RunConfig,
    run_config_from_dict,
)
from ..store.records import DEFAULT_OUT
from .catalog import check_sampler, check_test_views, load_catalog
from .stages import STAGE_CONFIGS, check_needs, consumed_config

if TYPE_CHECKING:
    pass


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
                where = f"method {ms.name}, budget {budget}" + (f" (with --set {' '.join(own)})" if own else "")
                check_sampler(cfg.train.sampler, where)
                check_test_views(cfg.train.test_views, ms.model, where)
                sweep = _SweepOverrides(tuple(overrides), tuple(m.name for m in method_specs), budget)
                spec = _add_with_stages(cfg, planned, catalog, Path(out_dir), data_root, verify, sweep)
                planned[spec.run_id] = dataclasses.replace(spec, overrides=own)  # the row label names them
    return list(planned.values())


# The [[needs]] roles that the command's --set overrides reach (config.overrides.stage_overrides), so
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
    check_needs(cfg, stages)
    for role, (stage, own) in resolved.items():
        needs.append((role, _add_with_stages(stage, planned, catalog, out_dir, data_root, verify, sweep, own)))
    need_ids = tuple((role, dep.run_id) for role, dep in needs)
    plain = identity(cfg.to_dict())  # once for both hashes
    h = run_id(cfg, dict(need_ids), verify, plain)
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
            variant=variant_id(cfg, {role: dep.variant for role, dep in needs}, verify, plain),
        )
    return planned[h]


def run_id(cfg: RunConfig, needs: dict[str, str] | None = None, verify: bool = True, plain: dict | None = None) -> str:
    """A run's identity: its configuration's hash, the ids of the runs it consumes (so any
    change upstream, recursively, gives a new id downstream) and whether its data was verified.

    A run that consumes nothing on verified data keeps the plain :func:`config_hash`.
    ``plain``: the config's :func:`identity`, when the caller has it already.
    """
    h = config_hash(cfg, plain)
    if needs:
        blob = json.dumps({"config": h, "needs": needs}, sort_keys=True, separators=(",", ":"))
        h = hashlib.sha256(blob.encode()).hexdigest()
    if not verify:  # a custom, unverified copy of the data is another run than the official files
        h = hashlib.sha256(f"{h}:unverified".encode()).hexdigest()
    return h


def variant_id(
    cfg: RunConfig, needs: dict[str, str] | None = None, verify: bool = True, plain: dict | None = None
) -> str:
    """What runs that differ only in their seeds share: the configuration without ``seed`` and
    ``data_seed``, the variants of the stages consumed, and whether the data was verified."""
    plain = dict(identity(cfg.to_dict()) if plain is None else plain)
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
