"""The queries every results store answers the same way, written once for both backends.

A store class mixes in :class:`RunQueries` and gives its placeholder (``?`` for SQLite, ``%s``
for psycopg), its row orders (PostgreSQL sorts with the "C" collation and NULLs first, so both
give the same order), a ``_connect()`` context manager whose connection has ``execute``, and
``_transient(error)``: whether a failed write is worth retrying (a lock, a lost connection).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.errors import StoreError
from .codec import SUMMARY_COLUMNS, check_filters, check_prefix, decode, one_run_id, summaries
from .records import read_record
from .sync import pending_records


class RunQueries:
    """find, forget, ingest_dirs, get, status, records and summary_rows of a store."""

    _MARK = "?"  # the driver's parameter placeholder
    _BY_START = "ORDER BY started_at, run_id"
    _BY_CELL = "ORDER BY r.dataset, r.method, r.budget, r.seed"
    _empty = False  # a store opened read-only that has no tables yet: every query answers nothing

    @property
    def _vectors(self) -> str:
        """The column holding per-class vectors (NULL in a store from before they had one)."""
        return "vectors"

    def _sql(self, text: str) -> str:
        return text.replace("?", self._MARK)

    def _transient(self, error: Exception) -> bool:
        """Whether a write that failed with ``error`` may succeed if tried again."""
        return False

    def _require_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"the results store {self.path} was opened read-only; open it without readonly=True")

    def ingest_retrying(self, record: dict[str, Any], attempts: int = 5, wait: float = 2.0) -> bool:
        """``ingest``, retried while the error is transient (another process's write lock, a lost
        connection).

        Returns False if it stayed so: the record is still in its run folder, and the next
        command that reads the store ingests it (``sync``), so nothing is lost.
        """
        for attempt in range(attempts):
            try:
                self.ingest(record)
                return True
            except Exception as e:
                if not self._transient(e):
                    raise
                time.sleep(wait * (attempt + 1))
        return False

    def _pending(self, out_dir: str | Path) -> tuple[Path, list[dict[str, Any]]]:
        """The runs folder of ``out_dir`` and its finished records this store lacks (the first
        half of every store's ``sync``; a store with no tables yet is not synced into)."""
        runs = Path(out_dir) / "runs"
        if not runs.is_dir() or self._empty:
            return runs, []
        with self._connect() as db:
            known = db.execute("SELECT run_id, run_dir, status, finished_at FROM runs").fetchall()
        return runs, pending_records(runs, known)

    def find(self, prefix: str) -> str:
        """The one run id that starts with ``prefix``.

        Raises:
            ValueError: no run, or several, start with it (the message lists them).
        """
        prefix = check_prefix(prefix)
        if self._empty:
            raise ValueError(f"no run id starts with {prefix!r} in {self.path} (it holds no runs)")
        with self._connect() as db:
            rows = db.execute(self._sql("SELECT run_id FROM runs WHERE run_id LIKE ? LIMIT 6"), (prefix + "%",))
            ids = [row[0] for row in rows.fetchall()]
        return one_run_id(prefix, ids, str(self.path))

    def forget(self, run_id: str) -> None:
        """Remove a run (``--force`` redoes it); its metrics go with it."""
        self._require_writable()
        with self._connect() as db:
            db.execute(self._sql("DELETE FROM runs WHERE run_id = ?"), (run_id,))

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
        """The record of ``run_id`` (per-class vectors as read-only arrays), or None."""
        if self._empty:
            return None
        with self._connect() as db:
            sql = self._sql(f"SELECT record, {self._vectors} FROM runs WHERE run_id = ?")
            row = db.execute(sql, (run_id,)).fetchone()
        return decode(*row) if row else None

    def status(self, run_id: str) -> str | None:
        """``done`` or ``failed`` for a stored run, None for one the store lacks."""
        if self._empty:
            return None
        with self._connect() as db:
            row = db.execute(self._sql("SELECT status FROM runs WHERE run_id = ?"), (run_id,)).fetchone()
        return row[0] if row else None

    def records(self, status: str | None = "done", **where: Any) -> list[dict[str, Any]]:
        """Full records, oldest first; filter by status and columns (``method="ce"``).

        Per-class vectors and calibration bins (``correct``, ``total``, ``calib.count``, ...)
        come back as read-only NumPy arrays; everything else as stored."""
        check_filters(where)
        if self._empty:
            return []
        clauses = [f"{k} = ?" for k in where] + (["status = ?"] if status else [])
        params = [*where.values(), *([status] if status else [])]
        sql = f"SELECT record, {self._vectors} FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._connect() as db:
            rows = db.execute(self._sql(f"{sql} {self._BY_START}"), params).fetchall()
        return [decode(text, blob) for text, blob in rows]

    def summary_rows(self) -> list[dict[str, Any]]:
        """One flat row per run with its headline metrics (for ``ltbench results``)."""
        if self._empty:
            return []
        sql = f"""
            SELECT {", ".join("r." + c for c in SUMMARY_COLUMNS)}, m.selection, m.metric, m.value
            FROM runs r LEFT JOIN metrics m ON m.run_id = r.run_id {self._BY_CELL}"""
        with self._connect() as db:
            return summaries(db.execute(sql).fetchall())
