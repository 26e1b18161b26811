"""A run's ``record.json`` in its folder: written atomically, read back, and the default locations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.atomic import write_text_atomic

DEFAULT_OUT = Path("results")


DEFAULT_STORE = DEFAULT_OUT / "ltbench.db"


RECORD = "record.json"


# Under a --out's runs/ folder: one small file per finished record, named by run id and finish
# time, holding the run folder's path below runs/. A store's sync lists this one folder instead
# of walking every run folder (cheap on a cluster file system), and reads only the records
# whose name it has not seen (:func:`ltbench.store.sync.pending_records`).
JOURNAL = ".finished"


def journal_dir(run_dir: str | Path) -> Path | None:
    """The journal folder of a run folder ``<out>/runs/<dataset>/<method>/<run>``; None for a
    folder laid out otherwise (a record written by hand elsewhere)."""
    run_dir = Path(run_dir)
    if len(run_dir.parts) < 4 or run_dir.parents[2].name != "runs":
        return None
    return run_dir.parents[2] / JOURNAL


def stamp(finished_at: str) -> str:
    """A record's ``finished_at`` (ISO 8601) as a file-name part that sorts as the time does."""
    return "".join(c for c in finished_at if c.isalnum())


def write_record(record: dict[str, Any], run_dir: Path) -> Path:
    """Write ``record`` to ``run_dir/record.json`` atomically and return the path.

    A finished record is entered in its runs folder's journal first (:data:`JOURNAL`), then
    written: a process killed in between leaves a journal entry whose record is not there yet
    (sync skips it), never a finished record that sync cannot find."""
    journal = journal_dir(run_dir) if record.get("finished_at") and record.get("run_id") else None
    if journal is not None:
        name = f"{record['run_id']}~{stamp(record['finished_at'])}"
        write_text_atomic(journal / name, "/".join(folder_key(run_dir)))
        for older in journal.glob(f"{record['run_id']}~*"):  # a forced re-run's earlier entry
            if older.name != name:
                older.unlink(missing_ok=True)
    return write_text_atomic(run_dir / RECORD, json.dumps(record, indent=1, allow_nan=False))


def folder_key(run_dir: str | Path) -> tuple[str, ...]:
    """A run folder by its last three parts (dataset / method / budget-seeds-id), so relative
    and absolute spellings of one folder match."""
    return Path(run_dir).parts[-3:]


def read_record(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RECORD
    return json.loads(path.read_text()) if path.is_file() else None
