"""A run's ``record.json`` in its folder: written atomically, read back, and the default locations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.atomic import write_text_atomic

DEFAULT_OUT = Path("results")


DEFAULT_STORE = DEFAULT_OUT / "ltbench.db"


RECORD = "record.json"


def write_record(record: dict[str, Any], run_dir: Path) -> Path:
    """Write ``record`` to ``run_dir/record.json`` atomically and return the path."""
    return write_text_atomic(run_dir / RECORD, json.dumps(record, indent=1, allow_nan=False))


def folder_key(run_dir: str | Path) -> tuple[str, ...]:
    """A run folder by its last three parts (dataset / method / budget-seeds-id), so relative
    and absolute spellings of one folder match."""
    return Path(run_dir).parts[-3:]


def read_record(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RECORD
    return json.loads(path.read_text()) if path.is_file() else None
