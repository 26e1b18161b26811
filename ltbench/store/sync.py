"""Which finished run folders a store lacks: the backend-neutral half of ``sync``.

Records in run folders are the truth and a store is their index; a store's ``sync`` asks
:func:`pending_records` which records to (re-)ingest and writes them itself.

Cost at scale: a runs folder written by this ltbench has a journal (:data:`ltbench.store.
records.JOURNAL`), one entry per finished record named ``<run id>~<finish time>``. Sync lists
that folder and the method folders, and reads a record only where its entry is newer than
what the store holds, or where a run folder has no entry (copied in, written by an older
ltbench, a run still going), as a walk would: a sync of 2,000 stored runs opens no run folder
and reads no record. Without a journal it walks every run folder, as before; ``ltbench
ingest`` always walks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config.record import RECORD_SCHEMA
from .records import JOURNAL, RECORD, folder_key, stamp

KnownRow = tuple[str, "str | None", str, "str | None"]  # run_id, run_dir, status, finished_at


def _finished_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # being replaced this instant, or not a record: the next sync sees it
    if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA or not record.get("finished_at"):
        return None
    return record


def pending_records(runs_dir: Path, known_rows: Iterable[KnownRow]) -> list[dict[str, Any]]:
    """The finished records under ``runs_dir`` (``<dataset>/<method>/<run>/record.json``) that
    the store lacks or holds in an older state, in path order.

    ``known_rows``: the store's ``(run_id, run_dir, status, finished_at)`` rows. A run folder
    with a journal entry is read only when the entry is newer than what the store holds; a run
    folder without one (copied in, written by an older ltbench, a run still going) is read as a
    walk reads it: not again once the store holds it as ``done``. A record that cannot be read
    this instant (being replaced, not JSON), of another schema or not finished is left for a
    later sync.
    """
    runs_dir = Path(runs_dir)
    known_rows = list(known_rows)
    entries = _entries(runs_dir / JOURNAL)
    if entries is None:  # no journal: walk them all
        return walk_records(runs_dir, known_rows)
    journaled = {name.partition("~")[0][:10] for name in entries}
    # Run folders are named <budget>-s<seed>-d<data seed>-<first 10 characters of the run id>.
    unlisted = [
        Path(parent, name) for parent, name in _run_folders(runs_dir) if name.rsplit("-", 1)[-1] not in journaled
    ]
    found = _from_journal(runs_dir, entries, known_rows) + _read_folders(unlisted, known_rows)
    return [record for _, record in sorted(found, key=lambda pair: pair[0])]


def _entries(journal: Path) -> list[str] | None:
    try:
        names = os.listdir(journal)
    except OSError:
        return None
    return [n for n in names if not n.startswith(".") and "~" in n]  # not a writer's temporary file


def _run_folders(runs_dir: Path) -> list[tuple[str, str]]:
    """Every run folder as (method folder, name), from the method folders' listings (one
    listing per dataset and method, no stat per run where the file system gives entry types)."""
    out = []
    for dataset in os.scandir(runs_dir):
        if dataset.name.startswith(".") or not dataset.is_dir():
            continue
        for method in os.scandir(dataset.path):
            if method.is_dir():
                with os.scandir(method.path) as runs:
                    out += [(method.path, run.name) for run in runs if run.is_dir()]
    return out


def _from_journal(runs_dir: Path, entries: list[str], known_rows: list[KnownRow]) -> list[tuple[str, dict]]:
    held = {run_id: stamp(finished or "") for run_id, _dir, _status, finished in known_rows}
    found = []
    for name in entries:
        run_id, _, finished = name.partition("~")
        if run_id in held and held[run_id] >= finished:
            continue
        try:
            folder = (runs_dir / JOURNAL / name).read_text().strip()
        except OSError:
            continue  # replaced by a newer entry this instant
        record = _finished_record(runs_dir / folder / RECORD)
        if record is not None and record.get("run_id") == run_id and stamp(record["finished_at"]) >= finished:
            found.append((folder, record))
    return found


def _read_folders(folders: Iterable[Path], known_rows: list[KnownRow]) -> list[tuple[str, dict]]:
    """The records of ``folders`` the store lacks or holds in another state (a folder it holds
    as ``done`` is not read)."""
    known = {folder_key(run_dir): (status, finished) for _run_id, run_dir, status, finished in known_rows if run_dir}
    found = []
    for folder in folders:
        seen = known.get(folder_key(folder))
        if seen is not None and seen[0] == "done":
            continue
        record = _finished_record(folder / RECORD)
        if record is None:
            continue
        if seen is None or seen != (record.get("status"), record.get("finished_at")):
            found.append(("/".join(folder_key(folder)), record))
    return found


def walk_records(runs_dir: Path, known_rows: Iterable[KnownRow]) -> list[dict[str, Any]]:
    """:func:`pending_records` by walking every run folder (no journal to go by)."""
    folders = [path.parent for path in sorted(Path(runs_dir).glob(f"*/*/*/{RECORD}"))]
    return [record for _, record in _read_folders(folders, list(known_rows))]
