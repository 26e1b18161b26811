"""The local SLURM cluster for the tests that submit to it (CI starts one: scripts/slurm-local.sh).

``from slurm_local import needs_slurm`` marks a test that runs only where SLURM answers."""

import shutil
import subprocess

import pytest


def slurm_up() -> bool:
    """Whether a SLURM controller answers ``sinfo`` here."""
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0


needs_slurm = pytest.mark.skipif(
    not slurm_up(), reason="no SLURM reachable (CI starts one: scripts/slurm-local.sh start)"
)
