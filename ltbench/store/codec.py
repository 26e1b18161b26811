"""A run record as store rows and back, the same for every backend (SQLite, PostgreSQL).

A record's per-class vectors and calibration bins go into one binary blob (little-endian,
back to back); the JSON keeps ``{"__vector__": [offset, dtype, shape]}`` in their place.
Decoding a JSON list of numbers is what made reading 10,000 runs slow; :func:`decode`
returns those vectors as read-only NumPy arrays instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..config.record import RECORD_SCHEMA

# The columns of ``runs``, in table order (both backends create them in this order).
RUN_COLUMNS = (
    "run_id",
    "method",
    "dataset",
    "budget",
    "seed",
    "data_seed",
    "status",
    "error",
    "started_at",
    "finished_at",
    "train_seconds",
    "eval_seconds",
    "ltbench_version",
    "git_commit",
    "device",
    "data_fingerprint",
    "run_dir",
    "record",
    "vectors",
)

# Columns ``records(**where)`` may filter on.
FILTERS = frozenset({"method", "dataset", "budget", "seed", "data_seed"})

# The columns ``summary_rows`` reads, then a metric's selection, name and value.
SUMMARY_COLUMNS = (
    "run_id",
    "method",
    "dataset",
    "budget",
    "seed",
    "data_seed",
    "status",
    "error",
    "train_seconds",
    "finished_at",
)

# Keys under a record's "results" whose values are per-class vectors or bins.
_VECTORS = frozenset({"correct", "total", "count", "conf_sum", "correct_sum"})


_STUB = "__vector__"


def _pack(node: Any, chunks: list[bytes], offset: list[int]) -> Any:
    """``node`` with every per-class vector replaced by ``{"__vector__": [offset, dtype, shape]}``."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _VECTORS and isinstance(value, (list, np.ndarray)):  # arrays: a record read from a store
            try:
                arr = np.asarray(value)
            except ValueError:  # ragged: not a vector, keep it as JSON
                out[key] = value
                continue
            if arr.dtype.kind in "iub":
                arr = arr.astype("<i4" if arr.size == 0 or np.abs(arr).max() < 2**31 else "<i8")
            elif arr.dtype.kind == "f":
                arr = arr.astype("<f8")
            else:  # not numbers: keep as JSON
                out[key] = value
                continue
            out[key] = {_STUB: [offset[0], arr.dtype.str, list(arr.shape)]}
            chunks.append(arr.tobytes())
            offset[0] += arr.nbytes
        else:
            out[key] = _pack(value, chunks, offset)
    return out


def _unpack(node: Any, blob: bytes) -> Any:
    if not isinstance(node, dict):
        return node
    if _STUB in node:
        start, dtype, shape = node[_STUB]
        count = math.prod(shape)
        return np.frombuffer(blob, dtype=dtype, count=count, offset=start).reshape(shape)
    return {k: _unpack(v, blob) for k, v in node.items()}


def encode(record: dict[str, Any]) -> tuple[str, bytes]:
    """The record as JSON with its vectors stubbed out, and the vectors' blob."""
    chunks: list[bytes] = []
    slim = {**record, "results": _pack(record["results"], chunks, [0])} if record.get("results") else record
    return json.dumps(slim), b"".join(chunks)


def decode(text: str, blob: bytes | memoryview | None) -> dict[str, Any]:
    """The record stored as ``text`` and ``blob`` (:func:`encode`'s output), vectors as arrays."""
    record = json.loads(text)
    if blob is not None and "results" in record:
        record["results"] = _unpack(record["results"], bytes(blob))
    return record


def check_schema(record: dict[str, Any]) -> None:
    """Refuse a record of another record schema (written by another ltbench version)."""
    if record.get("schema") != RECORD_SCHEMA:
        raise ValueError(f"record {record.get('run_id')} has schema {record.get('schema')}, expected {RECORD_SCHEMA}")


def run_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """The record's row of ``runs``, in :data:`RUN_COLUMNS` order."""
    prov = record.get("provenance", {})
    timings = record.get("timings", {})
    return (
        record["run_id"],
        record["method"],
        record["dataset"],
        record["budget"],
        record["seed"],
        record["data_seed"],
        record["status"],
        record.get("error"),
        record.get("started_at"),
        record.get("finished_at"),
        timings.get("train_seconds"),
        timings.get("eval_seconds"),
        prov.get("ltbench_version"),
        prov.get("git_commit"),
        prov.get("device"),
        prov.get("data_fingerprint"),
        record.get("run_dir"),
        *encode(record),
    )


def metric_rows(record: dict[str, Any]) -> list[tuple[str, str, str, str, Any]]:
    """The record's rows of ``metrics``: (run_id, selection, convention, metric, value), under
    the record's group convention."""
    convention = record.get("group_convention", "threshold")
    return [
        (record["run_id"], sel, convention, name, value)
        for sel, metrics in record.get("metrics", {}).items()
        for name, value in metrics.items()
    ]


def check_filters(where: dict[str, Any]) -> None:
    """Refuse ``records(**where)`` columns that are not :data:`FILTERS`."""
    bad = set(where) - FILTERS
    if bad:
        raise ValueError(f"cannot filter records by {sorted(bad)}; use {sorted(FILTERS)}")


def check_prefix(prefix: str) -> str:
    """``prefix`` lower-cased, or ValueError if it is not hexadecimal (run ids are)."""
    if not prefix or not all(c in "0123456789abcdef" for c in prefix.lower()):
        raise ValueError(f"{prefix!r} is not a run id (hexadecimal); `ltbench results` lists them")
    return prefix.lower()


def one_run_id(prefix: str, ids: list[str], where: str) -> str:
    """The one id of ``ids`` (those starting with ``prefix`` in the store ``where``), or a
    ValueError that says there are none or lists several."""
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise ValueError(f"no run id starts with {prefix!r} in {where}; `ltbench results` lists them")
    raise ValueError(
        f"run id prefix {prefix!r} is ambiguous ({', '.join(i[:12] for i in ids[:5])}, ...); give more of it"
    )


def summaries(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Flat summary rows from the joined rows (:data:`SUMMARY_COLUMNS`, selection, metric,
    value): one per run, its metrics as ``"<selection>.<metric>"`` keys."""
    out: dict[str, dict[str, Any]] = {}
    n = len(SUMMARY_COLUMNS)
    for row in rows:
        summary = out.setdefault(row[0], dict(zip(SUMMARY_COLUMNS, row[:n])))
        sel, metric, value = row[n:]
        if metric is not None:
            summary[f"{sel}.{metric}"] = value
    return list(out.values())
