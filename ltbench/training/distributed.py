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


def init_from_submitit(device: str | None = None) -> bool:
    """Join the job's process group when submitit started several tasks; True if it did.

    One group spans every task of the job, on one node or several: submitit's
    ``TorchDistributedEnvironment`` takes the master address (the job's first node) and a
    port (from the job id) from SLURM, and the rank and world size from its task ids. The
    backend is NCCL where the run trains on a GPU, gloo on a CPU (``device`` ``"cpu"``, or no
    GPU visible).
    """
    import submitit

    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job
        return False
    if env.num_tasks <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    # The job's own values win over any MASTER_* / RANK the submitting shell passed down; and
    # each task keeps every GPU of its node in view (SLURM's binding), picking its own below.
    dist_env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    backend = process_group_backend(device)
    if backend == "nccl":
        torch.cuda.set_device(dist_env.local_rank % torch.cuda.device_count())
    dist.init_process_group(backend, rank=dist_env.rank, world_size=dist_env.world_size)
    os.environ.setdefault("LTBENCH_DDP", "1")
    return True


def process_group_backend(device: str | None = None) -> str:
    """``nccl`` for a run on a GPU, ``gloo`` for one on a CPU (``device`` None: a GPU if one is visible)."""
    on_gpu = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    return "nccl" if on_gpu else "gloo"


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over processes (identity when alone); used once per epoch for logging."""
    if rank_world()[1] > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= rank_world()[1]
    return value


def gathered(t: torch.Tensor) -> torch.Tensor:
    """``t`` of every data-parallel process, concatenated in rank order (``t`` itself when alone);
    every process must pass a tensor of the same shape."""
    world = rank_world()[1]
    if world == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)
