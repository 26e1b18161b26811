"""Classification losses for long-tailed recognition, built from class counts.

- ``ce``: softmax cross-entropy.
- ``la``: logit-adjusted cross-entropy, CE on ``z + tau * log(pi)`` (Menon et al., ICLR 2021,
  arXiv:2007.07314).
- ``bce``: per-class sigmoid binary cross-entropy, summed over classes, mean over the batch.
- ``bal_bce``: Balanced BCE of LiVT (Xu et al., CVPR 2023, arXiv:2212.02015): BCE on logits
  shifted by ``b_j = tau * (log pi_j - log(1 - pi_j))``.
- ``ldam``: label-distribution-aware margin loss (Cao et al., NeurIPS 2019, arXiv:1906.07413),
  with deferred re-weighting (DRW) switched on by :meth:`set_reweight`.
- ``lade``: LADE (Hong et al., CVPR 2021, arXiv:2012.00321): the PC softmax (CE on
  ``z + log pi``, Balanced Softmax) plus ``alpha`` times the LADER regulariser.
- ``las``: MiSLAS's label-aware smoothing (Zhong et al., CVPR 2021, arXiv:2104.00466): CE
  against a target smoothed by ``eps_y``, more for head classes than for tail ones.
- ``deit_lt``: DeiT-LT's two-token loss (Rangwani et al., CVPR 2024, arXiv:2404.02900): CE on
  the CLS head plus CE of the DIST head against the teacher's argmax, re-weighted by class.

Here ``pi_j = n_j / sum(n)`` is the training prior. Every loss takes integer labels (B,) or
soft targets (B, C) (Mixup/CutMix, label smoothing). The logit shifts of ``la`` and ``bal_bce``
apply to training only; inference uses the raw logits.
"""

from __future__ import annotations

import difflib
import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core.registry import PluginImportError, Registry, UnknownNameError

# Built-ins below; installed packages add more through entry points in group ``ltbench.losses``,
# and a recipe may name any loss as ``module:attr`` (built as ``attr(class_counts, **params)``).
LOSSES: Registry[type[torch.nn.Module]] = Registry("loss", entry_points="ltbench.losses")


def list_losses() -> list[str]:
    return LOSSES.names()


def loss_class(name: str):
    """The class (or factory) a loss name resolves to: registered, entry point or ``module:attr``.

    Raises:
        UnknownNameError: an unknown plain name.
        PluginImportError: an entry point or ``module:attr`` whose code does not import.
    """
    return LOSSES.get(name)


def loss_parameters(factory) -> list[str] | None:
    """Keyword parameters ``factory(class_counts, **params)`` accepts; None: any (``**kwargs``)."""
    sig = inspect.signature(factory)  # a class: its __init__ without self
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if named and named[0].kind is not named[0].KEYWORD_ONLY:
        named = named[1:]  # class_counts, whatever its name
    return [p.name for p in named]


def check_loss_params(name: str, params) -> type:
    """The loss ``name`` resolves to, after checking it accepts every key of ``params``.

    Raises:
        ValueError: a key the loss's signature lacks (the message names it, a close match
            and the valid keys).
    """
    cls = loss_class(name)
    accepted = loss_parameters(cls)
    if accepted is not None:
        for key in params:
            if key not in accepted:
                close = difflib.get_close_matches(key, accepted, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"loss {name!r} takes no parameter {key!r}.{hint} Valid: {', '.join(accepted) or '(none)'}"
                )
    return cls


def _counts(class_counts) -> np.ndarray:
    """Validated per-class counts as float64 (a CUDA tensor is fine too)."""
    if isinstance(class_counts, torch.Tensor):
        class_counts = class_counts.detach().cpu()
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {counts.shape}")
    bad = np.flatnonzero(~(counts > 0))  # also catches NaN
    if len(bad):
        raise ValueError(f"class {bad[0]} has training count {counts[bad[0]]:g}; every class needs at least one image")
    return counts


def _prior(class_counts) -> torch.Tensor:
    counts = _counts(class_counts)
    return torch.as_tensor(counts / counts.sum(), dtype=torch.float32)


