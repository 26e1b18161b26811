"""A real PostgreSQL server for the store's tests: started by scripts/postgres-local.sh if it is
not up, and one fresh database per test, dropped after it.

Import the fixtures into a test module (``from postgres_fixture import postgres_url``).
Where PostgreSQL or psycopg is not installed the tests that need it skip with that reason,
except under CI (the environment variable ``CI`` set), where CI installs both: they fail.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres-local.sh"
NOT_INSTALLED = 3  # the script's exit status when PostgreSQL is not installed


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI installs it (.ci/run), so this is a failure here, not a skip")
    pytest.skip(reason)


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the local test server's ``postgres`` database (started if it is not up)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'ltbench[postgres]')")
    done = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
    if done.returncode == NOT_INSTALLED:
        _unavailable(f"PostgreSQL is not installed: {done.stderr.strip().splitlines()[-1]}")
    if done.returncode != 0:
        pytest.fail(f"scripts/postgres-local.sh start failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def postgres_url(postgres_server: str):
    """A URL of a fresh, empty database of its own for one test; dropped after it."""
    import psycopg

    name = f"ltbench_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield with_database(postgres_server, name)
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request, tmp_path) -> str:
    """A location for a new store, once as a SQLite file and once as a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    return request.getfixturevalue("postgres_url")
