"""Results store: atomic records, round trip, idempotent ingest, concurrent writers, sync.

The store's tests run against both backends (``store_location``: a SQLite file and a fresh
PostgreSQL database); the SQLite file's own behaviour (old layouts, its WAL) is tested once.
"""

import json
import multiprocessing as mp

import pytest

from ltbench.config.record import RECORD_SCHEMA
from ltbench.core.errors import StoreError
from ltbench.store.access import connect_store, open_store, synced_store
from ltbench.store.records import read_record, write_record
from ltbench.store.sqlite import ResultStore


def make_record(run_id="abc", method="ce", seed=0, status="done", top1=0.5):
    return {
        "schema": RECORD_SCHEMA,
        "run_id": run_id,
        "method": method,
        "dataset": "digits_lt",
        "budget": "smoke",
        "seed": seed,
        "data_seed": 0,
        "status": status,
        "error": None,
        "started_at": "2026-11-22T12:00:00+00:00",
        "train_counts": [100, 10],
        "results": {"last": {"epoch": 1, "correct": [9, 1], "total": [10, 10]}},
        "metrics": {"last": {"top1": top1, "many": 0.9, "medium": None, "few": 0.1}},
        "timings": {"train_seconds": 1.5, "eval_seconds": 0.1},
        "provenance": {"ltbench_version": "0.1.0", "git_commit": None, "device": "cpu", "data_fingerprint": "f"},
    }


def plain(record):
    """A stored record with its NumPy vectors back as lists, as in record.json."""
    return json.loads(json.dumps(record, default=lambda a: a.tolist()))


def test_round_trip_and_idempotent_ingest(store_location):
    store = connect_store(store_location)
    rec = make_record()
    rec["results"]["last"]["calib"] = {
        "n_bins": 2,
        "count": [[3, 7], [0, 10]],
        "conf_sum": [[1.25, 6.125], [0.0, 9.000001]],
        "correct_sum": [[2, 7], [0, 1]],
    }
    rec["results"]["last"]["heads"] = {"cls": {"correct": [8, 0], "total": [10, 10]}}
    store.ingest(rec)
    store.ingest(rec)  # same record twice: still one run, one set of metrics
    assert plain(store.get("abc")) == rec
    assert store.status("abc") == "done"
    (got,) = store.records()
    assert plain(got) == rec
    # Per-class vectors come back as arrays (no JSON decoding of long lists), exactly.
    calib = got["results"]["last"]["calib"]
    assert calib["count"].dtype.kind == "i" and calib["count"].shape == (2, 2)
    assert calib["conf_sum"][1, 1] == 9.000001 and calib["n_bins"] == 2
    assert got["results"]["last"]["heads"]["cls"]["correct"].tolist() == [8, 0]
    assert store.records(status=None)[0]["train_counts"] == [100, 10]  # outside results: as stored
    store.ingest(got)  # a record read back (NumPy vectors) ingests again unchanged
    assert plain(store.get("abc")) == rec
    rows = store.summary_rows()
    assert len(rows) == 1
    assert rows[0]["last.top1"] == 0.5 and rows[0]["last.medium"] is None


def test_vectors_that_are_not_plain_numbers_keep_their_values(store_location):
    store = connect_store(store_location)
    rec = make_record()
    rec["results"]["last"]["correct"] = [2**40, 1]  # past int32: kept as integers, exactly
    rec["results"]["last"]["total"] = [[1, 2], [3]]  # ragged: stays JSON
    store.ingest(rec)
    got = store.get("abc")["results"]["last"]
    assert got["correct"].dtype.kind == "i" and got["correct"].tolist() == [2**40, 1]
    assert got["total"] == [[1, 2], [3]]


def test_store_from_before_the_vectors_column_still_reads(tmp_path):  # SQLite only: its first layout
    import sqlite3

    with sqlite3.connect(tmp_path / "s.db") as db:  # the runs table as the first release made it
        db.execute(
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, method TEXT NOT NULL, dataset TEXT NOT NULL,"
            " budget TEXT NOT NULL, seed INTEGER NOT NULL, data_seed INTEGER NOT NULL, status TEXT NOT NULL,"
            " error TEXT, started_at TEXT, finished_at TEXT, train_seconds REAL, eval_seconds REAL,"
            " ltbench_version TEXT, git_commit TEXT, device TEXT, data_fingerprint TEXT, run_dir TEXT,"
            " record TEXT NOT NULL)"
        )
        rec = make_record()
        db.execute(
            "INSERT INTO runs VALUES (" + ",".join("?" * 18) + ")",
            (
                "abc",
                "ce",
                "digits_lt",
                "smoke",
                0,
                0,
                "done",
                None,
                None,
                None,
                1.5,
                0.1,
                None,
                None,
                None,
                None,
                None,
                json.dumps(rec),
            ),
        )
    store = ResultStore(tmp_path / "s.db")
    assert store.records() == [rec]  # the old row: plain JSON lists
    store.ingest(make_record("new"))
    assert {r["run_id"] for r in store.records()} == {"abc", "new"}


