"""Opening a store from a location (a SQLite file's path or a ``postgresql://`` URL), read-only
or not, and bringing it up to date with finished run folders."""

from __future__ import annotations

from pathlib import Path

from .postgres import PostgresStore, is_postgres_url, redact
from .records import DEFAULT_OUT
from .sqlite import ResultStore

Store = ResultStore | PostgresStore  # what every store function returns: one API


def connect_store(location: str | Path, readonly: bool = False) -> Store:
    """The store at ``location``: a :class:`PostgresStore` for a ``postgresql://`` or
    ``postgres://`` URL, a SQLite :class:`ResultStore` for anything else (a path).

    Raises:
        StoreError: the store cannot be used (see each class); the message says why and the fix.
    """
    if is_postgres_url(location):
        return PostgresStore(str(location), readonly=readonly)
    return ResultStore(location, readonly=readonly)


def shown(location: str | Path) -> str:
    """A store's location as messages show it: a URL without its password, a path as given."""
    return redact(str(location)) if is_postgres_url(location) else str(location)


def runs_folder(location: str | Path, runs: str | Path | None = None) -> Path:
    """Where the run folders of a store's runs are: ``runs`` when given, else the SQLite file's
    own folder (where ``ltbench run`` puts them), else (a URL has no folder) ``results``."""
    if runs is not None:
        return Path(runs)
    return DEFAULT_OUT if is_postgres_url(location) else Path(location).parent


def open_store(store: str | Path) -> Store:
    """An existing results store, opened read-only (SQLite: ``mode=ro``, it works on a read-only
    disk and is never changed; PostgreSQL: read-only transactions); a missing SQLite file is an
    error (reading never creates it), and so is a file that is not an ltbench store or a server
    that cannot be reached (:class:`ltbench.core.errors.StoreError`)."""
    if not is_postgres_url(store) and not Path(store).exists():
        raise FileNotFoundError(f"no results store at {store}; run `ltbench run` first or pass --store PATH")
    return connect_store(store, readonly=True)


def synced_store(store: str | Path, runs: str | Path | None = None) -> Store:
    """An existing store, first brought up to date with the finished ``record.json`` files
    under ``runs`` (default: :func:`runs_folder`)."""
    import sys

    db = open_store(store)
    db.sync(runs_folder(store, runs))
    for note in db.notes:  # a sync that could not write: say so in one line and go on
        print(f"note: {note}", file=sys.stderr)
    return db
