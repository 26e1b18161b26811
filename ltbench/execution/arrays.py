"""How a sweep's waves become SLURM job arrays: split under ``MaxArraySize``, one ``%N`` cap for all.

A cluster refuses a job array with more tasks than its ``MaxArraySize`` allows, so each wave
(runs of one dependency depth) is split into arrays of at most ``max_array_size - 1`` tasks,
as few as fit and of equal size; run ``i`` of a wave goes to array ``i mod k``, so that each
method's seeds spread over the arrays and the arrays take about equally long.

The concurrency cap ``max_parallel`` (SLURM's ``%N``) holds for the whole sweep, not per
array. Waves never overlap (each array of a wave depends on every array of the wave before),
so it is enough that the arrays of one wave share the cap. They do it in *lanes*: with k
arrays and a cap of N, there are ``min(k, N)`` lanes, the cap is split over them (their
``%n`` add up to N), array ``j`` goes to lane ``j mod lanes``, and an array waits for the
array before it in its lane (``afterany``). With N >= k every array is its own lane and all
start at once; with fewer slots than arrays they run in N chains of one slot each (then the
arrays are made as many as a multiple of N, so that every chain has as much work). Splitting
the cap costs a little at the end of a wave (a lane that finishes early leaves its slots
idle), which chaining every array (one at a time, each with the whole cap) would cost at the
end of every array instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

SLURM_DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's own default for MaxArraySize


@dataclass(frozen=True)
class ArrayChunk:
    """One job array (one sbatch call) of a wave.

    Attributes:
        wave: the wave's index (dependency depth).
        runs: indices into the wave's runs that this array runs, in array-task order.
        parallelism: the array's ``%N``; the chunks of a wave add up to the sweep's cap.
        lane: which share of the cap this array uses.
        after: index (in the wave's chunk list) of the array it waits for in its lane, or None.
    """

    wave: int
    runs: tuple[int, ...]
    parallelism: int
    lane: int
    after: int | None


def chunk_count(n_runs: int, max_array_size: int) -> int:
    """How many arrays a wave of ``n_runs`` needs when each holds at most ``max_array_size - 1``."""
    if max_array_size < 2:
        raise ValueError(f"max_array_size must be >= 2 (an array holds max_array_size - 1 tasks), got {max_array_size}")
    per_array = max_array_size - 1
    return -(-n_runs // per_array) if n_runs else 0


def plan_wave(wave: int, n_runs: int, max_array_size: int, max_parallel: int) -> list[ArrayChunk]:
    """The arrays of one wave of ``n_runs`` runs, their ``%N`` and the lane each waits in."""
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    k = chunk_count(n_runs, max_array_size)
    lanes = min(k, max_parallel)
    if k % lanes:  # as many arrays in each lane, so that the lanes end together
        k = min(-(-k // lanes) * lanes, n_runs)
    caps = [max_parallel // lanes + (1 if lane < max_parallel % lanes else 0) for lane in range(lanes)]
    return [
        ArrayChunk(
            wave=wave,
            runs=tuple(range(j, n_runs, k)),
            parallelism=caps[j % lanes],
            lane=j % lanes,
            after=j - lanes if j >= lanes else None,
        )
        for j in range(k)
    ]


def dependency(after_ids: list[str]) -> str | None:
    """SLURM's ``--dependency`` value that waits for every job (or whole array) in ``after_ids``."""
    return "afterany:" + ":".join(after_ids) if after_ids else None


def parse_max_array_size(config_text: str) -> int | None:
    """``MaxArraySize`` from the text of ``scontrol show config``; None where it is not there."""
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", config_text, re.MULTILINE)
    return int(match.group(1)) if match else None


def slurm_max_array_size(timeout_s: float = 20.0) -> int | None:
    """The reachable cluster's ``MaxArraySize`` (``scontrol show config``); None where none answers."""
    if shutil.which("scontrol") is None:
        return None
    try:
        done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_max_array_size(done.stdout) if done.returncode == 0 else None


__all__ = [
    "SLURM_DEFAULT_MAX_ARRAY_SIZE",
    "ArrayChunk",
    "chunk_count",
    "dependency",
    "parse_max_array_size",
    "plan_wave",
    "slurm_max_array_size",
]
