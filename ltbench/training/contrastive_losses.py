"""Supervised contrastive losses for long-tailed recognition, on the outputs of
:class:`~ltbench.training.models.contrastive.ContrastiveResNet` for a batch of two views.

- ``bcl``: BCL (Zhu et al., CVPR 2022, arXiv:2207.09052): logit-adjusted CE on the classifier
  plus the balanced contrastive loss, whose class prototypes are the classifier's weights
  through a projection head; each class's contrast terms are averaged over its members
  (class averaging) and every class has its prototype in the contrast set (class complement).
- ``paco``: PaCo (Cui et al., ICCV 2021, arXiv:2107.12028): parametric contrastive learning,
  the classifier's logits (Balanced-Softmax adjusted) as learnable class centres next to the
  batch's and the momentum queue's keys, MoCo-style.

Both follow the authors' released losses (``BCLLoss`` / ``BalSCL``, ``PaCoLoss``). Labels
are integers (views take no Mixup). At test the classifier predicts alone.
Registered lazily in :data:`ltbench.training.losses.LOSSES`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import _prior


def _check_views(out, name: str, keys: tuple[str, ...]) -> None:
    if not isinstance(out, dict) or any(k not in out for k in keys):
        raise ValueError(
            f"loss {name!r} takes a contrastive model's outputs ({', '.join(keys)}) on a batch of views; "
            "use model = 'cnn_contrastive' with train.views = 2"
        )


class BCLLoss(torch.nn.Module):
    """``L = alpha * CE(z_cls + log pi) + beta * L_BSC``. With anchors the 2B projections of
    both views and the contrast set A = those 2B and the C prototypes ``c_j``::

        L_BSC = -mean_i  1/|P(i)| sum_{p in P(i)} log( exp(a_i.a_p / T)
                 / sum_{classes k} 1/|A_k \\ P(i)-ish| sum_{a in A_k, a != a_i} exp(a_i.a / T) )

    ``P(i)``: the other members of ``i``'s class in A (its prototype included); each term of
    the denominator is divided by its class's count in A, less one where that class is ``i``'s
    (as ``BalSCL`` divides by ``batch_cls_count - mask``). ``alpha`` 1, ``beta`` 0.35, ``T`` 0.1
    are ``BCLLoss``'s defaults.
    """

    adjusts_inference = False
    contrastive = True
    uses_centers = True

    def __init__(self, class_counts, alpha: float = 1.0, beta: float = 0.35, temperature: float = 0.1):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"bcl temperature must be > 0, got {temperature}")
        self.register_buffer("log_prior", _prior(class_counts).log())
        self.alpha, self.beta, self.t = float(alpha), float(beta), float(temperature)

    def balanced_contrast(self, z: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, v, _ = z.shape
        c = centers.shape[0]
        anchors = z.transpose(0, 1).reshape(b * v, -1)  # view-major, as the code's torch.unbind
        every = torch.cat([anchors, centers])
        y = torch.cat([labels.repeat(v), torch.arange(c, device=labels.device)])
        n = len(anchors)
        same = (y[:n, None] == y[None, :]).to(z.dtype)
        not_self = torch.ones_like(same)
        not_self[torch.arange(n), torch.arange(n)] = 0
        positive = same * not_self
        counts = torch.bincount(y, minlength=c).to(z.dtype)
        logits = anchors @ every.T / self.t
        logits = logits - logits.max(1, keepdim=True).values.detach()
        per_class = counts[y][None, :] - positive
        denom = (torch.exp(logits) * not_self / per_class).sum(1, keepdim=True)
        log_prob = logits - denom.log()
        return -((positive * log_prob).sum(1) / positive.sum(1)).mean()

    def forward(self, out, target: torch.Tensor) -> torch.Tensor:
        _check_views(out, "bcl", ("logits", "z", "centers"))
        ce = F.cross_entropy(out["logits"] + self.log_prior.to(out["logits"].dtype), target.long())
        return self.alpha * ce + self.beta * self.balanced_contrast(out["z"], out["centers"], target)


class PaCoLoss(torch.nn.Module):
    """For each query ``q_i`` (first view), the contrast set is the classifier's C logits
    ``s_ij = (z_cls + log pi)_j / supt`` (the parametric centres) and the keys
    ``[q; k; queue]`` scaled ``q_i . x / T``::

        L = -(T / T_base) mean_i  sum_x m_ix log( e^{l_ix} / sum_x' g_ix' e^{l_ix'} ) / sum_x m_ix

    ``m``: ``beta`` on the true class's centre, ``alpha`` on the other same-class keys (self
    excluded), 0 elsewhere; ``g``: 1 on the centres, ``gamma`` on the keys (0 on self). Queue
    slots not yet written (label -1) are negatives. ``alpha`` 0.05, ``beta`` = ``gamma`` 1,
    ``T`` 0.07 and ``supt`` 1 are ltbench's defaults (the released ``PaCoLoss`` takes them
    per run script).
    """

    adjusts_inference = False
    contrastive = True
    uses_queue = True

    def __init__(
        self,
        class_counts,
        alpha: float = 0.05,
        beta: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        supt: float = 1.0,
    ):
        super().__init__()
        if not temperature > 0 or not base_temperature > 0 or not supt > 0:
            raise ValueError("paco temperature, base_temperature and supt must be > 0")
        self.register_buffer("log_prior", _prior(class_counts).log())
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.t, self.t_base, self.supt = float(temperature), float(base_temperature), float(supt)

    def forward(self, out, target: torch.Tensor) -> torch.Tensor:
        _check_views(out, "paco", ("logits", "z", "keys", "queue", "queue_labels"))
        q = out["z"][:, 0]
        b, c = out["logits"].shape
        keys = torch.cat([q, out["keys"], out["queue"].to(q.dtype)])
        y = target.long()
        key_labels = torch.cat([y, y, out["queue_labels"]])
        sup = (out["logits"] + self.log_prior.to(q.dtype)) / self.supt
        logits = torch.cat([sup, q @ keys.T / self.t], dim=1)
        logits = logits - logits.max(1, keepdim=True).values.detach()
        same = (y[:, None] == key_labels[None, :]).to(q.dtype)
        not_self = torch.ones_like(same)
        not_self[torch.arange(b), torch.arange(b)] = 0
        mask = torch.cat([F.one_hot(y, c).to(q.dtype) * self.beta, same * not_self * self.alpha], dim=1)
        gate = torch.cat([torch.ones(b, c, dtype=q.dtype, device=q.device), self.gamma * not_self], dim=1)
        log_prob = logits - torch.log((torch.exp(logits) * gate).sum(1, keepdim=True) + 1e-12)
        return -(self.t / self.t_base) * ((mask * log_prob).sum(1) / mask.sum(1)).mean()
