"""Losses of multi-expert models: logits ``z`` of shape ``(E, B, C)``, one slice per expert
(``model = "cnn_experts"``, :mod:`ltbench.training.models.multi_expert`).

- ``ride``: RIDE (Wang et al., ICLR 2021, arXiv:2010.01809), routing-free: every expert an
  LDAM-DRW classifier, plus a distribution-aware diversity term that pushes each expert away
  from the experts' mean.
- ``sade``: SADE's skill-diverse experts (Zhang et al., NeurIPS 2022, arXiv:2107.09249): one
  expert for the long-tailed training prior (softmax CE), one for the uniform prior (Balanced
  Softmax), one for the inverse prior.

Both follow the authors' released losses (``RIDELoss``, ``DiverseExpertLoss``); the experts'
classifiers are cosine (``cosine_classifier``) and their logits scaled by ``s``, as the
RIDE ResNets that both codebases use. At test the experts' scaled logits are averaged.
Registered lazily in :data:`ltbench.training.losses.LOSSES`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import _counts, _prior, drw_weights


def _check_experts(logits: torch.Tensor, name: str) -> None:
    if logits.ndim != 3:
        raise ValueError(f"loss {name!r} takes one logit slice per expert (E, B, C); use model = 'cnn_experts'")


class RIDELoss(torch.nn.Module):
    """Per expert ``e`` with scaled logits ``s z_e`` and the experts' mean ``s z_bar``::

        L = sum_e [ CE_w(s z_e - s m_y on the true class)
                    + lambda * mean(T) ** 2 * KL(softmax(s z_bar / T) || softmax(s z_e / T)) ]

    ``m_j ~ n_j^(-1/4)`` (largest ``max_m``); before the DRW epoch ``w = 1`` and ``T = t0``;
    after it ``w`` are the effective-number weights (beta 0.9999, summing to C) and
    ``T_j = t0 * w'_j`` with ``w'_j = (C pi_j f + 1 - f) / max`` (``f`` = ``reweight_factor``).
    ``lambda`` = ``diversity`` is negative (-0.2): the KL is maximised. KL is averaged over
    the batch; ``z_bar`` carries no gradient, as in the authors' code.
    """

    adjusts_inference = False
    cosine_classifier = True
    multi_expert = True

    def __init__(
        self,
        class_counts,
        max_m: float = 0.5,
        s: float = 30.0,
        diversity: float = -0.2,
        temperature: float = 1.0,
        reweight_factor: float = 0.05,
        beta: float = 0.9999,
    ):
        super().__init__()
        if not s > 0 or not temperature > 0:
            raise ValueError(f"ride s and temperature must be > 0, got {s}, {temperature}")
        counts = _counts(class_counts)
        m = counts**-0.25
        self.register_buffer("margins", torch.as_tensor(m * (max_m / m.max()), dtype=torch.float32))
        self.register_buffer("weights", drw_weights(counts, beta))
        pi = counts / counts.sum()
        w = len(counts) * pi * reweight_factor + 1 - reweight_factor
        if not (w > 0).all():
            raise ValueError(f"ride reweight_factor {reweight_factor} makes a temperature <= 0")
        self.register_buffer("temp_weights", torch.as_tensor(w / w.max(), dtype=torch.float32))
        self.s, self.diversity, self.t0 = float(s), float(diversity), float(temperature)
        self.reweight = False

    def set_reweight(self, on: bool) -> None:
        self.reweight = bool(on)

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.s

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_experts(logits, "ride")
        if target.ndim != 1:
            raise ValueError("ride takes integer labels (no mixup, cutmix or label smoothing), as LDAM")
        z = logits * self.s
        mean = z.mean(0).detach()
        c = z.shape[-1]
        margin = F.one_hot(target.long(), c).to(z.dtype) * (self.s * self.margins.to(z.dtype))
        if self.reweight:
            weight = self.weights.to(z.dtype)
            temp = self.t0 * self.temp_weights.to(z.dtype).view(1, -1)
            t_mean = float(temp.mean())
        else:
            weight, temp, t_mean = None, self.t0, self.t0
        total = z.new_zeros(())
        target_dist = F.softmax(mean / temp, dim=1)
        for ze in z:
            total = total + F.cross_entropy(ze - margin, target.long(), weight=weight)
            kl = F.kl_div(F.log_softmax(ze / temp, dim=1), target_dist, reduction="batchmean")
            total = total + self.diversity * t_mean**2 * kl
        return total


def inverse_prior(prior: torch.Tensor) -> torch.Tensor:
    """SADE's inverse prior: the class of frequency rank ``r`` (0 = most images) gets the prior of
    rank ``C - 1 - r``, the training prior's values in reversed order (ties by sort order)."""
    values, order = torch.sort(prior)
    rank = torch.argsort(order)
    return values[prior.numel() - 1 - rank]


class SADELoss(torch.nn.Module):
    """Three experts, each CE on shifted scaled logits ``s z_e``::

        L = CE(s z_1) + CE(s z_2 + log pi) + CE(s z_3 + log pi - tau log pi_inv)

    the forward (long-tailed), uniform and backward experts; ``pi_inv`` is
    :func:`inverse_prior`, ``tau`` 2 as the authors' default. Soft targets (Mixup) are allowed.
    """

    adjusts_inference = False
    cosine_classifier = True
    multi_expert = True
    experts = 3

    def __init__(self, class_counts, s: float = 30.0, tau: float = 2.0):
        super().__init__()
        if not s > 0:
            raise ValueError(f"sade s must be > 0, got {s}")
        prior = _prior(class_counts)
        self.register_buffer("log_prior", prior.log())
        self.register_buffer("log_inverse", inverse_prior(prior).log())
        self.s, self.tau = float(s), float(tau)

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.s

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from .losses import _soft_ce

        _check_experts(logits, "sade")
        if logits.shape[0] != self.experts:
            raise ValueError(f"sade has {self.experts} experts, the model {logits.shape[0]}; set num_experts = 3")
        z = logits * self.s
        lp, li = self.log_prior.to(z.dtype), self.log_inverse.to(z.dtype)
        return _soft_ce(z[0], target) + _soft_ce(z[1] + lp, target) + _soft_ce(z[2] + lp - self.tau * li, target)
