"""The CIFAR-LT long-tail protocol of Cao et al. (LDAM-DRW, NeurIPS 2019), as pure functions.

Class i (label order, class 0 is the head) keeps ``int(n_max * (1/rho) ** (i / (C - 1)))``
images (truncated). The images are chosen as the LDAM code chooses them: for each class in
label order, shuffle that class's indices and keep the first n_i, with NumPy seeded by the
data seed. ltbench draws the same sequence of shuffles from a local ``RandomState`` instead of
seeding NumPy's global RNG, so it selects exactly the same images without the side effect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def longtail_counts(n_max: int, num_classes: int, rho: float, profile: str = "exp") -> list[int]:
    """Training images per class under the ``exp`` or ``step`` profile.

    ``step``: the first C//2 classes keep n_max, the rest ``int(n_max / rho)``.
    """
    if rho < 1:
        raise ValueError(f"imbalance ratio rho must be >= 1, got {rho}")
    if num_classes < 2:
        raise ValueError(f"a long tail needs at least 2 classes, got {num_classes}")
    if profile == "exp":
        return [int(n_max * (1.0 / rho) ** (i / (num_classes - 1))) for i in range(num_classes)]
    if profile == "step":
        half = num_classes // 2
        return [n_max] * half + [int(n_max / rho)] * (num_classes - half)
    raise ValueError(f"unknown long-tail profile {profile!r}; choose 'exp' or 'step'")


def select_longtail(labels: Sequence[int] | np.ndarray, counts: Sequence[int], seed: int) -> np.ndarray:
    """Indices into ``labels`` forming the long-tailed subset, in LDAM's order.

    Raises:
        ValueError: a class has fewer images than its count asks for.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.RandomState(seed)
    chosen = []
    for c, n in enumerate(counts):
        idx = np.where(labels == c)[0]
        if len(idx) < n:
            raise ValueError(f"class {c} has {len(idx)} images, but the long tail asks for {n}")
        rng.shuffle(idx)
        chosen.append(idx[:n])
    return np.concatenate(chosen)


def split_per_class(labels: np.ndarray, test_per_class: int, val_per_class: int, seed: int = 0):
    """Carve a balanced test set and validation set out of each class; the rest is the pool.

    Returns (test_idx, val_idx, pool_idx), each sorted. The split uses its own fixed seed so
    the test set is the same whatever the data seed of the long-tail draw.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.RandomState(seed)
    test, val, pool = [], [], []
    for c in range(int(labels.max()) + 1):
        idx = rng.permutation(np.where(labels == c)[0])
        need = test_per_class + val_per_class
        if len(idx) <= need:
            raise ValueError(f"class {c} has {len(idx)} images; test + val need {need} and leave none to train on")
        test.append(idx[:test_per_class])
        val.append(idx[test_per_class:need])
        pool.append(idx[need:])
    return tuple(np.sort(np.concatenate(p)) for p in (test, val, pool))
