"""A results store on a PostgreSQL server: one database for a whole lab (``--store postgresql://...``).

The same tables and columns as the SQLite store (:mod:`ltbench.store.sqlite`; per-class
vectors packed into ``runs.vectors`` by :mod:`ltbench.store.codec`, here BYTEA) and the same
methods and behaviour as :class:`~ltbench.store.sqlite.ResultStore`. Many writers are safe:
a record goes in as one transaction (``INSERT ... ON CONFLICT (run_id) DO UPDATE``, then its
metrics under the run row's lock). The driver is psycopg 3, imported only when such a store
is opened (``pip install 'ltbench[postgres]'``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..core.errors import StoreError
from .codec import (
    RUN_COLUMNS,
    check_schema,
    metric_rows,
    run_row,
)
from .queries import RunQueries

URL_SCHEMES = ("postgresql://", "postgres://")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    method        TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    budget        TEXT NOT NULL,
    seed          INTEGER NOT NULL,
    data_seed     INTEGER NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    started_at    TEXT,
    finished_at   TEXT,
    train_seconds DOUBLE PRECISION,
    eval_seconds  DOUBLE PRECISION,
    ltbench_version TEXT,
    git_commit    TEXT,
    device        TEXT,
    data_fingerprint TEXT,
    run_dir       TEXT,
    record        TEXT NOT NULL,
    vectors       BYTEA
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    selection  TEXT NOT NULL,
    convention TEXT NOT NULL,
    metric     TEXT NOT NULL,
    value      DOUBLE PRECISION,
    PRIMARY KEY (run_id, selection, convention, metric)
);
CREATE INDEX IF NOT EXISTS runs_by_cell ON runs (dataset, method, budget);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS vectors BYTEA;
"""

# The columns a table named runs must have to be ltbench's (as file_check asks of SQLite files).
_RUNS_COLUMNS = {"run_id", "method", "dataset", "budget", "seed", "data_seed", "status", "record"}

_UPSERT = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join(['%s'] * len(RUN_COLUMNS))}) "
    f"ON CONFLICT (run_id) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in RUN_COLUMNS[1:])}"
)

# Text sorts byte-wise as in SQLite, whatever the database's collation; NULL start times first.
_BY_START = 'ORDER BY started_at COLLATE "C" NULLS FIRST, run_id COLLATE "C"'
_BY_CELL = 'ORDER BY r.dataset COLLATE "C", r.method COLLATE "C", r.budget COLLATE "C", r.seed'

_SCHEMA_LOCK = 0x6C7462656E6368  # pg_advisory_xact_lock key: one schema creation at a time

_URL_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def is_postgres_url(location: str | Path) -> bool:
    """Whether a ``--store`` location names a PostgreSQL server rather than a SQLite file."""
    return isinstance(location, str) and location.lower().startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter), for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _driver():
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "a postgresql:// store needs the psycopg 3 driver, which is not installed; pip install 'ltbench[postgres]'"
        ) from None
    return psycopg


def _why(e: BaseException, url: str, secret: str | None) -> str:
    """A connection error as one line with its fix, the password left out."""
    text = " ".join(str(e).split()) or type(e).__name__
    if secret:
        text = text.replace(secret, "***")
    low = text.lower()
    if "password" in low or "authentication" in low or ("role" in low and "does not exist" in low):
        fix = "check the user and password in the URL (or ~/.pgpass) and the server's pg_hba.conf"
    elif "database" in low and "does not exist" in low:
        fix = "create the database (`createdb NAME`) or name one that exists"
    elif "invalid" in low or "missing" in low or "syntax" in low:
        fix = f"write the store as {_URL_FORM}"
    else:
        fix = "start the server, or check the host and port in the URL"
    return f"cannot open the PostgreSQL results store {url} ({text}); {fix}"


def _transient(e: BaseException) -> bool:
    """An error a retry may get past: a lost connection, a deadlock, a serialization failure."""
    psycopg = _driver()
    if isinstance(e, StoreError):
        return isinstance(e.__cause__, psycopg.OperationalError)
    return isinstance(e, (psycopg.OperationalError, psycopg.errors.SerializationFailure))


