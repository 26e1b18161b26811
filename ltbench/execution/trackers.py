"""Experiment trackers: the same runs in TensorBoard or Weights & Biases (``run --log``).

Each tracker gets, per run: every epoch's training loss, learning rate and validation top-1
(as the epoch ends when the run trains in this process or in :mod:`ltbench.execution.pool`'s workers;
replayed from the record's history when the run trained elsewhere, e.g. a SLURM job), then
the final test many / medium / few / all (last epoch and best-on-validation), with the run's
resolved config and lineage (the run ids of its stages) as the tracker's run config. Runs
skipped because they were already done are not logged again.

- ``tensorboard``: event files under ``<out>/tensorboard/<method>/<dataset>-<budget>-s<seed>-<id>``
  (``tensorboard --logdir <out>/tensorboard``); needs ``pip install 'ltbench[tensorboard]'``.
- ``wandb``: one W&B run per ltbench run, files under ``<out>/wandb``; online when an API key
  is configured and api.wandb.ai answers, offline otherwise (``wandb sync <out>/wandb/offline-run-*``
  uploads later); ``WANDB_MODE`` and ``WANDB_PROJECT`` (default ``ltbench``) are honoured.
  Needs ``pip install 'ltbench[wandb]'``.

Nothing here changes a result or a run's identity.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "wandb")
FINAL_METRICS = ("many", "medium", "few", "top1", "ece", "worst", "hmean")


def _missing(kind: str, package: str) -> ImportError:
    return ImportError(f"--log {kind} needs {package}: pip install 'ltbench[{kind}]' (or pip install {package})")


def check_trackers(kinds: Sequence[str]) -> None:
    """Refuse unknown tracker names and trackers whose package is missing, before any run.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        ImportError: the tracker's package is not installed (the message says what to install).
    """
    import importlib.util

    for kind in kinds:
        if kind not in TRACKERS:
            raise ValueError(f"unknown tracker {kind!r} in --log; choose from {', '.join(TRACKERS)}")
        package = "tensorboard" if kind == "tensorboard" else "wandb"
        if importlib.util.find_spec(package) is None:
            raise _missing(kind, package)


def run_config(spec) -> dict[str, Any]:
    """What a tracker stores as the run's config: the resolved config, identity and lineage."""
    import dataclasses

    return {
        "run_id": spec.run_id,
        "variant": spec.variant,
        "method": spec.config.method.name,
        "dataset": spec.config.data.name,
        "budget": spec.config.budget,
        "seed": spec.config.seed,
        "data_seed": spec.config.data_seed,
        "lineage": dict(spec.need_ids),
        "overrides": list(spec.overrides),
        "config": json.loads(json.dumps(dataclasses.asdict(spec.config), default=str)),
    }


def final_scalars(record: dict[str, Any]) -> dict[str, float]:
    """``test/<metric>`` (last epoch) and ``test_best_val/<metric>`` from a finished record, in %."""
    out = {}
    for selection, prefix in (("last", "test"), ("best_val", "test_best_val")):
        metrics = (record.get("metrics") or {}).get(selection) or {}
        for key in FINAL_METRICS:
            if metrics.get(key) is not None:
                out[f"{prefix}/{key}"] = 100 * float(metrics[key])
    return out


def _epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    out = {"train/loss": float(row["train_loss"])}
    if row.get("lr") is not None:
        out["train/lr"] = float(row["lr"])
    if row.get("val_top1") is not None:
        out["val/top1"] = 100 * float(row["val_top1"])
    return out


