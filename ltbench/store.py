"""The results store: run records as JSON files in run folders, indexed in SQLite.

A run writes its record atomically into its own folder (``record.json``, temp file + rename),
so a result survives the process that launched it. :meth:`ResultStore.ingest` copies records
into the database idempotently (``INSERT OR REPLACE`` keyed by ``run_id``), inside one
transaction; SQLite's WAL mode and a busy timeout let several processes write at once.

Tables (see :data:`SCHEMA`):

- ``runs``: one row per run: identity, status, timings, provenance columns for queries, the
  record as JSON (history, resolved config, provenance) and, in ``vectors``, its per-class
  vectors and calibration bins as one binary blob (the JSON holds an offset, dtype and shape
  in their place). Decoding a JSON list of numbers is what made reading 10,000 runs slow;
  :meth:`ResultStore.records` returns those vectors as read-only NumPy arrays instead.
- ``metrics``: long form (run_id, selection, convention, metric, value), under the recipe's
  default convention; reports recompute other conventions from the per-class counts.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_text_atomic
from .record import RECORD_SCHEMA

DEFAULT_OUT = Path("results")
DEFAULT_STORE = DEFAULT_OUT / "ltbench.db"
RECORD = "record.json"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,   -- config hash (SHA-256 hex) of the resolved run config
    method        TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    budget        TEXT NOT NULL,
    seed          INTEGER NOT NULL,   -- training seed
    data_seed     INTEGER NOT NULL,   -- which images form the long-tailed train set
    status        TEXT NOT NULL,      -- done | failed
    error         TEXT,               -- the failure's message, for failed runs
    started_at    TEXT,               -- ISO 8601, UTC
    finished_at   TEXT,
    train_seconds REAL,
    eval_seconds  REAL,
    ltbench_version TEXT,
    git_commit    TEXT,
    device        TEXT,
    data_fingerprint TEXT,
    run_dir       TEXT,
    record        TEXT NOT NULL,      -- the record as JSON, per-class vectors replaced by stubs
    vectors       BLOB                -- the per-class vectors, little-endian, back to back
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    selection  TEXT NOT NULL,         -- last | best_val
    convention TEXT NOT NULL,         -- group convention of many/medium/few
    metric     TEXT NOT NULL,         -- top1, many, medium, few, ece, ece_many, ...
    value      REAL,                  -- fraction in [0, 1]; NULL for an empty group
    PRIMARY KEY (run_id, selection, convention, metric)
);
CREATE INDEX IF NOT EXISTS runs_by_cell ON runs (dataset, method, budget);
"""


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


def _decode(text: str, blob: bytes | None) -> dict[str, Any]:
    record = json.loads(text)
    if blob is not None and "results" in record:
        record["results"] = _unpack(record["results"], blob)
    return record


def write_record(record: dict[str, Any], run_dir: Path) -> Path:
    """Write ``record`` to ``run_dir/record.json`` atomically and return the path."""
    return write_text_atomic(run_dir / RECORD, json.dumps(record, indent=1, allow_nan=False))


def _folder_key(run_dir: str | Path) -> tuple[str, ...]:
    """A run folder by its last three parts (dataset / method / budget-seeds-id), so relative
    and absolute spellings of one folder match."""
    return Path(run_dir).parts[-3:]


