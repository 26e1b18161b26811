"""How long a run will train, for ordering runs (never for identity or results).

A guess from the recipe alone (epochs, twice for SAM's two passes) ranks a 200-epoch ResNet on
MNIST above a 100-epoch ViT that takes ten times longer per epoch, and the sweep ends with the
ViT training alone. :class:`CostModel` learns seconds per epoch from the finished runs of the
same kind (model family and size, dataset, image size, batch, SAM, views), and falls back to the recipe's
epoch count times the median rate of every finished run where it has seen none of a kind.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

_SIZE_KEYS = ("img_size", "views", "batch_size", "embed_dim", "depth", "cnn_depth", "num_experts")


def cost_key(train: Mapping[str, Any], model: str, dataset: str) -> tuple:
    """What decides a run's seconds per epoch on one machine: model family and size, dataset,
    image size, batch, views and SAM's second pass (so the quick budget's tiny ViT and the
    paper's DeiT-S never share a rate)."""
    sam = bool(train.get("sam_rho") or train.get("sam_rho_schedule"))
    return (model, dataset, sam, *(train.get(k) for k in _SIZE_KEYS))


def _spec_key(spec) -> tuple:
    c = spec.config
    train = {k: getattr(c.train, k) for k in (*_SIZE_KEYS, "sam_rho", "sam_rho_schedule")}
    return cost_key(train, c.method.model, c.data.name)


def epochs_guess(spec) -> float:
    """The recipe's guess: epochs, doubled for SAM's two passes."""
    t = spec.config.train
    return max(t.epochs, 1) * (2 if t.uses_sam else 1)


class CostModel:
    """Seconds a planned run is expected to train, learned from finished records.

    Example:
        >>> cost = CostModel.from_records(store.records())
        >>> cost(spec)   # seconds, or an epoch count where nothing is known
    """

    def __init__(self, rates: Mapping[tuple, float]):
        self.rates = dict(rates)  # cost_key -> median seconds per epoch
        self.fallback = statistics.median(self.rates.values()) if self.rates else 1.0

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> CostModel:
        """Seconds per epoch of each kind of run among ``records`` (done runs with train seconds)."""
        seen: dict[tuple, list[float]] = {}
        for r in records:
            secs, config = (r.get("timings") or {}).get("train_seconds"), r.get("config") or {}
            epochs = len(r.get("history") or [])
            if r.get("status") != "done" or not secs or not epochs or "train" not in config:
                continue
            key = cost_key(config["train"], (config.get("method") or {}).get("model", ""), r.get("dataset", ""))
            seen.setdefault(key, []).append(secs / epochs)
        return cls({key: statistics.median(v) for key, v in seen.items()})

    def __call__(self, spec) -> float:
        t = spec.config.train
        return max(t.epochs, 1) * self.rates.get(_spec_key(spec), self.fallback * (2 if t.uses_sam else 1))


__all__ = ["CostModel", "cost_key", "epochs_guess"]
