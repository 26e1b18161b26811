"""GCL: Gaussian clouded logit adjustment (Li et al., CVPR 2022, "Long-tailed Visual Recognition
via Gaussian Clouded Logit Adjustment").

On a cosine classifier, each logit of class j is lowered by a random amount that is largest for
the rarest classes: ``noise_mul * |delta| * c_j`` with ``delta ~ N(0, 1/3)`` clipped to [-1, 1]
(one draw per logit and sample) and ``c_j = (log n_max - log n_j) / max_k (log n_max - log n_k)``.
A tail class's logits thus form a wider "cloud", which acts as a larger, random margin for it.
The true class also loses a fixed margin ``m``; the loss is the cross-entropy at scale ``s``,
or its focal form ``(1 - p)^gamma * CE`` (``p`` the true class's probability, not
differentiated), as the authors' second stage uses. Values as their code: stage 1 ``m = 0,
s = 30, noise_mul = 0.5``; stage 2 (classifier re-training) ``m = 0.1, s = 20, noise_mul =
0.5, gamma = 1``. With soft targets (Mixup) the margin is ``m`` weighted by the target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import _counts, _soft


class GCLLoss(torch.nn.Module):
    """Gaussian clouded logits on cosine logits (see the module's docstring)."""

    cosine_classifier = True  # capability flag read by ltbench.training.models.build_model
    adjusts_inference = False

    def __init__(self, class_counts, m: float = 0.0, s: float = 30.0, noise_mul: float = 0.5, gamma: float = 0.0):
        super().__init__()
        if s <= 0 or noise_mul < 0 or gamma < 0:
            raise ValueError(
                f"GCL needs s > 0, noise_mul >= 0 and gamma >= 0; got s={s}, noise_mul={noise_mul}, gamma={gamma}"
            )
        gap = torch.as_tensor(_counts(class_counts)).clamp(min=1).log()
        gap = gap.max() - gap  # 0 for the head class, largest for the rarest
        self.register_buffer("cloud", (gap / gap.max() if gap.max() > 0 else gap).float())
        self.m, self.s, self.noise_mul, self.gamma = float(m), float(s), float(noise_mul), float(gamma)

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        """Cosine logits at the scale they were trained at (probabilities for ECE); argmax unchanged."""
        return self.s * logits

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = _soft(target, logits.shape[1], logits.dtype)
        delta = (torch.randn_like(logits) / 3).clamp_(-1, 1).abs_()  # torch's seeded stream: resumes exactly
        z = self.s * (logits - self.noise_mul * delta * self.cloud.to(logits.dtype) - self.m * t)
        per_sample = -(t * F.log_softmax(z, dim=1)).sum(1)
        if self.gamma:
            per_sample = (1 - torch.exp(-per_sample.detach())) ** self.gamma * per_sample
        return per_sample.mean()


__all__ = ["GCLLoss"]