def read_record(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


class ResultStore:
    """SQLite index of run records.

    Example:
        >>> store = ResultStore("results/ltbench.db")
        >>> store.ingest(record)            # idempotent
        >>> [r["method"] for r in store.records()]
    """

    busy_timeout = 60.0  # seconds a statement waits for another process's write lock

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if "vectors" not in columns:  # a store written before vectors moved out of the JSON
                try:
                    db.execute("ALTER TABLE runs ADD COLUMN vectors BLOB")
                except sqlite3.OperationalError as e:  # another process added it first
                    if "duplicate column" not in str(e):
                        raise

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def ingest(self, record: dict[str, Any]) -> None:
        """Insert or replace one record and its metrics, atomically."""
        if record.get("schema") != RECORD_SCHEMA:
            raise ValueError(
                f"record {record.get('run_id')} has schema {record.get('schema')}, expected {RECORD_SCHEMA}"
            )
        prov = record.get("provenance", {})
        timings = record.get("timings", {})
        row = (
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
            *self._encode(record),
        )
        convention = record.get("group_convention", "threshold")
        metric_rows = [
            (record["run_id"], sel, convention, name, value)
            for sel, metrics in record.get("metrics", {}).items()
            for name, value in metrics.items()
        ]
        with self._connect() as db:  # one transaction: the run and its metrics, or nothing
            db.execute("DELETE FROM metrics WHERE run_id = ?", (record["run_id"],))
            db.execute(f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(row))})", row)
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", metric_rows)

    @staticmethod
    def _encode(record: dict[str, Any]) -> tuple[str, bytes]:
        chunks: list[bytes] = []
        slim = {**record, "results": _pack(record["results"], chunks, [0])} if record.get("results") else record
        return json.dumps(slim), b"".join(chunks)

    def ingest_retrying(self, record: dict[str, Any], attempts: int = 5, wait: float = 2.0) -> bool:
        """:meth:`ingest`, retried while another process holds the store's write lock.

        Returns False if the store stayed locked: the record is still in its run folder, and
        the next command that reads the store ingests it (:meth:`sync`), so nothing is lost.
        """
        for attempt in range(attempts):
            try:
                self.ingest(record)
                return True
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(wait * (attempt + 1))
        return False

    def sync(self, out_dir: str | Path) -> int:
        """Ingest the ``record.json`` files under ``out_dir/runs`` that the store lacks or holds
        in an older state (a run killed between writing its record and ingesting it, a store
        that was locked). Records are the truth; the store is their index. Returns how many."""
        runs = Path(out_dir) / "runs"
        if not runs.is_dir():
            return 0
        with self._connect() as db:
            known = {
                _folder_key(run_dir): (status, finished)
                for run_dir, status, finished in db.execute("SELECT run_dir, status, finished_at FROM runs")
                if run_dir
            }
        n = 0
        for path in sorted(runs.glob(f"*/*/*/{RECORD}")):
            seen = known.get(_folder_key(path.parent))
            if seen is not None and seen[0] == "done":
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced this instant, or not a record: the next sync sees it
            if record.get("schema") != RECORD_SCHEMA or not record.get("finished_at"):
                continue
            if seen is None or seen != (record.get("status"), record.get("finished_at")):
                if not self.ingest_retrying(record):
                    raise ValueError(f"the store {self.path} stayed locked by another process; run the command again")
                n += 1
        return n

    def find(self, prefix: str) -> str:
        """The one run id that starts with ``prefix``.

        Raises:
            ValueError: no run, or several, start with it (the message lists them).
        """
        if not prefix or not all(c in "0123456789abcdef" for c in prefix.lower()):
            raise ValueError(f"{prefix!r} is not a run id (hexadecimal); `ltbench results` lists them")
        with self._connect() as db:
            ids = [
                row[0]
                for row in db.execute("SELECT run_id FROM runs WHERE run_id LIKE ? LIMIT 6", (prefix.lower() + "%",))
            ]
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise ValueError(f"no run id starts with {prefix!r} in {self.path}; `ltbench results` lists them")
        raise ValueError(
            f"run id prefix {prefix!r} is ambiguous ({', '.join(i[:12] for i in ids[:5])}, ...); give more of it"
        )

    def forget(self, run_id: str) -> None:
        """Remove a run (``--force`` redoes it); its metrics go with it."""
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def ingest_dirs(self, run_dirs: Iterable[Path]) -> int:
        """Ingest every ``record.json`` found in ``run_dirs``; returns how many."""
        n = 0
        for d in run_dirs:
            rec = read_record(Path(d))
            if rec is not None:
                self.ingest(rec)
                n += 1
        return n

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT record, vectors FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _decode(*row) if row else None

    def status(self, run_id: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def records(self, status: str | None = "done", **where: Any) -> list[dict[str, Any]]:
        """Full records, oldest first; filter by status and columns (``method="ce"``).

        Per-class vectors and calibration bins (``correct``, ``total``, ``calib.count``, ...)
        come back as read-only NumPy arrays; everything else as stored."""
        allowed = {"method", "dataset", "budget", "seed", "data_seed"}
        bad = set(where) - allowed
        if bad:
            raise ValueError(f"cannot filter records by {sorted(bad)}; use {sorted(allowed)}")
        clauses = [f"{k} = ?" for k in where] + (["status = ?"] if status else [])
        params = [*where.values(), *([status] if status else [])]
        sql = "SELECT record, vectors FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY started_at, run_id", params).fetchall()
        return [_decode(text, blob) for text, blob in rows]

    def summary_rows(self) -> list[dict[str, Any]]:
        """One flat row per run with its headline metrics (for ``ltbench results``)."""
        sql = """
            SELECT r.run_id, r.method, r.dataset, r.budget, r.seed, r.data_seed, r.status, r.error,
                   r.train_seconds, r.finished_at, m.selection, m.metric, m.value
            FROM runs r LEFT JOIN metrics m ON m.run_id = r.run_id
            ORDER BY r.dataset, r.method, r.budget, r.seed"""
        rows: dict[str, dict[str, Any]] = {}
        with self._connect() as db:
            for (
                run_id,
                method,
                dataset,
                budget,
                seed,
                data_seed,
                status,
                error,
                secs,
                finished,
                sel,
                metric,
                value,
            ) in db.execute(sql):
                row = rows.setdefault(
                    run_id,
                    {
                        "run_id": run_id,
                        "method": method,
                        "dataset": dataset,
                        "budget": budget,
                        "seed": seed,
                        "data_seed": data_seed,
                        "status": status,
                        "error": error,
                        "train_seconds": secs,
                        "finished_at": finished,
                    },
                )
                if metric is not None:
                    row[f"{sel}.{metric}"] = value
        return list(rows.values())
