import os

import pytest
import torch

from ltbench.config.run_config import resolve
from ltbench.data import build_data
from ltbench.planning.catalog import load_catalog

# `ltbench run` trains runs side by side in worker processes by default; tests that go
# through the CLI keep them in this process (where fixtures and monkeypatches apply), and
# the pool's own tests ask for workers explicitly.
os.environ.setdefault("LTBENCH_JOBS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tests train tiny models: one thread is faster and leaves the other core to xdist/CI.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture
def smoke_config(catalog):
    """A smoke-budget config on digits_lt; pass overrides to tune it."""

    def make(method="ce", *overrides, seed=0, data_seed=0):
        return resolve(
            catalog.methods.get(method), catalog.datasets.get("digits_lt"), "smoke", seed, data_seed, tuple(overrides)
        )

    return make


@pytest.fixture(scope="session")
def digits(catalog):
    """digits_lt (real 8x8 digits from scikit-learn), data seed 0."""
    return build_data(catalog.datasets.get("digits_lt"), 0)


# A real PostgreSQL server for the store's tests (postgres_url: a fresh database per test;
# store_location: a SQLite file and a PostgreSQL database); see tests/postgres_fixture.py.
from postgres_fixture import postgres_server, postgres_url, store_location  # noqa: E402, F401
