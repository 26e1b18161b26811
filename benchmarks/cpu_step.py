"""One training step on a CPU thread: do torch's faster-looking settings pay on the main job?

Builds a method's model, loss and optimiser as `ltbench run` does (quick budget, mnist_lt),
then times forward + backward + clipping + the optimiser step on one batch, with one thread,
under each setting, taking turns so that the machine's drift hits every setting alike:

- attention: torch's fused kernel (`F.scaled_dot_product_attention`, timm's default) or the
  plain matmul-softmax path; under the profiler the fused kernel's backward looks slow at the
  quick budget's 17 tokens;
- optimiser: torch's CPU default (a loop over the tensors) or the fused kernel.

Measured on the 2-core AMD EPYC (docs/performance.md), neither moves a step by more than the
machine's noise, so ltbench keeps torch's and timm's defaults. Anyone can run it:

    python benchmarks/cpu_step.py                         # ce (ViT) and cnn_ce (ResNet-8)
    python benchmarks/cpu_step.py --methods ce --rounds 8 --json benchmarks/results/cpu/step.json

Numbers from one machine are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

SETTINGS = {
    "torch's defaults (ltbench)": (True, False),
    "plain attention": (False, False),
    "fused optimiser": (True, True),
    "plain attention, fused optimiser": (False, True),
}


def _build(method: str):
    from ltbench.config.run_config import resolve
    from ltbench.data import build_data
    from ltbench.planning.catalog import load_catalog
    from ltbench.training.loop import Dependencies, build_objective, build_optimizer, make_batches

    cat = load_catalog(())
    cfg = resolve(cat.methods.get(method), cat.datasets.get("mnist_lt"), "quick", 0, 0, ())
    cpu = torch.device("cpu")
    data = build_data(cfg.data, 0)
    objective = build_objective(cfg, data, cpu, Dependencies())
    optimizer = build_optimizer(cfg, objective.model)
    x, y = next(iter(make_batches(data, data.train, cfg, cpu).train_batches(cfg.train.batch_size, 0)))
    return cfg, objective, optimizer, x, y


def _apply(objective, optimizer, plain_attention: bool, fused_optimiser: bool) -> None:
    for module in objective.model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = not plain_attention
    for group in optimizer.param_groups:
        group["fused"] = fused_optimiser or None  # None: torch's default, a loop over tensors on a CPU
        group["foreach"] = False if not fused_optimiser else None


def measure(method: str, rounds: int, steps: int) -> dict:
    """Milliseconds per step of ``method`` under each setting (median over ``rounds``)."""
    cfg, objective, optimizer, x, y = _build(method)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        objective.loss(x, y, 1).backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(objective.model.parameters(), cfg.train.grad_clip)
        optimizer.step()

    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(rounds):
        for name, (fused_attention, fused_optimiser) in SETTINGS.items():
            _apply(objective, optimizer, not fused_attention, fused_optimiser)
            for _ in range(3):  # warm-up after a switch
                step()
            tick = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - tick) / steps * 1000)
    base = statistics.median(times[next(iter(SETTINGS))])
    return {
        "method": method,
        "batch_size": cfg.train.batch_size,
        "ms_per_step": {name: round(statistics.median(v), 2) for name, v in times.items()},
        "relative": {name: round(statistics.median(v) / base, 3) for name, v in times.items()},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="ce,cnn_ce")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [measure(m, args.rounds, args.steps) for m in args.methods.split(",")]
    for row in rows:
        print(f"\n{row['method']} (batch {row['batch_size']}, one thread), ms per step:")
        for name, ms in row["ms_per_step"].items():
            print(f"  {ms:7.2f}  {row['relative'][name]:.2f}x  {name}")
    if args.json:
        out = {
            "rows": rows,
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
