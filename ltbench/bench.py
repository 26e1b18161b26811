"""``ltbench bench``: how close ltbench's training loop comes to the model's own speed.

Measured in one process, on the same model, loss, data and batch size:

- **limit**: forward + backward + optimiser step on a batch already on the device, images/s;
- **data only**: one epoch of the data path (reading, augmentation, copies) without the model;
- **ltbench**: the real loop (``training.loop.fit``: batching, augmentation, targets, loss, logging,
  checkpoints) over whole epochs, images/s, with evaluation timed apart;
- **reference**: the way the LiVT and DeiT-LT codebases feed data, per-sample PIL transforms
  (random crop, flip, the recipe's RandAugment, ToTensor, Normalize, random erasing) through
  a DataLoader;
- **speed-up bound**: 1 + limit / the reference's per-sample work timed alone, what a loop
  at the limit gains over a reference doing that work serially in the training process.
  Workers that overlap it leave less; only contention for cores can leave more;
- **start**: seconds from nothing imported to the first training step;
- **peak memory**: resident set size (CPU) or CUDA's peak allocation.

Performance claims in the docs come from this script, never from a timed test.
"""

from __future__ import annotations

import hashlib
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _limit(objective, optimizer, x, target, steps: int, device, clip: float = 0.0) -> float:
    model = objective.model
    model.train()
    for i in range(steps + 3):
        if i == 3:  # warm-up steps absorb allocation and first-call costs
            _sync(device)
            tick = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        objective.loss(x, target, 1).backward()
        if clip > 0:  # part of the recipe's update, so part of the limit
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    _sync(device)
    return steps * len(x) / (time.perf_counter() - tick)


def _reference_loader(cfg, data, workers: int):
    """Per-sample PIL transforms through a DataLoader, as the peer codebases do."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    size = cfg.data.image_size
    aug = cfg.data.augment
    steps = [T.Resize(cfg.train.img_size)] if cfg.train.img_size and cfg.train.img_size != size else []
    steps += [T.RandomCrop(cfg.train.img_size or size, padding=aug.crop_pad)] if aug.crop_pad else []
    steps += [T.RandomHorizontalFlip()] if aug.flip else []
    if aug.auto_augment:  # timm's PIL RandAugment, per image, as the papers' code runs it
        from .data.stream import colour_transform

        steps += [colour_transform(cfg.data, cfg.train.img_size or size)]
    steps += [T.ToTensor(), T.Normalize(cfg.data.mean, cfg.data.std)]
    if aug.re_prob > 0:
        from .data.memory import random_erasing

        steps += [random_erasing(aug.re_prob, "cpu")]
    tf = T.Compose(steps)

    class Images(Dataset):
        def __len__(self):
            return len(data.train)

        def __getitem__(self, i):
            img = data.train.images[i]
            pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
            return tf(pil), int(data.train.labels[i])

    return DataLoader(
        Images(),
        batch_size=cfg.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def _reference_data_only(cfg, data) -> float:
    """The reference's per-sample work alone, in this process: images/s."""
    tick, seen = time.perf_counter(), 0
    for x, _ in _reference_loader(cfg, data, 0):
        seen += len(x)
    return seen / (time.perf_counter() - tick)


def _reference(cfg, data, objective, optimizer, device, epochs: int, workers: int) -> float:
    """The reference loop: the same model step, fed by :func:`_reference_loader`."""
    loader = _reference_loader(cfg, data, workers)
    model = objective.model
    model.train()
    seen, tick = 0, None
    for epoch in range(epochs + 1):  # the first epoch warms the workers up and is not timed
        if epoch == 1:
            _sync(device)
            tick = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            objective.loss(x, y, 1).backward()
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            seen += len(x) if epoch else 0
    _sync(device)
    return seen / (time.perf_counter() - tick)


