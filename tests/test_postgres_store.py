"""What is PostgreSQL's own in the store: many writers at once, errors that name the URL without
its password, a missing driver, and `ltbench run` / `results` end to end on a server.

The store's shared behaviour is tested against both backends in tests/test_store.py.
"""

import json
import multiprocessing as mp
import sys

import pytest
from test_store import make_record

from ltbench.cli import main
from ltbench.core.errors import StoreError
from ltbench.store.access import connect_store, open_store
from ltbench.store.postgres import PostgresStore, redact
from ltbench.store.sqlite import ResultStore


def test_a_location_opens_the_store_it_names(tmp_path, postgres_url):
    assert isinstance(connect_store(tmp_path / "s.db"), ResultStore)
    assert isinstance(connect_store(str(tmp_path / "s.db")), ResultStore)
    assert isinstance(connect_store(postgres_url), PostgresStore)
    assert isinstance(connect_store(postgres_url.replace("postgresql://", "postgres://", 1)), PostgresStore)


def test_the_password_never_shows():
    assert redact("postgresql://alice:s3cret@db.lab:5432/ltbench") == "postgresql://alice@db.lab:5432/ltbench"
    assert redact("postgresql://db.lab/ltbench?password=s3cret&sslmode=require") == (
        "postgresql://db.lab/ltbench?sslmode=require"
    )
    assert redact("postgresql://db.lab/ltbench") == "postgresql://db.lab/ltbench"


def _writer(url, prefix, barrier):
    store = PostgresStore(url)
    barrier.wait()  # both start ingesting together
    for i in range(50):
        store.ingest(make_record(f"{prefix}{i:02d}", seed=i, top1=i / 100))
        store.ingest(make_record("shared", top1=0.25))  # the same run from both: upserted, never a clash


def test_two_processes_ingesting_at_once_lose_nothing(postgres_url):
    PostgresStore(postgres_url)  # the tables, as the driver creates them before its workers
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(postgres_url, p, barrier)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    store = open_store(postgres_url)
    rows = {r["run_id"]: r for r in store.summary_rows()}
    assert len(rows) == 101  # 2 x 50 and the shared one
    assert rows["a07"]["last.top1"] == 0.07 and rows["b49"]["last.top1"] == 0.49
    assert all(len([k for k in r if k.startswith("last.")]) == 4 for r in rows.values())  # each run's 4 metrics
    assert store.get("b12")["results"]["last"]["correct"].tolist() == [9, 1]


def test_the_schema_is_the_sqlite_stores(tmp_path, postgres_url):
    import sqlite3

    import psycopg

    PostgresStore(postgres_url)
    ResultStore(tmp_path / "s.db")
    with psycopg.connect(postgres_url) as db:
        columns = db.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ).fetchall()
    with sqlite3.connect(tmp_path / "s.db") as db:
        lite = [(t, row[1]) for t in ("metrics", "runs") for row in db.execute(f"PRAGMA table_info({t})")]
    assert [(t, c) for t, c, _ in columns] == lite  # same tables, same columns, same order
    types = {c: t for table, c, t in columns if table == "runs"}
    assert types["vectors"] == "bytea" and types["train_seconds"] == "double precision"


def test_a_server_that_is_down_names_the_url_without_the_password():
    url = "postgresql://alice:s3cret@127.0.0.1:1/ltbench?connect_timeout=3"
    with pytest.raises(StoreError) as e:
        connect_store(url)
    text = str(e.value)
    assert "postgresql://alice@127.0.0.1:1/ltbench" in text and "s3cret" not in text
    assert "start the server" in text


def test_a_bad_url_and_a_missing_database_say_the_fix(postgres_server):
    with pytest.raises(StoreError, match="postgresql://USER") as e:
        connect_store("postgresql://bob:pw123@127.0.0.1:notaport/x")
    assert "pw123" not in str(e.value)
    missing = postgres_server.rsplit("/", 1)[0] + "/ltbench_no_such_db"
    with pytest.raises(StoreError, match="createdb") as e:
        connect_store(missing)
    assert "ltbench_no_such_db" in str(e.value)


def test_a_database_of_another_program_is_left_untouched(postgres_url):
    import psycopg

    with psycopg.connect(postgres_url) as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, pipeline TEXT)")
    with pytest.raises(StoreError, match="another program .*id, pipeline"):
        PostgresStore(postgres_url)
    with psycopg.connect(postgres_url) as db:
        tables = db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        assert [t for (t,) in tables] == ["runs"]  # no metrics table added


def test_reading_an_empty_database_creates_nothing(postgres_url):
    store = open_store(postgres_url)
    assert (store.records(), store.summary_rows(), store.status("abc"), store.get("abc")) == ([], [], None, None)
    with pytest.raises(StoreError, match="read-only"):
        store.ingest(make_record())
    assert open_store(postgres_url)._empty  # still no tables


def test_without_psycopg_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now raises ImportError
    with pytest.raises(StoreError, match=r"pip install 'ltbench\[postgres\]'"):
        connect_store("postgresql://db.lab/ltbench")


