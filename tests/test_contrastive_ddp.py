"""PaCo's queue with several processes: every process enqueues the keys of the whole batch
(gathered in rank order), so the queues of all processes hold the same keys."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, queue):
    from ltbench.training.distributed import gathered

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        keys = torch.full((3, 2), float(rank))  # each process's share: its rank in every entry
        labels = torch.arange(3) + 10 * rank
        queue.put((rank, gathered(keys), gathered(labels)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_keys_of_every_process_reach_every_queue():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = dict((rank, (k, y)) for rank, k, y in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    expected_keys = torch.cat([torch.zeros(3, 2), torch.ones(3, 2)])
    for rank in (0, 1):
        keys, labels = got[rank]
        assert torch.equal(keys, expected_keys)  # rank 0's share, then rank 1's
        assert labels.tolist() == [0, 1, 2, 10, 11, 12]


def test_alone_the_keys_are_the_process_own():
    from ltbench.training.distributed import gathered

    t = torch.arange(4)
    assert gathered(t) is t


def test_a_queue_over_processes_refuses_unequal_shares(monkeypatch, catalog):
    from ltbench.config.run_config import resolve
    from ltbench.data import build_data
    from ltbench.training import distributed
    from ltbench.training.objectives import OBJECTIVES

    cfg = resolve(catalog.methods.get("cnn_paco"), catalog.datasets.get("digits_lt"), "smoke", 0, 0, ("batch_size=65",))
    monkeypatch.setattr(distributed, "rank_world", lambda: (0, 2))
    with pytest.raises(ValueError, match="divisible"):
        OBJECTIVES.get("contrastive")(cfg, build_data(cfg.data, 0), torch.device("cpu"), {})
