"""SADE's test-time self-supervised aggregation of experts, on stored logits.

SADE (Zhang et al., NeurIPS 2022) learns one weight per expert on the unlabelled test set: the
aggregated prediction ``softmax(sum_e softmax(w)_e z_e)`` of two augmented views of each image
should agree (maximise their cosine similarity), which favours the expert whose prior matches
the test set's. The weights start equal and are trained with SGD as the authors' test-time
configuration does (lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, batch 128, 5 epochs,
stopping after an epoch that leaves any weight under 0.05); the test images are then predicted
with ``sum_e softmax(w)_e z_e`` of their plain (not augmented) expert logits.

Here it runs on what a multi-expert run stores (``train.test_views``): each expert's logits on
the plain test images and on augmented views of them, so the aggregation of any test subset
is a function of stored arrays and costs no model pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AggregationSettings:
    """The authors' test-time settings (configs/test_time_*.json of SADE's code)."""

    epochs: int = 5
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    stop_below: float = 0.05  # an epoch that leaves a weight below this ends the training


def view_agreement(weights: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of the aggregated predictions of the first two views.

    Args:
        weights: (E,) unnormalised expert weights (softmax-normalised here).
        views: (V >= 2, E, B, C) expert logits of V views of B images.
    """
    mix = torch.softmax(weights, dim=0).view(1, -1, 1, 1)
    probs = torch.softmax((mix * views[:2]).sum(1), dim=-1)  # (2, B, C)
    return F.cosine_similarity(probs[0], probs[1], dim=1, eps=1e-6).mean()


def learn_weights(
    views: np.ndarray, seed: int = 0, settings: AggregationSettings = AggregationSettings()
) -> np.ndarray:
    """SADE's expert weights (summing to 1) learned on ``views``: (V, E, N, C) expert logits
    of augmented views of N unlabelled images; batches in one seeded shuffle per epoch."""
    z = torch.as_tensor(np.asarray(views, dtype=np.float32))
    n_experts, n = z.shape[1], z.shape[2]
    w = torch.full((n_experts,), 1.0 / n_experts, requires_grad=True)
    opt = torch.optim.SGD(
        [w], lr=settings.lr, momentum=settings.momentum, nesterov=True, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(seed)
    for _ in range(settings.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, settings.batch_size):
            batch = z[:, :, order[start : start + settings.batch_size]]
            loss = -view_agreement(w, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if (torch.softmax(w.detach(), 0) < settings.stop_below).any():
            break
    return torch.softmax(w.detach(), 0).numpy().astype(np.float64)


def aggregate(heads: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_e w_e z_e``: the experts' (E, N, C) logits combined with ``weights`` (E,)."""
    return np.tensordot(np.asarray(weights, dtype=np.float32), np.asarray(heads, dtype=np.float32), axes=1)


__all__ = ["AggregationSettings", "aggregate", "learn_weights", "view_agreement"]
