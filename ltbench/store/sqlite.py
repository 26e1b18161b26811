"""The results store: run records as JSON files in run folders, indexed in SQLite.

A run writes its record atomically into its own folder (``record.json``, temp file + rename),
so a result survives the process that launched it. :meth:`ResultStore.ingest` copies records
into the database idempotently (``INSERT OR REPLACE`` keyed by ``run_id``), inside one
transaction; SQLite's WAL mode and a busy timeout let several processes write at once.

Tables (see :data:`SCHEMA`):

- ``runs``: one row per run: identity, status, timings, provenance columns for queries, the
  record as JSON (history, resolved config, provenance) and, in ``vectors``, its per-class
  vectors and calibration bins as one binary blob (the JSON holds an offset, dtype and shape
  in their place; :mod:`ltbench.store.codec`, shared with the PostgreSQL store). Decoding a
  JSON list of numbers is what made reading 10,000 runs slow; :meth:`ResultStore.records`
  returns those vectors as read-only NumPy arrays instead.
- ``metrics``: long form (run_id, selection, convention, metric, value), under the recipe's
  default convention; reports recompute other conventions from the per-class counts.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import StoreError
from .codec import (
    check_schema,
    metric_rows,
    run_row,
)
from .file_check import BUSY_TIMEOUT, cannot_write, check_store_file, error_text, open_readonly
from .queries import RunQueries

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


class ResultStore(RunQueries):
    """SQLite index of run records.

    Example:
        >>> store = ResultStore("results/ltbench.db")
        >>> store.ingest(record)            # idempotent
        >>> [r["method"] for r in store.records()]
    """

    busy_timeout = BUSY_TIMEOUT  # seconds a statement waits for another process's write lock

    def __init__(self, path: str | Path, readonly: bool = False):
        """Open the store at ``path``; a file that is not an ltbench store is refused untouched.

        ``readonly``: open it with SQLite's ``mode=ro`` (nothing is created or changed; a store
        on a read-only disk can be read); it must exist. Otherwise it is created if absent.

        Raises:
            StoreError: not an ltbench store (the message says what it is), absent when
                reading, or not writable when writing.
        """
        self.path = Path(path)
        self.readonly = readonly
        self.notes: list[str] = []  # one-line notes for the user (a sync that could not write)
        self._immutable = False
        has_tables = check_store_file(self.path)
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"no results store at {self.path}; run `ltbench run` first or pass --store PATH")
            self._has_vectors = self._vectors_column() if has_tables else True
            self._empty = not has_tables
            return
        self._empty = False
        self._has_vectors = True
        try:
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
        except (sqlite3.OperationalError, OSError) as e:
            if isinstance(e, sqlite3.OperationalError) and not cannot_write(e):
                raise
            raise StoreError(
                f"cannot write the results store {self.path} ({error_text(e)}); pass --store PATH on a writable disk"
            ) from None

    @property
    def _vectors(self) -> str:
        return "vectors" if self._has_vectors else "NULL"  # a store from before vectors had a column

    def _vectors_column(self) -> bool:
        with self._connect() as db:
            return "vectors" in {row[1] for row in db.execute("PRAGMA table_info(runs)")}

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction (committed on success, rolled back on error), closed
        at the end: a connection left open for the garbage collector keeps its locks and WAL in
        an unknown state, and another process's checkpoint can pull the WAL from under it."""
        if self.readonly:
            db = self._connect_readonly()
        else:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout)
        try:
            if not self.readonly:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA foreign_keys=ON")
            with db:
                yield db
        finally:
            db.close()

    def _connect_readonly(self) -> sqlite3.Connection:
        """SQLite's ``mode=ro``; on a read-only disk (where nobody can be writing it, and the
        shared-memory file of WAL cannot be made) ``immutable=1``."""
        db = open_readonly(self.path, self._immutable)
        if not self._immutable:
            try:
                db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError as e:
                if not cannot_write(e):
                    raise
                db.close()
                self._immutable = True
                return self._connect_readonly()
        return db

    def ingest(self, record: dict[str, Any]) -> None:
        """Insert or replace one record and its metrics, atomically."""
        self._require_writable()
        check_schema(record)
        row = run_row(record)
        metrics = metric_rows(record)
        with self._connect() as db:  # one transaction: the run and its metrics, or nothing
            db.execute("DELETE FROM metrics WHERE run_id = ?", (record["run_id"],))
            db.execute(f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(row))})", row)
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", metrics)

    def _transient(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))

    def sync(self, out_dir: str | Path) -> int:
        """Ingest the ``record.json`` files under ``out_dir/runs`` that the store lacks or holds
        in an older state (a run killed between writing its record and ingesting it, a store
        that was locked). Records are the truth; the store is their index. Returns how many.

        A store opened read-only is written through a second, writable connection, only when
        there is something to ingest; where that cannot write (a read-only disk), a line in
        :attr:`notes` says so and the store is read as it is."""
        runs, pending = self._pending(out_dir)
        if not pending:
            return 0
        writer = self
        if self.readonly:
            try:
                writer = ResultStore(self.path)
            except StoreError:
                self.notes.append(
                    f"{len(pending)} finished runs under {runs} are not in the store {self.path}, which is "
                    "read-only here; showing the store as it is (`ltbench ingest` them where it is writable)"
                )
                return 0
        for record in pending:
            if not writer.ingest_retrying(record):
                raise StoreError(f"the store {self.path} stayed locked by another process; run the command again")
        return len(pending)