def _soft(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    if target.ndim == 1:
        return F.one_hot(target.long(), num_classes).to(dtype)
    return target.to(dtype)


def _soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.ndim == 1:
        return F.cross_entropy(logits, target.long())
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def _bce_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    t = _soft(target, logits.shape[1], logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, t, reduction="sum") / logits.shape[0]


@LOSSES.register("ce")
class CrossEntropy(torch.nn.Module):
    """L = mean_i [-sum_j t_ij log softmax(z_i)_j]."""

    adjusts_inference = False  # predictions are argmax of the raw logits

    def __init__(self, class_counts):
        super().__init__()
        _prior(class_counts)  # validates counts, as for every loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _soft_ce(logits, target)


@LOSSES.register("la")
class LogitAdjusted(torch.nn.Module):
    """L = CE(z + tau * log(pi), t): a margin that grows as a class gets rarer."""

    adjusts_inference = False  # predictions are argmax of the raw logits

    def __init__(self, class_counts, tau: float = 1.0):
        super().__init__()
        self.tau = float(tau)
        self.register_buffer("shift", self.tau * _prior(class_counts).log())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _soft_ce(logits + self.shift.to(logits.dtype), target)


@LOSSES.register("bce")
class BinaryCrossEntropy(torch.nn.Module):
    """L = (1/B) sum_i sum_j [softplus(z_ij) - t_ij z_ij]."""

    adjusts_inference = False  # predictions are argmax of the raw logits

    def __init__(self, class_counts):
        super().__init__()
        _prior(class_counts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _bce_sum(logits, target)


@LOSSES.register("bal_bce")
class BalancedBCE(torch.nn.Module):
    """BCE on z_ij + b_j, b_j = tau * (log pi_j - log(1 - pi_j)), on all C logits.

    The shift is the log-odds of the prior: it makes the sigmoid unbiased under the training
    distribution, so the raw logits are balanced at inference (LiVT, Sec. 3.3). This module
    changes only the training loss: predict with the raw, unshifted logits. ``tau`` is 1 in
    the released code; the paper lists 1.05 for Places-LT.
    """

    adjusts_inference = False

    def __init__(self, class_counts, tau: float = 1.0):
        super().__init__()
        self.tau = float(tau)
        pi = _prior(class_counts).double()
        self.register_buffer("shift", (self.tau * (pi.log() - torch.log1p(-pi))).float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _bce_sum(logits + self.shift.to(logits.dtype), target)


def drw_weights(class_counts, beta: float = 0.9999) -> torch.Tensor:
    """Effective-number class weights (Cui et al., 2019): (1 - beta) / (1 - beta^n_j), summing to C."""
    counts = _counts(class_counts)
    w = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return torch.as_tensor(w / w.sum() * len(counts), dtype=torch.float32)


@LOSSES.register("ldam")
class LDAM(torch.nn.Module):
    """L = CE(s * (z - Delta_y on the true class)), Delta_j = max_m * n_j^(-1/4) / max_k n_k^(-1/4).

    The logits are expected from a cosine classifier (``NormedLinear``), as in the LDAM code:
    ``cosine_classifier`` asks the model builder for one.
    With soft targets the margin is ``Delta`` weighted by the target. After
    ``set_reweight(True)`` (the DRW epoch), classes are weighted by :func:`drw_weights`.
    """

    cosine_classifier = True  # capability flag read by ltbench.training.models.build_model

    adjusts_inference = False

    def __init__(self, class_counts, max_m: float = 0.5, s: float = 30.0, beta: float = 0.9999):
        super().__init__()
        margins = torch.as_tensor(_counts(class_counts)).pow(-0.25)
        self.s = float(s)
        self.register_buffer("margins", (margins * (max_m / margins.max())).float())
        self.register_buffer("weights", drw_weights(class_counts, beta))
        self.reweight = False

    def set_reweight(self, on: bool) -> None:
        self.reweight = bool(on)

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        """Cosine logits lie in [-1, 1]; the scale the loss trained them at gives probabilities
        that mean something (for ECE). The argmax is unchanged."""
        return self.s * logits

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = _soft(target, logits.shape[1], logits.dtype)
        z = self.s * (logits - t * self.margins.to(logits.dtype))
        if not self.reweight:
            return _soft_ce(z, target)
        w = self.weights.to(logits.dtype)
        per_sample = -(t * F.log_softmax(z, dim=1)).sum(1)
        sample_w = (t * w).sum(1)  # the true class's weight (target-weighted for soft targets)
        return (sample_w * per_sample).sum() / sample_w.sum()


@LOSSES.register("deit_lt")
class DeiTLTLoss(torch.nn.Module):
    """0.5 * CE(z_cls, target) + 0.5 * CE(z_dist, argmax teacher), DIST term class-weighted.

    With ``reweight`` (from the DRW epoch) the DIST term is a weighted mean over the batch,
    each sample weighted by :func:`drw_weights` of the class the teacher predicts.
    """

    adjusts_inference = False
    distills = True  # takes (cls, dist, target, teacher logits): a DeiT and a teacher

    def __init__(self, class_counts, beta: float = 0.9999):
        super().__init__()
        self.register_buffer("weights", drw_weights(class_counts, beta))

    def forward(
        self,
        cls_logits: torch.Tensor,
        dist_logits: torch.Tensor,
        target: torch.Tensor,
        teacher_logits: torch.Tensor,
        reweight: bool = False,
    ) -> torch.Tensor:
        hard = teacher_logits.argmax(dim=1)
        weight = self.weights.to(dist_logits.dtype) if reweight else None
        return 0.5 * _soft_ce(cls_logits, target) + 0.5 * F.cross_entropy(dist_logits, hard, weight=weight)


def _focal_terms(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, C) terms -t_ij (1 - p_ij)^gamma log p_ij, p = softmax(z)."""
    t = _soft(target, logits.shape[1], logits.dtype)
    logp = F.log_softmax(logits, dim=1)
    return -t * (1.0 - logp.exp()).clamp(min=0.0).pow(gamma) * logp


@LOSSES.register("focal")
class Focal(torch.nn.Module):
    """Softmax focal loss (Lin et al., ICCV 2017, arXiv:1708.02002): mean_i -(1 - p_iy)^gamma log p_iy.

    Soft targets (Mixup, label smoothing): mean_i -sum_j t_ij (1 - p_ij)^gamma log p_ij, each
    class's term modulated by its own probability; for a one-hot target this is the formula
    above. gamma = 0 is CE. Lin et al. use gamma 2; the LDAM-DRW code's focal baseline uses 1.
    """

    adjusts_inference = False

    def __init__(self, class_counts, gamma: float = 2.0):
        super().__init__()
        _prior(class_counts)
        if not gamma >= 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _focal_terms(logits, target, self.gamma).sum(1).mean()


@LOSSES.register("cb_focal")
class ClassBalancedFocal(torch.nn.Module):
    """Class-balanced focal loss (Cui et al., CVPR 2019, arXiv:1901.05555), softmax form:
    (1/B) sum_i w_y (1 - p_iy)^gamma (-log p_iy), w_j = (1 - beta) / (1 - beta^n_j) scaled to
    sum to C (:func:`drw_weights`).

    As in Cui et al.'s code the weighted terms are divided by the batch size (not by the sum
    of the weights). Soft targets: (1/B) sum_i sum_j t_ij w_j (1 - p_ij)^gamma (-log p_ij).
    Cui et al.'s best CIFAR-LT results use the sigmoid form of focal loss; this is the softmax
    one, the same as ``focal`` with class weights.
    """

    adjusts_inference = False

    def __init__(self, class_counts, beta: float = 0.9999, gamma: float = 1.0):
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"cb_focal gamma must be >= 0, got {gamma}")
        if not 0 <= beta < 1:
            raise ValueError(f"cb_focal beta must be in [0, 1), got {beta}")
        self.gamma, self.beta = float(gamma), float(beta)
        self.register_buffer("weights", drw_weights(class_counts, beta))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = _focal_terms(logits, target, self.gamma) * self.weights.to(logits.dtype)
        return terms.sum(1).mean()


@LOSSES.register("ce_drw")
class CrossEntropyDRW(torch.nn.Module):
    """CE-DRW, the strong baseline of the LDAM paper (Cao et al., NeurIPS 2019): plain CE until
    the DRW epoch; after ``set_reweight(True)`` a weighted mean, each sample weighted by
    :func:`drw_weights` of its class, sum_i w_yi CE_i / sum_i w_yi (as ``F.cross_entropy``
    with ``weight=``, the LDAM code's call). Soft targets weight a sample by sum_j t_ij w_j.
    """

    adjusts_inference = False

    def __init__(self, class_counts, beta: float = 0.9999):
        super().__init__()
        self.register_buffer("weights", drw_weights(class_counts, beta))
        self.reweight = False

    def set_reweight(self, on: bool) -> None:
        self.reweight = bool(on)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.reweight:
            return _soft_ce(logits, target)
        t = _soft(target, logits.shape[1], logits.dtype)
        per_sample = -(t * F.log_softmax(logits, dim=1)).sum(1)
        sample_w = (t * self.weights.to(logits.dtype)).sum(1)
        return (sample_w * per_sample).sum() / sample_w.sum()


@LOSSES.register("lade")
class LADE(torch.nn.Module):
    """LADE: ``PC(z) + alpha * LADER(z)``, for a batch ``z`` (B x C) with labels ``y``.

    ``PC`` is the PC softmax, CE on ``z + log pi`` (Balanced Softmax: the logits learn a
    prior-free score). LADER estimates, per class ``c``, the Donsker-Varadhan bound of the
    log-likelihood ratio between class ``c``'s images and the balanced batch, with REMINE's
    penalty on its second term::

        first_c  = mean of z_ic over the batch's images of class c (0 where it has none)
        second_c = log( mean_i exp(z_ic - log pi_c + log(1/C)) )   (over the whole batch)
        LADER    = - sum_c pi_c * (first_c - second_c - lambda * second_c ** 2)

    ``alpha`` 0.1 and ``remine_lambda`` 0.01 are the authors' CIFAR-100-LT config
    (``lade.yaml``: ``RouteWeightLoss`` weight 0.1, ``remine_lambda`` 0.01). Soft targets
    (Mixup) enter PC as they are and LADER through their argmax. At test the raw logits
    predict (prior-free); LADE's test-prior option, ``argmax z + log p_test``, is the
    ``+ known prior`` row of ``ltbench report --shift --posthoc`` (docs/metrics.md).
    """

    adjusts_inference = False

    def __init__(self, class_counts, alpha: float = 0.1, remine_lambda: float = 0.01):
        super().__init__()
        if not alpha >= 0 or not remine_lambda >= 0:
            raise ValueError(f"lade alpha and remine_lambda must be >= 0, got {alpha}, {remine_lambda}")
        self.alpha, self.remine_lambda = float(alpha), float(remine_lambda)
        prior = _prior(class_counts)
        self.register_buffer("prior", prior)
        self.register_buffer("log_prior", prior.log())

    def lader(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, c = logits.shape
        member = F.one_hot(labels.long(), c).to(logits.dtype)  # B x C
        n = member.sum(0)
        first = (logits * member).sum(0) / n.clamp(min=1)
        balanced = logits - self.log_prior.to(logits.dtype) - math.log(c)
        second = torch.logsumexp(balanced, dim=0) - math.log(b)
        bound = first - second - self.remine_lambda * second**2
        return -(self.prior.to(logits.dtype) * bound).sum()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pc = _soft_ce(logits + self.log_prior.to(logits.dtype), target)
        labels = target if target.ndim == 1 else target.argmax(1)
        return pc + self.alpha * self.lader(logits, labels)


LAS_SHAPES = ("concave", "linear", "convex")


def label_aware_smoothing(class_counts, smooth_head: float, smooth_tail: float, shape: str = "concave") -> torch.Tensor:
    """MiSLAS's per-class smoothing ``eps_j``: ``smooth_tail`` for the rarest class,
    ``smooth_head`` for the most frequent, between them a function of
    ``x_j = (n_j - n_min) / (n_max - n_min)``: concave ``sin(pi x / 2)``, linear ``x`` or
    convex ``1 - cos(pi x / 2)`` (the released code's three shapes; concave is its default)."""
    if shape not in LAS_SHAPES:
        raise ValueError(f"las shape {shape!r}; use one of {', '.join(LAS_SHAPES)}")
    for v in (smooth_head, smooth_tail):
        if not 0 <= v < 1:
            raise ValueError(f"las smoothing must be in [0, 1), got {v}")
    counts = _counts(class_counts)
    span = counts.max() - counts.min()
    x = (counts - counts.min()) / span if span > 0 else np.ones_like(counts)
    f = {"concave": np.sin(np.pi * x / 2), "linear": x, "convex": 1 - np.cos(np.pi * x / 2)}[shape]
    return torch.as_tensor(smooth_tail + (smooth_head - smooth_tail) * f, dtype=torch.float32)


@LOSSES.register("las")
class LabelAwareSmoothing(torch.nn.Module):
    """Label-aware smoothing: ``L_i = (1 - eps_yi) * (-log p_iyi) + eps_yi * mean_j(-log p_ij)``,
    ``eps`` from :func:`label_aware_smoothing`.

    The target puts ``1 - eps_y + eps_y / C`` on the true class and ``eps_y / C`` on every
    other, as the authors' code computes it; the paper's text spreads ``eps_y`` over the
    other ``C - 1`` classes only. ltbench follows the code. Soft targets ``t`` smooth each
    sample by ``sum_j t_ij eps_j``.
    """

    adjusts_inference = False

    def __init__(self, class_counts, smooth_head: float = 0.3, smooth_tail: float = 0.0, shape: str = "concave"):
        super().__init__()
        self.register_buffer("eps", label_aware_smoothing(class_counts, smooth_head, smooth_tail, shape))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = _soft(target, logits.shape[1], logits.dtype)
        logp = F.log_softmax(logits, dim=1)
        eps = t @ self.eps.to(logits.dtype)
        nll = -(t * logp).sum(1)
        return ((1 - eps) * nll - eps * logp.mean(1)).mean()


@LOSSES.register("cb_softmax_bce")
class ClassBalancedSoftmaxBCE(torch.nn.Module):
    """The class-balanced "softmax" loss of the weight-balancing code (its
    ``utils/class_balanced_loss.py``, after vandit15's port of Cui et al.): binary
    cross-entropy between the softmax probabilities and the one-hot target, each sample
    weighted by its class's effective-number weight :func:`drw_weights` (sum C), averaged over
    the batch and the classes: ``L = mean_ij w_yi * BCE(softmax(z_i)_j, t_ij)``. Cui et al.'s
    text defines the softmax variant as weighted CE (``cb_focal`` with gamma 0); weight
    balancing's stage 2 ran this one, and ltbench follows its code."""

    adjusts_inference = False

    def __init__(self, class_counts, beta: float = 0.9999):
        super().__init__()
        if not 0 <= beta < 1:
            raise ValueError(f"cb_softmax_bce beta must be in [0, 1), got {beta}")
        self.register_buffer("weights", drw_weights(class_counts, beta))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = _soft(target, logits.shape[1], logits.dtype)
        p = logits.softmax(1).clamp(1e-12, 1 - 1e-7)  # BCE's log of 0 and of 1 - 1
        sample_w = (t * self.weights.to(logits.dtype)).sum(1, keepdim=True)
        bce = -(t * p.log() + (1 - t) * (-p).log1p())
        return (sample_w * bce).mean()


# Losses of multi-expert models, imported on first use (they build on the helpers above).
LOSSES.add("ride", "ltbench.training.expert_losses:RIDELoss")
LOSSES.add("sade", "ltbench.training.expert_losses:SADELoss")
# Supervised contrastive losses of two-view batches (model "cnn_contrastive").
LOSSES.add("bcl", "ltbench.training.contrastive_losses:BCLLoss")
LOSSES.add("paco", "ltbench.training.contrastive_losses:PaCoLoss")
# Gaussian clouded logits on a cosine classifier (GCL, both of its stages).
LOSSES.add("gcl", "ltbench.training.gcl_loss:GCLLoss")


def build_loss(name: str, class_counts, **params) -> torch.nn.Module:
    """Build a registered loss for a dataset with the given training counts per class.

    Args:
        name: one of :func:`list_losses` (``ce``, ``la``, ``bce``, ...), an entry point of group
            ``ltbench.losses``, or ``module:attr`` of importable code.
        class_counts: training images per class, in label order; all must be positive.
        **params: the loss's own parameters (e.g. ``tau`` for ``la`` and ``bal_bce``).

    Returns:
        A module whose ``forward(logits, target)`` returns the scalar loss for integer
        labels (B,) or soft targets (B, C).

    Raises:
        ValueError: unknown loss or parameter, or a class with no training image.

    Example:
        >>> loss = build_loss("bal_bce", [500, 50, 5], tau=1.0)
        >>> loss(torch.zeros(2, 3), torch.tensor([0, 2]))
    """
    try:
        cls = check_loss_params(name, params)
    except (UnknownNameError, PluginImportError) as e:
        raise ValueError(str(e)) from e
    return cls(class_counts, **params)


def posthoc_logit_adjust(logits: torch.Tensor, class_counts, tau: float = 1.0) -> torch.Tensor:
    """Post-hoc logit adjustment of a CE-trained model: predict argmax(z - tau * log(pi))."""
    return logits - tau * _prior(class_counts).to(logits.device, logits.dtype).log()
