"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file ltbench writes that another process may read (records, checkpoints, sweep and job
files, report tables and figures) goes through :func:`write_atomic`: a temporary file in the
same folder, named by process and a random token so that concurrent writers never share one,
then renamed over the target.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it over ``path``.

    The temporary file is opened normally (not with ``mkstemp``) so the result gets the usual
    umask permissions rather than owner-only 0600. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` for text (UTF-8)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
