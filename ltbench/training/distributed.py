"""Data-parallel training (torch.distributed): who am I, and setting up from submitit's job.

The recipe's ``batch_size`` is the effective batch of one optimiser step, whatever the
number of processes: each of W processes takes every W-th sample of the step's batch and,
when ``micro_batch`` is smaller than that share, accumulates gradients over micro-batches.
So a recipe means the same thing on 1 CPU, 8 GPUs or a SLURM allocation.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def init_from_submitit() -> bool:
    """Join the job's process group when submitit started several tasks; True if it did."""
    import submitit

    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job
        return False
    if env.num_tasks <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    dist_env = submitit.helpers.TorchDistributedEnvironment().export()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(dist_env.local_rank)
    dist.init_process_group(backend, rank=dist_env.rank, world_size=dist_env.world_size)
    os.environ.setdefault("LTBENCH_DDP", "1")
    return True


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over processes (identity when alone); used once per epoch for logging."""
    if rank_world()[1] > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= rank_world()[1]
    return value
