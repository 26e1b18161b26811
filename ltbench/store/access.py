"""Opening an existing store read-only, and bringing it up to date with finished run folders."""

from __future__ import annotations

from pathlib import Path

from .sqlite import ResultStore


def open_store(store: str | Path) -> ResultStore:
    """An existing results store, opened read-only (``mode=ro``: it works on a read-only disk
    and is never changed); a missing one is an error (reading never creates it), and so is a
    file that is not an ltbench store (:class:`ltbench.core.errors.StoreError`)."""
    if not Path(store).exists():
        raise FileNotFoundError(f"no results store at {store}; run `ltbench run` first or pass --store PATH")
    return ResultStore(store, readonly=True)


def synced_store(store: str | Path, runs: str | Path | None = None) -> ResultStore:
    """An existing store, first brought up to date with the finished ``record.json`` files
    under ``runs`` (default: the store's own folder, where ``ltbench run`` puts them)."""
    import sys

    db = open_store(store)
    db.sync(Path(store).parent if runs is None else runs)
    for note in db.notes:  # a sync that could not write: say so in one line and go on
        print(f"note: {note}", file=sys.stderr)
    return db
