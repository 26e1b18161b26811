"""Which finished run folders a store lacks: the backend-neutral half of ``sync``.

Records in run folders are the truth and a store is their index; a store's ``sync`` asks
:func:`pending_records` which records to (re-)ingest and writes them itself.

Cost at scale: a runs folder written by this ltbench has a journal (:data:`ltbench.store.
records.JOURNAL`), one entry per finished record named ``<run id>~<finish time>``. Sync lists
that folder and the method folders (to count the run folders), and reads only the records
whose entry is newer than what the store holds: a sync of 2,000 stored runs opens no run
folder and reads no record. Where the run folders outnumber the entries (no journal; folders
copied in or written by an older ltbench; runs still going) it walks every run folder, as
before, which is always right; ``ltbench ingest`` always walks.
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

    ``known_rows``: the store's ``(run_id, run_dir, status, finished_at)`` rows. With a journal,
    an entry the store holds at the same or a later finish time is not read; without one, a
    folder the store holds as ``done`` is not read again. A record that cannot be read this
    instant (being replaced, not JSON), of another schema or not finished is left for a later sync.
    """
    runs_dir = Path(runs_dir)
    journal = runs_dir / JOURNAL
    entries = _entries(journal)
    if entries is not None and len(entries) >= _count_run_folders(runs_dir):
        return _from_journal(runs_dir, journal, entries, known_rows)
    # No journal, or folders it does not list (copied in, written by an older ltbench, or a
    # run still going): walk them all, which is always right.
    return walk_records(runs_dir, known_rows)


def _entries(journal: Path) -> list[str] | None:
    try:
        names = os.listdir(journal)
    except OSError:
        return None
    return [n for n in names if not n.startswith(".") and "~" in n]  # not a writer's temporary file


def _count_run_folders(runs_dir: Path) -> int:
    """Run folders under ``runs_dir``, counted from the method folders' listings (one listing
    per dataset and method, no stat per run)."""
    count = 0
    for dataset in os.scandir(runs_dir):
        if dataset.name.startswith(".") or not dataset.is_dir():
            continue
        for method in os.scandir(dataset.path):
            if method.is_dir():
                count += sum(1 for run in os.scandir(method.path) if run.is_dir())
    return count


def _from_journal(
    runs_dir: Path, journal: Path, entries: list[str], known_rows: Iterable[KnownRow]
) -> list[dict[str, Any]]:
    held = {run_id: stamp(finished or "") for run_id, _dir, _status, finished in known_rows}
    found = []
    for name in entries:
        run_id, _, finished = name.partition("~")
        if run_id in held and held[run_id] >= finished:
            continue
        try:
            folder = (journal / name).read_text().strip()
        except OSError:
            continue  # replaced by a newer entry this instant
        record = _finished_record(runs_dir / folder / RECORD)
        if record is not None and record.get("run_id") == run_id and stamp(record["finished_at"]) >= finished:
            found.append((folder, record))
    return [record for _, record in sorted(found, key=lambda pair: pair[0])]


def walk_records(runs_dir: Path, known_rows: Iterable[KnownRow]) -> list[dict[str, Any]]:
    """:func:`pending_records` by walking every run folder (no journal to go by)."""
    known = {folder_key(run_dir): (status, finished) for _run_id, run_dir, status, finished in known_rows if run_dir}
    pending = []
    for path in sorted(Path(runs_dir).glob(f"*/*/*/{RECORD}")):
        seen = known.get(folder_key(path.parent))
        if seen is not None and seen[0] == "done":
            continue
        record = _finished_record(path)
        if record is None:
            continue
        if seen is None or seen != (record.get("status"), record.get("finished_at")):
            pending.append(record)
    return pending
