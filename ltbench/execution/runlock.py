"""One process per run: a lock file beside the run folder.

``<run folder>.lock`` is created with ``O_CREAT | O_EXCL`` (atomic on local disks and NFSv3+)
and holds the owner's pid, host and process start time. A second process that finds it waits
for the owner to finish (then sees the run done and skips it) or, with ``wait=False``, reports
it as running. A lock whose owner is gone (same host, no such process, or another process
under a reused pid) is stale and is reclaimed. The owner touches the file every
:data:`HEARTBEAT` seconds, so a lock from another host (a SLURM job killed on its node) is
stale once it has not been touched for :data:`FOREIGN_STALE` seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import RunLockedError

_UNWRITTEN_GRACE = 10.0  # seconds an empty (being written) lock file is given before it is stale
HEARTBEAT = 30.0  # seconds between the owner's touches of its lock file
FOREIGN_STALE = 600.0  # a lock of another host untouched this long: its owner is gone


def _start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    if started is not None:
        now = _start_ticks(pid)
        if now is not None and now != started:
            return False  # the pid was reused by another process
    return True


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``<run_dir>.lock`` for the block.

    Args:
        run_dir: the run folder (need not exist yet).
        wait: wait for another owner to finish (polling every ``poll`` seconds); False raises
            :class:`ltbench.core.errors.RunLockedError` at once.
        on_wait: called once with the owner's details when waiting starts.
    """

    def __init__(
        self,
        run_dir: str | Path,
        wait: bool = True,
        poll: float = 0.5,
        on_wait: Callable[[dict[str, Any], Path], None] | None = None,
    ):
        run_dir = Path(run_dir)
        self.path = run_dir.with_name(run_dir.name + ".lock")
        self.wait = wait
        self.poll = poll
        self.on_wait = on_wait
        self.token = secrets.token_hex(8)
        self.held = False
        self.waited = False  # another process held it first: it ran the run, or tried

    def _mine(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _start_ticks(os.getpid()),
            "since": time.time(),
            "token": self.token,
        }

    def _read(self, path: Path | None = None) -> dict[str, Any] | None:
        """The owner's details; {} for a file being written or garbled; None if gone."""
        try:
            data = json.loads((path or self.path).read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _stale(self, owner: dict[str, Any]) -> bool:
        if not owner:  # empty or garbled: stale once it has had time to be written
            try:
                return time.time() - self.path.stat().st_mtime > _UNWRITTEN_GRACE
            except FileNotFoundError:
                return False
        if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
            try:  # another host: only its heartbeat tells
                return time.time() - self.path.stat().st_mtime > FOREIGN_STALE
            except FileNotFoundError:
                return False
        return not _alive(owner["pid"], owner.get("started"))

    def _reclaim(self, owner: dict[str, Any]) -> None:
        """Move a stale lock aside; only the process whose rename took the stale file deletes it,
        and one that took a fresh lock by mistake (another reclaimed first) puts it back."""
        aside = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        taken = self._read(aside) or {}
        if taken.get("token") and taken.get("token") != owner.get("token"):
            try:  # a fresh owner's lock: back where it was (link fails if a third made one)
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def acquire(self) -> None:
        """Take the lock (waiting, or raising :class:`RunLockedError` when ``wait`` is False)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._read()
                if owner is None:
                    continue  # released this instant: try again
                if self._stale(owner):
                    self._reclaim(owner)
                    continue
                if not self.wait:
                    raise RunLockedError(self.describe(owner)) from None
                if not told and self.on_wait is not None:
                    self.on_wait(owner, self.path)
                told = self.waited = True
                time.sleep(self.poll)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self._mine(), f)
            self.held = True
            self._stop = threading.Event()
            threading.Thread(target=self._beat, args=(self._stop,), daemon=True, name="ltbench-run-lock").start()
            return

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:
                return

    def describe(self, owner: dict[str, Any]) -> str:
        """One line: who holds the lock and what to do."""
        since = owner.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, float) else "?"
        return (
            f"the run is already running: pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {when} "
            f"holds {self.path}; wait for it, or delete that file if the process is gone"
        )

    def release(self) -> None:
        """Give the lock up (only if the file is still ours)."""
        if not self.held:
            return
        self.held = False
        self._stop.set()
        owner = self._read()
        if owner and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
