"""Where a result came from: code version, libraries, machine and data."""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path

import torch

from .._version import __version__


def git_state(path: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding ltbench, or (None, None) outside git."""
    cwd = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def provenance(device: torch.device, data_fingerprint: str) -> dict:
    """The provenance block of a run record."""
    import timm

    commit, dirty = git_state()
    return {
        "ltbench_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": device_name(device),
        "data_fingerprint": data_fingerprint,
    }
