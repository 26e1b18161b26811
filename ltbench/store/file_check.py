"""Is a file an ltbench store? Checked read-only before a store is opened, with a message that says
what it is instead.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..core.errors import StoreError

BUSY_TIMEOUT = 60.0  # seconds a statement waits for another process's write lock
_SQLITE_MAGIC = b"SQLite format 3\x00"


_LTBENCH_TABLES = {"runs", "metrics"}


_RUNS_COLUMNS = {"run_id", "method", "dataset", "budget", "seed", "data_seed", "status", "record"}


_QUICK_CHECK_BYTES = 32 << 20  # a store up to this size is fully checked before use


def cannot_write(e: BaseException) -> bool:
    """Whether ``e`` says the place is read-only or not openable (not a bug, not a lock)."""
    if isinstance(e, OSError):
        return e.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    text = str(e).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def error_text(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


def describe_file(path: Path, head: bytes) -> str:
    """What a file that is not a SQLite database looks like, for a message."""
    if not head:
        return "an empty file"
    if b"\x00" not in head:
        try:
            first = head.decode("utf-8").strip().splitlines()[0][:40] if head.strip() else ""
            return f"a text file (it starts {first!r})"
        except UnicodeDecodeError:
            pass
    return f"binary data (it starts {head[:8].hex()}), not a SQLite database"


def open_readonly(path: Path, immutable: bool) -> sqlite3.Connection:
    """SQLite's ``mode=ro`` on ``path``; ``immutable``: also no lock, journal or shared-memory file."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)


def _probe(path: Path, size: int, immutable: bool) -> tuple[set[str], set[str]]:
    """The tables of a SQLite file (``sqlite_*`` left out) and the columns of its ``runs``,
    after SQLite's quick check (files up to :data:`_QUICK_CHECK_BYTES`), read-only."""
    db = open_readonly(path, immutable)
    try:
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")} if "runs" in tables else set()
        if size <= _QUICK_CHECK_BYTES:
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
    finally:
        db.close()
    return {t for t in tables if not t.startswith("sqlite_")}, columns


def check_store_file(path: str | Path) -> bool:
    """Check, without changing anything, that ``path`` is absent or an ltbench store.

    The file is read with plain reads and SQLite's ``immutable`` mode (no lock, no journal,
    no shared-memory file), so a file that is refused is left exactly as it was.

    Returns:
        True if it holds ltbench's tables; False if it is absent, empty (0 bytes) or a SQLite
        database without tables (a new store).

    Raises:
        StoreError: a folder, a text file, binary data, a truncated or damaged SQLite file,
            or another program's SQLite database (its tables named).
    """
    path = Path(path)
    fix = "pass --store PATH to an ltbench store (a new file is created by `ltbench run`)"
    if not path.exists():
        if path.is_symlink():
            raise StoreError(f"the results store {path} is a broken symbolic link; {fix}")
        return False
    if path.is_dir():
        raise StoreError(f"the results store {path} is a folder, not an ltbench store; {fix}")
    if not path.is_file():
        raise StoreError(f"the results store {path} is not a regular file; {fix}")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        size = path.stat().st_size
    except OSError as e:
        raise StoreError(f"cannot read the results store {path} ({error_text(e)}); {fix}") from None
    if not head:
        return False
    if not head.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{path} is {describe_file(path, head)}, not an ltbench store; {fix}")
    if len(head) < 100:
        raise StoreError(f"{path} is a truncated SQLite file ({size} bytes, less than its header); {fix}")
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    counter_ok = head[24:28] == head[92:96]
    # With a WAL file beside it a checkpoint may be under way (page 1 written before the pages
    # past the old end): the figures are then left to SQLite, which reads under its locks.
    wal = path.with_name(path.name + "-wal").exists()
    sizes_ok = wal or not (size % page or (counter_ok and pages and size < pages * page))
    if page < 512 or page & (page - 1) or not sizes_ok:
        raise StoreError(
            f"{path} is a truncated or damaged SQLite file ({size:,} bytes; its header says "
            f"{pages} pages of {page} bytes); restore it from a copy, or `ltbench ingest` the run folders "
            "into a new store"
        )
    # immutable: no lock, no journal, no shared-memory file: nothing is created beside a file
    # that may be another program's. A WAL-mode file (ltbench's stores are) that fails this
    # quick look is looked at again under SQLite's locks, in case a writer was checkpointing.
    looks = [False] if wal else [True, False] if head[18:20] == b"\x02\x02" else [True]
    for immutable in looks:
        try:
            tables, columns = _probe(path, size, immutable)
        except sqlite3.OperationalError as e:
            if cannot_write(e):  # WAL files present on a read-only disk: leave the judgement to the reader
                return True
            if immutable and len(looks) > 1:
                continue
            raise StoreError(f"{path} is a SQLite file that cannot be read ({e}); {fix}") from None
        except sqlite3.DatabaseError as e:
            if immutable and len(looks) > 1:
                continue
            raise StoreError(
                f"{path} is a damaged SQLite file ({e}); restore it from a copy, or `ltbench ingest` the run "
                "folders into a new store"
            ) from None
        ours = not (tables - _LTBENCH_TABLES) and (not tables or _RUNS_COLUMNS <= columns)
        if ours or not immutable or len(looks) == 1:
            break
    if not tables:
        return False
    if tables - _LTBENCH_TABLES or not _RUNS_COLUMNS <= columns:
        raise StoreError(
            f"{path} is a SQLite database of another program (tables: {', '.join(sorted(tables))}), "
            f"not an ltbench store; ltbench leaves it untouched; {fix}"
        )
    return True