def _startup_seconds() -> float:
    """Importing what a run needs, in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import ltbench.training.loop, ltbench.execution.runner; "
        "print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def benchmark(
    method: str = "ce",
    dataset: str = "mnist_lt",
    budget: str = "quick",
    epochs: int = 5,
    overrides: tuple[str, ...] = (),
    device: str | None = None,
    reference_workers: int = 2,
    root: str | None = None,
    recipes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Measure limit, ltbench loop, reference loop, start time and peak memory.

    For a streamed dataset (files under ``root``) ltbench's loop is the DataLoader path and
    there is no separate reference loop.

    Returns:
        A dict of the numbers, the configuration and the machine; ``ratio`` = ltbench / limit,
        ``speedup`` = ltbench / reference (None for streamed data).
    """
    from ._version import __version__
    from .config.run_config import resolve
    from .data import build_data
    from .planning.catalog import load_catalog
    from .training.loop import Dependencies, build_objective, build_optimizer, fit, make_batches

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tick = time.perf_counter()
    cat = load_catalog(tuple(recipes))
    cfg = resolve(cat.methods.get(method), cat.datasets.get(dataset), budget, 0, 0, (*overrides, f"epochs={epochs}"))
    if cfg.method.model not in ("vit", "cnn"):
        raise ValueError(f"bench measures single-stage methods (vit, cnn); {method} is {cfg.method.model}")
    data = build_data(cfg.data, 0, root)
    objective = build_objective(cfg, data, device, Dependencies())
    optimizer = build_optimizer(cfg, objective.model)
    batches = make_batches(data, data.train, cfg, device)
    x, y = next(iter(batches.train_batches(cfg.train.batch_size, 0)))
    objective.loss(x, y, 1).backward()
    _sync(device)
    first_step = time.perf_counter() - tick + _startup_seconds()

    steps = max(10, len(data.train) // cfg.train.batch_size)
    forward = torch.compile(objective.forward) if cfg.train.compile else objective.forward
    objective.forward = forward  # the limit uses what the loop uses
    limits = [_limit(objective, optimizer, x, y, steps, device, cfg.train.grad_clip)]
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(cfg, data, Path(tmp), device)
    # Measured again after the loop; the higher one counts, so machine noise cannot flatter the ratio.
    limits.append(_limit(objective, optimizer, x, y, steps, device, cfg.train.grad_clip))
    limit = max(limits)
    # The data path alone (batches on the device, no model): with decoding in the training
    # process, 1 / (1 / limit + 1 / data) is the most the loop can reach.
    _sync(device)
    tick, seen = time.perf_counter(), 0
    for xb, _ in batches.train_batches(cfg.train.batch_size, 1):
        seen += len(xb)
    _sync(device)
    data_only = seen / (time.perf_counter() - tick)
    trained = epochs * (len(data.train) // min(cfg.train.batch_size, len(data.train)))
    loop = trained * cfg.train.batch_size / result.train_seconds
    reference = reference_data = None
    if data.in_memory:
        reference_data = _reference_data_only(cfg, data)
        ref_objective = build_objective(cfg, data, device, Dependencies())
        if cfg.train.compile:  # the same model step; only the feeding differs
            ref_objective.forward = torch.compile(ref_objective.forward)
        reference = _reference(
            cfg, data, ref_objective, build_optimizer(cfg, ref_objective.model), device, epochs, reference_workers
        )
    import timm

    return {
        "method": method,
        "dataset": dataset,
        "budget": budget,
        "batch_size": cfg.train.batch_size,
        "epochs": epochs,
        "overrides": list(overrides),
        "train_images": len(data.train),
        "device": str(device),
        "limit_img_s": round(limit, 1),
        "limit_runs_img_s": [round(v, 1) for v in limits],
        "ltbench_img_s": round(loop, 1),
        "ratio": round(loop / limit, 3),
        "data_only_img_s": round(data_only, 1),
        "serial_bound_ratio": round(1 / (1 + limit / data_only), 3),
        "data_path": "memory" if data.in_memory else "stream",
        "reference_img_s": None if reference is None else round(reference, 1),
        "speedup": None if reference is None else round(loop / reference, 2),
        # A loop at the limit against the reference doing its per-sample work serially.
        "reference_data_only_img_s": None if reference_data is None else round(reference_data, 1),
        "speedup_bound": None if reference_data is None else round(1 + limit / reference_data, 2),
        "eval_seconds_per_epoch": round(result.eval_seconds / epochs, 3),
        "start_to_first_step_s": round(first_step, 2),
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
        "versions": {
            "ltbench": __version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def write_json(result: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path


def synthetic_record(i: int, num_classes: int = 100, methods: int = 10, rng=None, run_dir: str | None = None):
    """A finished run record of made-up numbers (run ``i`` of a sweep of ``methods`` methods),
    with per-class vectors and calibration bins of ``num_classes`` classes: for measuring the
    store and reports at scale."""
    from .config.record import RECORD_SCHEMA

    rng = rng if rng is not None else np.random.default_rng(i)
    counts = [int(500 * 0.01 ** (k / (num_classes - 1))) for k in range(num_classes)]
    count = rng.integers(0, 10, (num_classes, 15))
    return {
        "schema": RECORD_SCHEMA,
        "run_id": hashlib.sha256(f"synthetic run {i}".encode()).hexdigest(),
        "method": f"m{i % methods}",
        "dataset": "synthetic",
        "budget": "quick",
        "seed": i // methods,
        "data_seed": 0,
        "status": "done",
        "train_counts": counts,
        "index_sizes": None,
        "started_at": f"2026-01-01T00:00:00.{i:06d}+00:00",
        "finished_at": f"2026-01-01T01:00:00.{i:06d}+00:00",
        "run_dir": run_dir,
        "results": {
            "last": {
                "epoch": 1,
                "correct": rng.integers(0, 101, num_classes).tolist(),
                "total": [100] * num_classes,
                "calib": {
                    "n_bins": 15,
                    "count": count.tolist(),
                    "conf_sum": (count * 0.5).tolist(),
                    "correct_sum": (count // 2).tolist(),
                },
            }
        },
        "history": [{"epoch": 1, "train_loss": 1.0, "val_top1": 0.5}],
        "metrics": {"last": {"top1": 0.5}},
        "provenance": {},
        "timings": {},
    }


def bench_report(runs: int = 10_000, num_classes: int = 100, methods: int = 10) -> dict[str, Any]:
    """Seconds to ingest ``runs`` synthetic records and write the full report from the store."""
    from .reports.write import write_report
    from .store.sqlite import ResultStore

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp) / "s.db")
        tick = time.perf_counter()
        for i in range(runs):
            store.ingest(synthetic_record(i, num_classes, methods, rng))
        ingest = time.perf_counter() - tick
        tick = time.perf_counter()
        records = store.records()
        read = time.perf_counter() - tick
        tick = time.perf_counter()
        write_report(records, Path(tmp) / "report")
        report = time.perf_counter() - tick
    return {
        "runs": runs,
        "classes": num_classes,
        "ingest_s": round(ingest, 2),
        "read_store_s": round(read, 2),
        "write_report_s": round(report, 2),
    }
