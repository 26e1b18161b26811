"""The runs behind a table: finished records as a frame, their variants and pretraining, and the
per-row aggregate.

Reports read only run records (plain dicts, as stored), never logs. Group metrics are
recomputed from each record's per-class correct/total counts and training counts, so any
stored run can be reported under any group convention (``threshold``, ``oltr``, ``index``)
and either model selection (``last`` epoch or ``best_val``) without re-running it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..config.identity import identity
from ..config.specs import EXECUTION_KEYS
from ..evaluation.groups import CONVENTIONS
from ..evaluation.metrics import summarize
from .row_marks import architecture_of, augmentation_of, chose_tau, val_coverage

SELECTIONS = ("last", "best_val")


METRICS = ("many", "medium", "few", "top1", "worst", "hmean")  # table columns: Many, Med., Few, All, Worst, H-mean


GROUP_METRICS = METRICS[:4]  # the class groups and all, as published tables give them


# What a method's weights saw before training on the benchmark (MethodSpec.pretraining_data):
# the marker after its row name, in LaTeX and in plain text, and what the caption says of it.
PRETRAINING_MARKS = {
    "long_tailed_train": (
        "$^\\ddagger$",
        "‡",
        "weights pretrained on the long-tailed train set (masked generative pretraining) before fine-tuning",
    ),
    "external": ("$^\\S$", "§", "weights pretrained on external data: not comparable with the other rows, nor ranked"),
}


RUN_COLUMNS = ("method", "dataset", "budget", "seed", "data_seed", "run_id")


CONVENTION_TEXT = {
    "threshold": "many $>$100, medium 20--100, few $<$20 training images",
    "oltr": "many $\\geq$100, medium 21--99, few $\\leq$20 training images (OLTR code)",
    "index": "head / mid / tail blocks of frequency-sorted classes (DeiT-LT)",
}


SELECTION_TEXT = {"last": "last epoch", "best_val": "best epoch on the validation set"}


NO_RUNS = "no finished runs in the store; run `ltbench run` first"


def check_choices(convention: str, selection: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown group convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if selection not in SELECTIONS:
        raise ValueError(f"unknown model selection {selection!r}; choose one of {', '.join(SELECTIONS)}")


def finished_runs(records: Sequence[dict[str, Any]], selection: str) -> list[dict[str, Any]]:
    """Done records that stored the requested selection (failed or partial runs never count)."""
    return [r for r in records if r.get("status") == "done" and selection in (r.get("results") or {})]


def runs_frame(
    records: Sequence[dict[str, Any]], convention: str = "threshold", selection: str = "last"
) -> pd.DataFrame:
    """One row per finished run of a table row and seed, its group metrics recomputed from the stored counts.

    A table row (``method``) holds runs of one variant (:func:`variant_of`), one kind of data
    (verified or not) and, for each data seed, one data fingerprint, and at most one run per
    (seed, data_seed): of several, the latest to finish is kept and the others are listed in
    ``attrs["duplicates"]``.

    Args:
        records: run records as stored; runs not ``done`` or lacking ``selection`` are skipped.
        convention: many/medium/few convention to regroup the classes with.
        selection: ``last`` epoch or ``best_val`` (the epoch chosen on the validation set).

    Returns:
        Columns method, dataset, budget, seed, data_seed, run_id, top1, many, medium, few,
        worst, hmean, ece (fractions; NaN for an empty group or a record without calibration
        bins), variant,
        label (the method and its overrides) and base_method. ``attrs`` holds the convention
        and selection, ``duplicates`` (the runs left out: dataset, budget, method, seed,
        data_seed, run_id and the run ``kept``), ``rows`` ({(dataset, budget, method): base
        method, published setting, data verified, pretraining data}) and ``val_coverage`` ({dataset: [(classes
        with validation images, classes)]} for reported runs whose validation set misses classes).

    Raises:
        ValueError: unknown convention or selection, or a run that cannot be regrouped
            (``index`` without ``index_sizes``).
    """
    from .published import setting_of

    check_choices(convention, selection)
    rows = []
    by_id = {r.get("run_id"): r for r in records}
    for r in finished_runs(records, selection):
        res = r["results"][selection]
        try:
            m = summarize(
                res["correct"], res["total"], r["train_counts"], res.get("calib"), convention, r.get("index_sizes")
            )
        except ValueError as err:
            raise ValueError(f"run {r['run_id']} ({r['method']} on {r['dataset']}): {err}") from err
        row = {k: r.get(k) for k in RUN_COLUMNS}
        row.update({k: np.nan if m.get(k) is None else m[k] for k in (*METRICS, "ece")})
        row["variant"] = variant_of(r)
        shown = [o for o in r.get("overrides") or () if o.split("=", 1)[0].split(".")[-1].strip() not in EXECUTION_KEYS]
        row["label"] = r["method"] + (f" [{', '.join(shown)}]" if shown else "")
        prov = r.get("provenance") or {}
        row.update(
            _verified=_verified(r),
            _fingerprint=prov.get("data_fingerprint"),
            finished_runs=str(r.get("finished_at") or ""),
            _setting=setting_of(r),
            _covered=val_coverage(r),
            _pretraining=pretraining_of(r),
            _augment=augmentation_of(r, by_id),
            _arch=architecture_of(r),
            _tau=chose_tau(r, selection),
        )
        rows.append(row)
    hidden = [
        "_verified",
        "_fingerprint",
        "finished_runs",
        "_setting",
        "_covered",
        "_pretraining",
        "_augment",
        "_arch",
        "_tau",
    ]
    frame = pd.DataFrame(
        rows,
        columns=[*RUN_COLUMNS, "top1", "many", "medium", "few", "worst", "hmean", "ece", "variant", "label", *hidden],
    )
    _name_variants(frame)
    frame = unique_seeds(frame, frame["finished_runs"])
    frame.attrs["rows"] = {}
    for run in frame.to_dict("records"):
        info = frame.attrs["rows"].setdefault(
            (run["dataset"], run["budget"], run["method"]),
            {
                "base_method": run["base_method"],
                "setting": run["_setting"],
                "verified": bool(run["_verified"]),
                "pretraining": run["_pretraining"],
                "augment": run["_augment"],
                "architecture": run["_arch"],
                "val_coverage": run["_covered"],
                "partial_val": None,
            },
        )
        covered = run["_covered"]
        if run["_tau"] and covered is not None and covered[0] < covered[1] and not info["partial_val"]:
            info["partial_val"] = covered
    coverage: dict[str, list[tuple[int, int]]] = {}
    for dataset, covered in zip(frame["dataset"], frame["_covered"]):
        if covered is not None and covered[0] < covered[1] and covered not in coverage.setdefault(dataset, []):
            coverage[dataset].append(covered)
    frame.attrs["val_coverage"] = {d: sorted(c) for d, c in coverage.items() if c}
    frame.attrs.update(convention=convention, selection=selection)
    return frame.drop(columns=hidden)


def _verified(record: dict[str, Any]) -> bool:
    """Whether the run's data passed the recipe's checks (records without provenance: verified, the default)."""
    return (record.get("provenance") or {}).get("data_verified", True) is not False


def pretraining_of(record: dict[str, Any]) -> str:
    """What the run's weights saw before its training: ``none``, ``long_tailed_train`` or ``external``.

    Descriptive, never part of a run's identity: the record's own ``pretraining_data`` when it
    has one, else the method's recipe (``MethodSpec.pretraining_data``) by name, else
    ``long_tailed_train`` for a run configured with the MGP stage and ``none`` otherwise.
    """
    if record.get("pretraining_data"):
        return str(record["pretraining_data"])
    from ..config.specs import RecipeError
    from ..planning.catalog import load_catalog

    try:
        methods = load_catalog().methods
        if record.get("method") in methods:
            return methods.get(record["method"]).pretraining_data
    except RecipeError:  # a broken recipe folder must not stop a report
        pass
    method = (record.get("config") or {}).get("method") or {}
    return "long_tailed_train" if method.get("pretrain") == "mgp" else "none"


def variant_of(record: dict[str, Any]) -> str:
    """Identity of a run's configuration apart from its seeds: runs of one variant are seeds.

    The record's own ``variant`` (lineage included) when it has one; otherwise a hash of its
    configuration and of whether its data was verified.
    """
    if record.get("variant"):
        return str(record["variant"])
    cfg = dict(record.get("config") or {})
    unverified = not _verified(record)
    if not cfg and not unverified:
        return ""
    cfg.pop("seed", None)
    cfg.pop("data_seed", None)
    # As the run hash: execution settings (workers, compile, ...) never make another variant.
    key: Any = identity(cfg)
    if unverified:  # verified runs keep the hash they always had
        key = {"config": key, "data_verified": False}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


def _name_variants(frame: pd.DataFrame) -> None:
    """Make ``method`` the row name: the method, its overrides, ``(unverified data)`` for runs
    on data that was not verified, and, where runs of one name still differ in configuration
    (another recipe version, another teacher or pretraining stage), the variant's hash. Where
    runs of one variant and data seed were trained on different data (fingerprints), the row
    is split by fingerprint, named by its first 8 characters. Runs with different
    configurations or data are never averaged as if they were seeds."""
    frame["base_method"] = frame["method"]
    names = pd.Series("", index=frame.index, dtype=object)
    keys = ["dataset", "budget", "label", "_verified"]
    for (_, _, label, verified), block in frame.groupby(keys, sort=False, dropna=False):
        several = block["variant"].nunique() > 1
        for variant, runs in block.groupby("variant", sort=False, dropna=False):
            name = f"{label} {{{str(variant)[:8]}}}" if several else label
            fps = runs["_fingerprint"].fillna("unrecorded")
            split = (fps.groupby(runs["data_seed"].fillna(-1)).nunique() > 1).any()
            for idx in runs.index:
                tag = "" if verified else "unverified data"
                if split:
                    tag = f"{tag or 'data'} {str(fps[idx])[:8]}"
                names[idx] = f"{name} ({tag})" if tag else name
    frame["method"] = names


def unique_seeds(frame: pd.DataFrame, order: pd.Series | None = None) -> pd.DataFrame:
    """``frame`` with one run per (dataset, budget, method, seed, data_seed): the last in
    ``order`` (or in the frame), the others left out and listed in ``attrs["duplicates"]``."""
    keys = ["dataset", "budget", "method", "seed", "data_seed"]
    ranked = frame if order is None else frame.loc[order.sort_values(kind="stable").index]
    last = ranked.drop_duplicates(keys, keep="last")
    if len(last) == len(frame):
        out = frame
    else:
        kept = {tuple(k): run for k, run in zip(last[keys].itertuples(index=False), last["run_id"])}
        dropped = [
            {**dict(zip(keys, k)), "run_id": run, "kept": kept[tuple(k)]}
            for k, run, idx in zip(frame[keys].itertuples(index=False), frame["run_id"], frame.index)
            if idx not in last.index
        ]
        out = frame[frame.index.isin(last.index)].copy()
        out.attrs = {**frame.attrs, "duplicates": [*frame.attrs.get("duplicates", []), *dropped]}
    out.attrs.setdefault("duplicates", [])
    return out


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and number of seeds per (dataset, budget, method).

    Args:
        frame: the output of :func:`runs_frame`. A frame made otherwise that still has
            several runs of one (seed, data_seed) in a row keeps the last of them.

    Returns:
        One row per (dataset, budget, method) in order of first appearance, with
        ``{m}_mean`` and ``{m}_std`` (ddof 1, NaN for one seed) for m in many, medium, few,
        top1, worst, hmean, and ``n`` (runs averaged: unique (seed, data_seed)). ``attrs`` are carried over,
        ``duplicates`` listing the runs left out.
    """
    frame = unique_seeds(frame)
    keys = ["dataset", "budget", "method"]
    grouped = frame.groupby(keys, sort=False, dropna=False)  # a missing budget is still a group
    out = grouped[list(METRICS)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["n"] = grouped.size()
    out = out.reset_index()
    out.attrs = dict(frame.attrs)
    return out
