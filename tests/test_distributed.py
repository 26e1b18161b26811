"""Data parallelism keeps the recipe's effective batch: 2 CPU processes (gloo) and gradient
accumulation give the same training as one process with the whole batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ltbench.config.run_config import resolve
from ltbench.data import build_data
from ltbench.planning.catalog import load_catalog
from ltbench.training.loop import fit

OVERRIDES = ("epochs=2", "batch_size=64", "mixup=0.5", "drop_path=0.0")


def config(*extra):
    cat = load_catalog()
    return resolve(cat.methods.get("la"), cat.datasets.get("digits_lt"), "smoke", 0, 0, OVERRIDES + extra)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = config()
        res = fit(cfg, build_data(cfg.data, 0), out_dir / f"rank{rank}")
        if rank == 0:
            queue.put(([h["train_loss"] for h in res.history], res.results["last"]["correct"]))
    finally:
        dist.destroy_process_group()


def _single(tmp_path, *extra):
    torch.set_num_threads(1)
    cfg = config(*extra)
    res = fit(cfg, build_data(cfg.data, 0), tmp_path)
    return [h["train_loss"] for h in res.history], res.results["last"]["correct"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, tmp_path, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    losses, correct = queue.get(timeout=240)
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    ref_losses, ref_correct = _single(tmp_path / "single")
    # Same samples, same mixing, same update; only the order of float sums differs.
    assert losses == pytest.approx(ref_losses, rel=1e-4)
    assert sum(c != r for c, r in zip(correct, ref_correct)) <= 1  # per-class counts agree (a tie may flip)
    assert not (tmp_path / "rank1" / "checkpoint.pt").exists()  # only process 0 writes


def test_gradient_accumulation_matches_the_whole_batch(tmp_path):
    whole = _single(tmp_path / "whole")
    accumulated = _single(tmp_path / "micro", "micro_batch=16")
    assert accumulated[0] == pytest.approx(whole[0], rel=1e-4)
    assert sum(a != b for a, b in zip(accumulated[1], whole[1])) <= 1