def test_reingest_replaces_metrics(store_location):
    store = connect_store(store_location)
    store.ingest(make_record(top1=0.5))
    store.ingest(make_record(top1=0.75))
    assert store.summary_rows()[0]["last.top1"] == 0.75


def test_filters_and_failed_runs(store_location):
    store = connect_store(store_location)
    store.ingest(make_record("a", "ce"))
    store.ingest(make_record("b", "la"))
    store.ingest({**make_record("c", "la", status="failed"), "error": "NonFiniteLoss: nan"})
    assert [r["run_id"] for r in store.records(method="la")] == ["b"]
    assert {r["run_id"] for r in store.records(status=None)} == {"a", "b", "c"}
    with pytest.raises(ValueError, match="cannot filter"):
        store.records(colour="red")


def test_atomic_record_file(tmp_path, store_location):
    rec = make_record()
    path = write_record(rec, tmp_path / "run")
    assert json.loads(path.read_text()) == rec
    assert read_record(tmp_path / "run") == rec
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["record.json"]  # no temp file left
    assert read_record(tmp_path / "nothing") is None
    store = connect_store(store_location)
    assert store.ingest_dirs([tmp_path / "run", tmp_path / "nothing"]) == 1
    assert plain(store.get("abc")) == rec


def test_rejects_unknown_schema(store_location):
    store = connect_store(store_location)
    with pytest.raises(ValueError, match="schema"):
        store.ingest({**make_record(), "schema": 99})
    assert store.records(status=None) == []


def _writer(location, start):
    store = connect_store(location)
    for i in range(start, start + 25):
        store.ingest(make_record(f"run{i}", seed=i))


def test_concurrent_writers_lose_nothing(store_location):
    connect_store(store_location)
    procs = [mp.get_context("spawn").Process(target=_writer, args=(store_location, k * 25)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(connect_store(store_location).records()) == 75


def test_find_status_and_forget(store_location):
    store = connect_store(store_location)
    store.ingest(make_record("abc123"))
    store.ingest(make_record("abd456", status="failed"))
    assert store.find("ABC") == "abc123"  # a prefix, any case
    with pytest.raises(ValueError, match="ambiguous"):
        store.find("ab")
    with pytest.raises(ValueError, match="no run id starts with 'f0'"):
        store.find("f0")
    with pytest.raises(ValueError, match="not a run id"):
        store.find("xyz")
    assert (store.status("abc123"), store.status("abd456"), store.status("none")) == ("done", "failed", None)
    store.forget("abc123")  # its metrics go with it
    assert store.get("abc123") is None and [r["run_id"] for r in store.summary_rows()] == ["abd456"]


def test_records_come_back_oldest_first(store_location):
    store = connect_store(store_location)
    for run_id, started in [("c", "2026-11-22T12:00:02+00:00"), ("a", None), ("b", "2026-11-22T12:00:01+00:00")]:
        store.ingest({**make_record(run_id), "started_at": started})
    assert [r["run_id"] for r in store.records()] == ["a", "b", "c"]  # no start time first, as SQLite sorts


def _finished(run_id, out, status="done", finished="2026-11-22T12:01:00+00:00"):
    run_dir = out / "runs" / "digits_lt" / "ce" / f"smoke-s0-d0-{run_id}"
    record = {**make_record(run_id, status=status), "finished_at": finished, "run_dir": str(run_dir)}
    write_record(record, run_dir)
    return record


def test_sync_ingests_the_finished_folders_the_store_lacks(tmp_path, store_location):
    out = tmp_path / "out"
    store = connect_store(store_location)
    store.ingest(_finished("a1", out))
    _finished("b2", out)  # killed before its ingest
    _finished("c3", out, status="failed")
    unfinished = _finished("d4", out)
    write_record({**unfinished, "finished_at": None}, out / "runs" / "digits_lt" / "ce" / "smoke-s0-d0-d4")
    assert store.sync(out) == 2
    assert store.sync(out) == 0  # nothing new: nothing re-ingested
    assert {r["run_id"]: r["status"] for r in store.summary_rows()} == {"a1": "done", "b2": "done", "c3": "failed"}
    _finished("c3", out, finished="2026-11-22T13:00:00+00:00")  # re-run, now done
    reader = synced_store(store_location, out)  # read-only: written through a second connection
    assert reader.readonly and reader.status("c3") == "done"
    with pytest.raises(StoreError, match="read-only"):
        open_store(store_location).ingest(make_record("e5"))


def test_the_store_keeps_no_connection_open_between_calls(tmp_path):
    """Every call closes its connection: at rest SQLite has folded its WAL back and removed it.
    (A connection left to the garbage collector kept its locks in an unknown state, and another
    process's checkpoint could pull the WAL from under it: "database disk image is malformed".)"""
    from ltbench.store.sqlite import ResultStore

    store = ResultStore(tmp_path / "s.db")
    store.status("nothing")
    store.records()
    assert not (tmp_path / "s.db-wal").exists()
