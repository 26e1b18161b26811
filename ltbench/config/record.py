"""The run record: what ``record.json`` in a run folder holds, the store indexes, reports
read and the launchers pass back. One definition, so every side reads the same fields.

A record is plain JSON (per-class vectors as lists; read from the store they come back as
NumPy arrays). Fields are added, never renamed; :data:`RECORD_SCHEMA` goes up when a change
would make an older reader misread a record.
"""

from __future__ import annotations

from typing import Any, TypedDict

RECORD_SCHEMA = 1


class RunRecord(TypedDict, total=False):
    schema: int  # RECORD_SCHEMA of the writer
    run_id: str  # identity: config hash with the lineage (planning.sweep.run_id)
    config_hash: str  # the same id, kept for older readers
    method: str
    dataset: str
    budget: str
    seed: int  # training seed
    data_seed: int  # which images form the long-tailed train set
    status: str  # done | failed
    error: str | None  # the failure's message, for failed runs
    traceback: str  # for failed runs
    config: dict[str, Any]  # the resolved RunConfig as a dict (reproduce re-runs from it)
    overrides: list[str]  # the user's --set values that reached this method
    needs: dict[str, str]  # role -> run id of each stage consumed (its lineage)
    # role -> {run_id, selection, epoch, file}: which weights of each consumed stage were loaded
    # (a backbone's best-on-validation epoch, by default); absent on runs recorded before.
    needs_selection: dict[str, dict]
    variant: str  # identity without the seeds: runs of one variant are seeds of one table row
    num_classes: int
    class_names: list[str]
    train_counts: list[int]  # training images per class: groups are recomputed from them
    val_counts: list[int] | None  # validation images per class (None: no validation set)
    index_sizes: list[int] | None  # DeiT-LT's head / mid / tail block sizes
    group_convention: str  # convention of the stored `metrics`
    effective_batch: int
    world_size: int
    provenance: dict[str, Any]  # versions, git commit, device, data fingerprint, data root, verified
    run_dir: str
    started_at: str  # ISO 8601, UTC
    finished_at: str
    results: dict[str, Any]  # selection (last | best_val) -> per-class correct/total, calibration bins, heads
    metrics: dict[str, dict[str, float | None]]  # selection -> top1, many, medium, few, ece, ...
    history: list[dict[str, Any]]  # per epoch: train_loss, val_top1, lr, seconds
    timings: dict[str, float]
    skipped_images: int
    unreadable_images: list[str]
    # The stored logits (ltbench.reports.posthoc): {file: name in run_dir, sha256 of the file, bytes,
    # dtype "float32" ("float16" before exact storage), selections: {last | best_val: key
    # prefix in the file}, write_seconds}.
    # An output, never part of the run id; absent on runs recorded before logits were stored.
    logits: dict[str, Any]
    skipped: bool  # not stored: set on records of runs found done instead of run


def placeholder(spec, status: str, error: str | None = None) -> RunRecord:
    """A record naming a planned run that left none of its own (a job that died early)."""
    c = spec.config
    return RunRecord(
        run_id=spec.run_id,
        method=c.method.name,
        dataset=c.data.name,
        budget=c.budget,
        seed=c.seed,
        data_seed=c.data_seed,
        status=status,
        error=error,
        run_dir=str(spec.run_dir),
    )
