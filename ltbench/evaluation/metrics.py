"""Accuracy and calibration metrics computed from per-class sufficient statistics.

Everything here works on what a record stores (per-class correct/total counts and per-class
calibration bins), never on raw predictions, so metrics can be recomputed for any class group
and any convention long after the run.

Calibration bins: for each class c (the *true* class of a test sample) and each of ``n_bins``
equal-width confidence bins b, ``count[c][b]`` samples, ``conf_sum[c][b]`` summed max-softmax
confidence and ``correct_sum[c][b]`` correct predictions. ECE over a set of classes S is
``sum_b |sum_{c in S} correct_sum - sum_{c in S} conf_sum| / sum_{c in S, b} count``, which is
the usual 15-bin ECE (Guo et al., 2017) restricted to the samples of S.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .groups import GROUPS, assign_groups

N_BINS = 15


def per_class_accuracy(correct: Sequence[int], total: Sequence[int]) -> np.ndarray:
    """Per-class accuracy; a class with no test samples is NaN."""
    correct = np.asarray(correct, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def mean_class_accuracy(correct: Sequence[int], total: Sequence[int]) -> float:
    """Mean per-class accuracy over the classes with test images, computed exactly (as a
    fraction, rounded once): equal scores are equal floats whatever the summation order, so a
    choice by "the first of equal scores" (tau on validation) is the same in every caller."""
    from fractions import Fraction

    pairs = [(int(c), int(t)) for c, t in zip(correct, total) if int(t) > 0]
    if not pairs:
        return 0.0
    return float(sum((Fraction(c, t) for c, t in pairs), Fraction(0)) / len(pairs))


def group_accuracy(correct, total, classes: np.ndarray) -> float | None:
    """Mean of per-class accuracies over ``classes`` (not pooled samples); None if empty."""
    if len(classes) == 0:
        return None
    acc = per_class_accuracy(correct, total)[classes]
    acc = acc[~np.isnan(acc)]
    return float(acc.mean()) if len(acc) else None


def tail_accuracy(correct, total) -> tuple[float | None, float | None]:
    """Worst-class accuracy and the harmonic mean of per-class accuracies (recalls).

    Both run over the classes with test images only; a class with none is ignored. The
    harmonic mean is ``C' / sum_i 1 / acc_i`` over those C' classes, and 0 when any of them
    has accuracy 0. ``(None, None)`` when no class has a test image.
    """
    acc = per_class_accuracy(correct, total)
    acc = acc[~np.isnan(acc)]
    if not len(acc):
        return None, None
    hmean = 0.0 if (acc == 0).any() else float(len(acc) / (1.0 / acc).sum())
    return float(acc.min()), hmean


def ece_from_bins(calib: dict, classes: np.ndarray | None = None) -> float | None:
    """Expected calibration error over the test samples whose true class is in ``classes``."""
    count = np.asarray(calib["count"], dtype=np.float64)
    conf = np.asarray(calib["conf_sum"], dtype=np.float64)
    corr = np.asarray(calib["correct_sum"], dtype=np.float64)
    if classes is not None:
        if len(classes) == 0:
            return None
        count, conf, corr = count[classes], conf[classes], corr[classes]
    n = count.sum()
    if n == 0:
        return None
    return float(np.abs(corr.sum(0) - conf.sum(0)).sum() / n)


def summarize(
    correct,
    total,
    train_counts,
    calib: dict | None = None,
    convention: str = "threshold",
    index_sizes: Sequence[int] | None = None,
) -> dict[str, float | None]:
    """Top-1, many/medium/few accuracy, tail metrics and ECE (overall and per group) as fractions in [0, 1].

    Keys: ``top1``, ``many``, ``medium``, ``few``, ``worst`` (worst-class accuracy) and
    ``hmean`` (harmonic mean of per-class accuracies; see :func:`tail_accuracy`), and with
    ``calib`` also ``ece``, ``ece_many``, ``ece_medium``, ``ece_few``. An empty group maps to None.
    """
    correct = np.asarray(correct)
    total = np.asarray(total)
    groups = assign_groups(train_counts, convention, index_sizes)
    out: dict[str, float | None] = {"top1": float(correct.sum() / max(total.sum(), 1))}
    for g in GROUPS:
        out[g] = group_accuracy(correct, total, groups[g])
    out["worst"], out["hmean"] = tail_accuracy(correct, total)
    if calib is not None:
        calib = {k: np.asarray(calib[k], dtype=np.float64) for k in ("count", "conf_sum", "correct_sum")}
        out["ece"] = ece_from_bins(calib)
        for g in GROUPS:
            out[f"ece_{g}"] = ece_from_bins(calib, groups[g])
    return out


class ClassStats:
    """Accumulates per-class correct/total and calibration bins over evaluation batches.

    Kept on the evaluation device; nothing is copied to the host until :meth:`as_dict`,
    so evaluation has no per-batch synchronisation.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", n_bins: int = N_BINS):
        self.num_classes, self.n_bins = num_classes, n_bins
        z = lambda: torch.zeros(num_classes * n_bins, dtype=torch.float64, device=device)  # noqa: E731
        self.count, self.conf_sum, self.correct_sum = z(), z(), z()

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        probs = logits.float().softmax(dim=1)
        conf, pred = probs.max(dim=1)
        correct = (pred == target).double()
        # Bin b covers (b/n, (b+1)/n]; confidence is >= 1/C > 0, so clamp only guards 1.0.
        bins = (conf * self.n_bins).ceil().long().clamp(1, self.n_bins) - 1
        flat = target * self.n_bins + bins
        self.count.index_add_(0, flat, torch.ones_like(correct))
        self.conf_sum.index_add_(0, flat, conf.double())
        self.correct_sum.index_add_(0, flat, correct)

    def as_dict(self) -> dict:
        """Plain-list form stored in records: correct, total and the calibration bins."""
        shape = (self.num_classes, self.n_bins)
        count = self.count.view(shape).cpu()
        correct_sum = self.correct_sum.view(shape).cpu()
        return {
            "correct": correct_sum.sum(1).round().long().tolist(),
            "total": count.sum(1).round().long().tolist(),
            "calib": {
                "n_bins": self.n_bins,
                "count": count.round().long().tolist(),
                "conf_sum": [[round(v, 6) for v in row] for row in self.conf_sum.view(shape).cpu().tolist()],
                "correct_sum": correct_sum.round().long().tolist(),
            },
        }
