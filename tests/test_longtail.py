"""The CIFAR-LT protocol: counts, LDAM-identical image selection, no global RNG use."""

import numpy as np
import pytest

from ltbench.data.longtail import longtail_counts, select_longtail, split_per_class

# Train totals from FACTS.md (LDAM protocol), C10 n_max 5000 and C100 n_max 500.
TOTALS = {
    (10, 10): 20431,
    (10, 50): 13996,
    (10, 100): 12406,
    (10, 200): 11203,
    (100, 10): 19573,
    (100, 50): 12608,
    (100, 100): 10847,
    (100, 200): 9502,
}


@pytest.mark.parametrize(("classes", "rho"), sorted(TOTALS))
def test_cifar_lt_totals(classes, rho):
    n_max = 5000 if classes == 10 else 500
    assert sum(longtail_counts(n_max, classes, rho)) == TOTALS[classes, rho]


def test_cifar10_rho100_per_class():
    assert longtail_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_step_profile():
    assert longtail_counts(500, 4, 10, "step") == [500, 500, 50, 50]


def test_bad_profile_and_rho():
    with pytest.raises(ValueError, match="profile"):
        longtail_counts(10, 3, 2, "linear")
    with pytest.raises(ValueError, match="rho"):
        longtail_counts(10, 3, 0.5)


def _ldam_reference(labels, counts, seed):
    """What LDAM's IMBALANCECIFAR does, global RNG and all."""
    np.random.seed(seed)
    out = []
    for c, n in enumerate(counts):
        idx = np.where(labels == c)[0]
        np.random.shuffle(idx)
        out.append(idx[:n])
    return np.concatenate(out)


def test_selection_matches_ldam_code():
    labels = np.repeat(np.arange(10), 50)
    np.random.default_rng(1).shuffle(labels)
    counts = longtail_counts(50, 10, 10)
    state = np.random.get_state()
    try:
        expected = _ldam_reference(labels, counts, seed=3)
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(select_longtail(labels, counts, seed=3), expected)


def test_selection_ignores_and_keeps_global_rng():
    labels = np.repeat(np.arange(5), 20)
    counts = longtail_counts(20, 5, 5)
    np.random.seed(123)
    a = select_longtail(labels, counts, 0)
    after = np.random.rand()
    np.random.seed(999)
    np.random.rand(17)  # something else drew from the global RNG first
    b = select_longtail(labels, counts, 0)
    np.testing.assert_array_equal(a, b)
    np.random.seed(123)
    assert np.random.rand() == after  # select_longtail drew nothing from the global RNG
    assert not np.array_equal(a, select_longtail(labels, counts, 1))


def test_class_too_small():
    with pytest.raises(ValueError, match="class 1 has 3 images"):
        select_longtail(np.array([0, 0, 0, 0, 1, 1, 1]), [4, 4], 0)


def test_split_per_class_is_balanced_disjoint_and_fixed():
    labels = np.repeat(np.arange(3), 10)
    test, val, pool = split_per_class(labels, 4, 2, seed=0)
    assert np.bincount(labels[test]).tolist() == [4, 4, 4]
    assert np.bincount(labels[val]).tolist() == [2, 2, 2]
    assert np.bincount(labels[pool]).tolist() == [4, 4, 4]
    assert len(set(test) | set(val) | set(pool)) == 30
    np.testing.assert_array_equal(test, split_per_class(labels, 4, 2, seed=0)[0])
    with pytest.raises(ValueError, match="leave none"):
        split_per_class(labels, 8, 2)
