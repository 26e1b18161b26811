"""bf16 autocast against float32 for one CPU training step of the quick budget's models.

Builds each method's model, loss and optimiser as `ltbench run` does (quick budget,
mnist_lt, one thread), then times forward + backward + clipping + the optimiser step on
one batch in float32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``, taking turns
so that the machine's drift hits both alike. It also says whether the CPU has bf16 in
hardware (AVX-512 BF16 or AMX, from /proc/cpuinfo): without it, bf16 matrix products are
emulated and no faster.

    python benchmarks/cpu_bf16.py                        # ce (ViT) and cnn_ce (ResNet)
    python benchmarks/cpu_bf16.py --json benchmarks/results/cpu/bf16.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from cpu_step import _build  # noqa: E402  (the same model, loss, optimiser and batch)


def cpu_flags() -> dict[str, bool]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    words = set(flags.split())
    return {"avx512_bf16": "avx512_bf16" in words, "amx_bf16": "amx_bf16" in words, "avx512f": "avx512f" in words}


def measure(method: str, rounds: int, steps: int) -> dict:
    from ltbench.training import objectives

    cfg, objective, optimizer, x, y = _build(method)
    fp32_autocast = objectives._autocast  # ltbench's: off on a CPU

    def bf16_autocast(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def step(dtype) -> None:
        # The objectives open their own autocast region: switch that one, or it would turn bf16 off inside.
        objectives._autocast = bf16_autocast if dtype == "bf16" else fp32_autocast
        optimizer.zero_grad(set_to_none=True)
        loss = objective.loss(x, y, 1)
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(objective.model.parameters(), cfg.train.grad_clip)
        optimizer.step()

    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    try:
        for _ in range(rounds):
            for dtype in times:
                for _ in range(2):  # warm-up after a switch
                    step(dtype)
                tick = time.perf_counter()
                for _ in range(steps):
                    step(dtype)
                times[dtype].append((time.perf_counter() - tick) / steps * 1000)
    finally:
        objectives._autocast = fp32_autocast  # the next method measures from ltbench's own setting
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    return {
        "method": method,
        "batch_size": cfg.train.batch_size,
        "ms_per_step": {"fp32": round(fp32, 2), "bf16": round(bf16, 2)},
        "bf16_speedup": round(fp32 / bf16, 3),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="ce,cnn_ce")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    flags = cpu_flags()
    print(f"CPU: {platform.processor() or platform.machine()}; bf16 in hardware: {flags}")
    rows = [measure(m, args.rounds, args.steps) for m in args.methods.split(",")]
    for row in rows:
        ms = row["ms_per_step"]
        print(f"{row['method']} (batch {row['batch_size']}): fp32 {ms['fp32']} ms, bf16 {ms['bf16']} ms "
              f"-> bf16 speed-up {row['bf16_speedup']}x")  # fmt: skip
    if args.json:
        when = time.strftime("%Y-%m-%d %H:%M UTC")
        out = {"rows": rows, "cpu_flags": flags, "torch": torch.__version__, "date": when}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