class _Tracker:
    """Per-run writers keyed by run id; subclasses open, write and close one run."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.open_runs: dict[str, Any] = {}
        self.epochs_seen: dict[str, int] = {}

    def _writer(self, spec):
        if spec.run_id not in self.open_runs:
            self.open_runs[spec.run_id] = self.open(spec)
            self.epochs_seen[spec.run_id] = 0
        return self.open_runs[spec.run_id]

    def run_started(self, spec) -> None:
        self._writer(spec)

    def epoch(self, spec, epoch: int, total: int, row: dict[str, Any]) -> None:
        self.write(self._writer(spec), epoch, _epoch_scalars(row))
        self.epochs_seen[spec.run_id] = epoch

    def run_finished(self, spec, record: dict[str, Any]) -> None:
        if record.get("skipped"):
            return
        writer = self._writer(spec)
        seen = self.epochs_seen.get(spec.run_id, 0)
        for row in record.get("history") or []:  # epochs that ran in another process
            if row["epoch"] > seen:
                self.write(writer, row["epoch"], _epoch_scalars(row))
        last_epoch = max([row["epoch"] for row in record.get("history") or []], default=0)
        self.finish(writer, last_epoch, final_scalars(record), record.get("status", "failed"))
        del self.open_runs[spec.run_id]

    def close(self) -> None:
        for writer in self.open_runs.values():
            self.finish(writer, None, {}, "interrupted")
        self.open_runs.clear()

    def open(self, spec): ...

    def write(self, writer, step: int, scalars: dict[str, float]) -> None: ...

    def finish(self, writer, step: int | None, scalars: dict[str, float], status: str) -> None: ...


class TensorBoardTracker(_Tracker):
    """Event files per run under ``<out>/tensorboard`` (torch.utils.tensorboard)."""

    def open(self, spec):
        from torch.utils.tensorboard import SummaryWriter

        c = spec.config
        folder = self.out_dir / "tensorboard" / c.method.name / f"{c.data.name}-{c.budget}-s{c.seed}-{spec.run_id[:8]}"
        writer = SummaryWriter(log_dir=str(folder))
        writer.add_text("config", "```\n" + json.dumps(run_config(spec), indent=2) + "\n```", 0)
        return writer

    def write(self, writer, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            writer.add_scalar(key, value, step)
        writer.flush()

    def finish(self, writer, step, scalars, status) -> None:
        for key, value in scalars.items():
            writer.add_scalar(key, value, step or 0)
        writer.add_text("status", status, step or 0)
        writer.close()


def _wandb_mode() -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if not os.environ.get("WANDB_API_KEY") and not (Path.home() / ".netrc").is_file():
        return "offline"
    import socket

    try:
        socket.create_connection(("api.wandb.ai", 443), timeout=2).close()
    except OSError:
        return "offline"
    return "online"


class WandbTracker(_Tracker):
    """One W&B run per ltbench run, offline when there is no key or no network."""

    def __init__(self, out_dir: Path):
        super().__init__(out_dir)
        self.mode = _wandb_mode()
        self.opened_any = False

    def open(self, spec):
        import wandb

        c = spec.config
        self.out_dir.mkdir(parents=True, exist_ok=True)  # W&B writes into <out>/wandb
        return wandb.init(
            project=os.environ.get("WANDB_PROJECT", "ltbench"),
            name=f"{c.method.name} on {c.data.name} s{c.seed}",
            group=spec.variant or None,
            id=spec.run_id[:32],
            config=run_config(spec),
            dir=str(self.out_dir),
            mode=self.mode,
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )

    def write(self, writer, step: int, scalars: dict[str, float]) -> None:
        writer.log({**scalars, "epoch": step}, step=step)

    def finish(self, writer, step, scalars, status) -> None:
        if scalars:
            writer.summary.update(scalars)
        writer.summary["status"] = status
        writer.finish(exit_code=0 if status == "done" else 1)
        self.opened_any = True

    def close(self) -> None:
        super().close()
        if self.opened_any:
            import wandb

            # finish() returns before wandb-core has flushed the run's .wandb file; teardown waits
            # for it, so the files are whole when ltbench.run returns (and `wandb sync` sees every epoch).
            wandb.teardown()
            self.opened_any = False


def make_trackers(kinds: Sequence[str], out_dir: str | Path) -> list[_Tracker]:
    """The trackers ``--log`` names, writing under ``out_dir`` (checked by :func:`check_trackers`)."""
    check_trackers(kinds)
    made = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}
    return [made[k](Path(out_dir)) for k in dict.fromkeys(kinds)]


__all__ = [
    "TRACKERS",
    "TensorBoardTracker",
    "WandbTracker",
    "check_trackers",
    "final_scalars",
    "make_trackers",
    "run_config",
]