def test_ltbench_run_and_results_on_a_server(tmp_path, postgres_url, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `results` without --runs syncs ./results (a URL has no folder)
    out = tmp_path / "out"
    args = ["run", "--methods", "ce", "--data", "digits_lt", "--budget", "smoke", "--set", "epochs=1"]
    assert main([*args, "--store", postgres_url, "--out", str(out)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["results", "--json", "--store", postgres_url]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["method"], row["dataset"], row["status"]) == ("ce", "digits_lt", "done")
    assert 0.0 <= row["last.top1"] <= 1.0
    record = json.loads(next(out.rglob("ce/*/record.json")).read_text())
    assert record["run_id"] == row["run_id"] and record["metrics"]["last"]["top1"] == row["last.top1"]
    assert (out / "ltbench.db").exists() is False  # nothing went to a SQLite file
    # The same command again: the server says it is done, nothing retrains.
    assert main([*args, "--store", postgres_url, "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().err
    assert main(["show", row["run_id"][:8], "--store", postgres_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lineage"]["status"] == "done"
    # A password (the test server trusts any) is used, never printed.
    with_password = postgres_url.replace("postgres@", "postgres:pw-not-shown@", 1)
    assert main(["results", "--store", with_password]) == 0
    shown = capsys.readouterr()
    assert "ce" in shown.out and "pw-not-shown" not in shown.out + shown.err


def test_a_connection_the_server_dropped_is_replaced(postgres_url, postgres_server, monkeypatch):
    import psycopg

    store = PostgresStore(postgres_url)
    store.ingest(make_record("abc"))
    with psycopg.connect(postgres_server, autocommit=True) as admin:  # as a server restart does
        (killed,) = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (postgres_url.rsplit("/", 1)[1],),
        ).fetchone()
    assert killed == 1
    monkeypatch.setattr(PostgresStore, "check_after", 0.0)
    assert store.status("abc") == "done"  # checked, found dead, connected again


def test_a_store_sent_to_another_process_connects_there(postgres_url):
    import pickle

    store = PostgresStore(postgres_url)
    store.ingest(make_record("abc"))
    again = pickle.loads(pickle.dumps(store))
    assert again.status("abc") == "done" and again.path == store.path


def test_the_server_script_says_when_postgresql_is_missing(tmp_path):
    import os
    import subprocess

    from postgres_fixture import NOT_INSTALLED, SCRIPT

    env = {**os.environ, "POSTGRES_LOCAL_BIN": str(tmp_path / "nothing"), "POSTGRES_LOCAL_DIR": str(tmp_path / "pg")}
    done = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == NOT_INSTALLED and "apt-get install postgresql" in done.stderr
    assert not (tmp_path / "pg" / "data").exists()
    url = subprocess.run(
        ["bash", str(SCRIPT), "url"], capture_output=True, text=True, env={**env, "POSTGRES_LOCAL_PORT": "5999"}
    )
    assert url.stdout.strip() == "postgresql://postgres@127.0.0.1:5999/postgres"


def _login(url: str, user: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{user}@{parts.hostname}:{parts.port}", parts.path, parts.query, ""))


def test_lab_members_who_do_not_own_the_tables_write_and_read_only_logins_read(postgres_url, tmp_path):
    """The tables' owner creates them once; a member granted rows only still ingests, and a
    login that may only read gets the store and a note (no traceback) for what it cannot sync."""
    import uuid

    import psycopg

    owner = PostgresStore(postgres_url)
    owner.ingest(make_record("r1"))
    member, reader = f"member_{uuid.uuid4().hex[:8]}", f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for role in (member, reader):
            admin.execute(f'CREATE ROLE "{role}" LOGIN')
            admin.execute(f'REVOKE CREATE ON SCHEMA public FROM "{role}"')
        admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON runs, metrics TO "{member}"')
        admin.execute(f'GRANT SELECT ON runs, metrics TO "{reader}"')
    try:
        writer = PostgresStore(_login(postgres_url, member))
        writer.ingest(make_record("r2"))
        assert sorted(r["run_id"] for r in writer.records()) == ["r1", "r2"]
        writer.close()
        out = tmp_path / "out"
        write_runs_folder(out, make_record("r3"))
        read = PostgresStore(_login(postgres_url, reader), readonly=True)
        assert read.sync(out) == 0 and "cannot write" in read.notes[0]
        assert sorted(r["run_id"] for r in read.records()) == ["r1", "r2"]
        read.close()
        with pytest.raises(StoreError, match="grant this login"):
            PostgresStore(_login(postgres_url, reader)).ingest(make_record("r4"))
    finally:
        owner.close()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            for role in (member, reader):
                admin.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
                admin.execute(f'DROP OWNED BY "{role}"')
                admin.execute(f'DROP ROLE "{role}"')


def write_runs_folder(out, record):
    from ltbench.store.records import write_record

    run_dir = out / "runs" / record["dataset"] / record["method"] / f"quick-s0-d0-{record['run_id']}"
    write_record({**record, "run_dir": str(run_dir), "finished_at": "2026-11-22T13:00:00+00:00"}, run_dir)
