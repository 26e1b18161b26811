"""Many / medium / few class groups, derived from training counts alone.

Three conventions are in use in the long-tailed literature (see docs/metrics.md):

- ``threshold`` (default, Liu et al. 2019 as most papers report it):
  many > 100, medium 20..100, few < 20 training images.
- ``oltr``: the inclusive boundaries of OLTR's original code, many >= 100, few <= 20.
- ``index``: DeiT-LT's fixed split of frequency-sorted class indices into head / mid / tail
  blocks of given sizes (CIFAR-10 3/4/3, CIFAR-100 36/35/29).

Groups are always recomputed from the stored training-count vector, so any stored run can be
reported under any convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GROUPS = ("many", "medium", "few")
CONVENTIONS = ("threshold", "oltr", "index")


def assign_groups(
    train_counts: Sequence[int],
    convention: str = "threshold",
    index_sizes: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Split classes into many / medium / few.

    Args:
        train_counts: training images per class, in label order.
        convention: one of ``threshold``, ``oltr``, ``index``.
        index_sizes: (head, mid, tail) block sizes, required by ``index``; they must sum to
            the number of classes.

    Returns:
        ``{"many": idx, "medium": idx, "few": idx}``, each a sorted int array of class
        indices (possibly empty).

    Raises:
        ValueError: unknown convention, or missing / inconsistent ``index_sizes``.
    """
    counts = np.asarray(train_counts, dtype=np.int64)
    if convention == "threshold":
        many, few = counts > 100, counts < 20
    elif convention == "oltr":
        many, few = counts >= 100, counts <= 20
    elif convention == "index":
        if index_sizes is None or len(index_sizes) != 3:
            raise ValueError(
                "group convention 'index' needs index_sizes = [head, mid, tail] "
                "(set groups.index_sizes in the dataset recipe)"
            )
        if sum(index_sizes) != len(counts):
            raise ValueError(
                f"index_sizes {list(index_sizes)} sum to {sum(index_sizes)}, but there are {len(counts)} classes"
            )
        # Stable sort so ties keep label order, as a frequency-sorted label map would.
        order = np.argsort(-counts, kind="stable")
        head, mid = index_sizes[0], index_sizes[0] + index_sizes[1]
        return {
            "many": np.sort(order[:head]),
            "medium": np.sort(order[head:mid]),
            "few": np.sort(order[mid:]),
        }
    else:
        raise ValueError(f"unknown group convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    medium = ~many & ~few
    return {
        "many": np.flatnonzero(many),
        "medium": np.flatnonzero(medium),
        "few": np.flatnonzero(few),
    }


def group_sizes(groups: dict[str, np.ndarray]) -> dict[str, int]:
    """Number of classes in each group."""
    return {g: int(len(groups[g])) for g in GROUPS}