class PostgresStore(RunQueries):
    """The results store in a PostgreSQL database; the API of :class:`~ltbench.store.sqlite.ResultStore`.

    Example:
        >>> store = PostgresStore("postgresql://lab@db.example.org/ltbench")
        >>> store.ingest(record)            # idempotent; safe with many writers
        >>> [r["method"] for r in store.records()]
    """

    _MARK = "%s"
    _BY_START = _BY_START
    _BY_CELL = _BY_CELL
    connect_timeout = 10  # seconds to reach the server before giving up with a StoreError
    check_after = 5.0  # seconds idle after which the kept connection is checked before use

    def __init__(self, url: str, readonly: bool = False):
        """Open the store at ``url`` (``postgresql://`` or ``postgres://``); the tables are
        created unless ``readonly``. A database whose ``runs`` table is another program's is
        refused untouched.

        Raises:
            StoreError: psycopg is missing, the URL is malformed, the server cannot be reached
                or refuses the login, or the tables are not ltbench's; the message names the
                URL without its password and the fix.
        """
        if not is_postgres_url(url):
            raise StoreError(f"{url!r} is not a PostgreSQL URL; write the store as {_URL_FORM}")
        self._url = url
        self._secret = urlsplit(url).password
        self.path = redact(url)  # what messages show: never the password
        self.readonly = readonly
        self.notes: list[str] = []  # one-line notes for the user (a sync that could not write)
        self._psycopg = _driver()
        self._db, self._db_pid, self._db_used = None, 0, 0.0
        try:
            with self._connect() as db:
                # Create or extend the tables only where they are missing: a lab member who may
                # write rows but does not own the tables (nor may create in the schema) still opens it.
                if not readonly and not self._has_current_tables(db):
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    self._check_tables(db)
                    db.execute(SCHEMA)
                self._empty = not self._check_tables(db)
        except self._psycopg.Error as e:  # e.g. no right to create the tables
            raise StoreError(
                f"cannot {'read' if readonly else 'set up'} the PostgreSQL results store {self.path} "
                f"({' '.join(str(e).split())}); ask the database's owner to create the tables once "
                "(any `ltbench run` by them does) and to grant this login SELECT, INSERT, UPDATE, DELETE on them"
            ) from None

    @staticmethod
    def _columns(db, table: str) -> set[str]:
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s"
        )
        return {name for (name,) in db.execute(sql, (table,))}

    def _has_current_tables(self, db) -> bool:
        """ltbench's tables are there, with the newest column: nothing to create."""
        runs = self._columns(db, "runs")
        return _RUNS_COLUMNS | {"vectors"} <= runs and bool(self._columns(db, "metrics"))

    def _check_tables(self, db) -> bool:
        """True if ltbench's tables are there, False if there is no ``runs`` table yet."""
        columns = self._columns(db, "runs")
        if columns and not _RUNS_COLUMNS <= columns:
            raise StoreError(
                f"the database {self.path} has a table 'runs' of another program (columns: "
                f"{', '.join(sorted(columns))}), not an ltbench store; ltbench leaves it untouched; "
                "pass --store a URL of another database (or schema, with ?options=-csearch_path=NAME)"
            )
        return bool(columns)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Any]:
        """The store's connection, in one transaction (committed on success, rolled back on error).

        One connection per store and process, opened on first use: connecting costs about 8 ms
        (a local server), some 15 times a status query. A connection that failed is dropped and the
        next call connects again (a server restarted between two runs); after a fork the child
        opens its own; one idle past :attr:`check_after` is checked first."""
        psycopg = self._psycopg
        db = self._db if self._db is not None and self._db_pid == os.getpid() and not self._db.closed else None
        if db is not None and time.monotonic() - self._db_used > self.check_after:
            try:  # idle a while: is the server still the one we talked to? (one round trip)
                db.execute("SELECT 1")
                db.rollback()
            except psycopg.OperationalError:
                self.close()
                db = None
        if db is None:
            options = {} if "connect_timeout" in self._url else {"connect_timeout": self.connect_timeout}
            try:
                db = psycopg.connect(self._url, **options)
            except (psycopg.OperationalError, psycopg.ProgrammingError) as e:
                raise StoreError(_why(e, self.path, self._secret)) from e
            db.read_only = self.readonly
            self._db, self._db_pid = db, os.getpid()
        try:
            with db.transaction():
                yield db
            self._db_used = time.monotonic()
        except psycopg.OperationalError as e:  # the server went away mid-transaction
            self.close()
            raise StoreError(_why(e, self.path, self._secret)) from e

    def close(self) -> None:
        """Close the store's connection (the next call opens another)."""
        if self._db is not None and self._db_pid == os.getpid():
            self._db.close()
        self._db = None

    def __getstate__(self) -> dict[str, Any]:  # a store sent to another process connects there
        return {k: v for k, v in self.__dict__.items() if k not in ("_db", "_psycopg")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _db=None, _psycopg=_driver())

    def ingest(self, record: dict[str, Any]) -> None:
        """Insert or replace one record and its metrics, atomically."""
        self._require_writable()
        check_schema(record)
        row = run_row(record)
        metrics = metric_rows(record)
        try:
            with self._connect() as db:  # one transaction: the run and its metrics, or nothing
                # The upsert first: it holds the run's row lock, so a second writer of the same run
                # waits here and then replaces this one's metrics instead of colliding with them.
                db.execute(_UPSERT, row)
                db.execute("DELETE FROM metrics WHERE run_id = %s", (record["run_id"],))
                with db.cursor() as cur:
                    cur.executemany("INSERT INTO metrics VALUES (%s, %s, %s, %s, %s)", metrics)
        except self._psycopg.errors.InsufficientPrivilege as e:
            raise StoreError(
                f"this login may not write the PostgreSQL results store {self.path} ({' '.join(str(e).split())}); "
                "ask the tables' owner to grant this login SELECT, INSERT, UPDATE, DELETE on runs and metrics"
            ) from e

    def _transient(self, error: Exception) -> bool:
        return _transient(error)

    def sync(self, out_dir: str | Path) -> int:
        """Ingest the ``record.json`` files under ``out_dir/runs`` that the store lacks or holds
        in an older state; returns how many. A store opened read-only writes them through a
        writable connection; where the login may not write, a line in :attr:`notes` says so."""
        runs, pending = self._pending(out_dir)
        if not pending:
            return 0
        writer = self
        cannot_write = (
            f"{len(pending)} finished runs under {runs} are not in the store {self.path}, which this "
            "login cannot write; showing the store as it is (`ltbench ingest` them with a login that can)"
        )
        if self.readonly:
            try:
                writer = PostgresStore(self._url)
            except StoreError:
                self.notes.append(cannot_write)
                return 0
        try:
            for record in pending:
                if not writer.ingest_retrying(record):
                    raise StoreError(f"the store {self.path} stayed out of reach; run the command again")
        except StoreError as e:
            if not (self.readonly and isinstance(e.__cause__, self._psycopg.errors.InsufficientPrivilege)):
                raise
            self.notes.append(cannot_write)  # may read the rows, may not write them
            return 0
        finally:
            if writer is not self:
                writer.close()
        return len(pending)
