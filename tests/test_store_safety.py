"""Where the store is written when many jobs finish at once: jobs write only their run folders
(record, journal entry), one process ingests, and a process killed mid-ingest leaves a store
that is intact and complete after the next sync."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_local import needs_slurm

from ltbench.bench import synthetic_record
from ltbench.store import sync as sync_module
from ltbench.store.access import synced_store
from ltbench.store.records import JOURNAL, write_record
from ltbench.store.sqlite import ResultStore


def _run_dir(out: Path, i: int, run_id: str | None = None) -> Path:
    """Where ltbench puts run ``i``: ``<budget>-s<seed>-d<data seed>-<run id[:10]>``."""
    run_id = run_id or synthetic_record(i, 2)["run_id"]
    return out / "runs" / "synthetic" / f"m{i % 10}" / f"quick-s{i // 10}-d0-{run_id[:10]}"


def write_runs(out: Path, n: int, classes: int = 10) -> list[dict]:
    records = []
    for i in range(n):
        record = synthetic_record(i, classes)
        run_dir = _run_dir(out, i, record["run_id"])
        record["run_dir"] = str(run_dir)
        write_record(record, run_dir)
        records.append(record)
    return records


def _store_file(out: Path) -> Path:
    db = out / "ltbench.db"
    ResultStore(db)  # an empty store, as `ltbench run` makes
    return db


def test_a_finished_record_has_one_journal_entry_naming_its_folder(tmp_path):
    (record,) = write_runs(tmp_path, 1)
    journal = tmp_path / "runs" / JOURNAL
    (entry,) = journal.iterdir()
    assert entry.name.startswith(record["run_id"] + "~")
    assert entry.read_text() == f"synthetic/m0/quick-s0-d0-{record['run_id'][:10]}"
    again = {**record, "finished_at": "2026-02-01T00:00:00+00:00"}  # a forced re-run
    write_record(again, Path(record["run_dir"]))
    (entry,) = journal.iterdir()  # the earlier entry is gone
    assert entry.name == f"{record['run_id']}~20260201T0000000000"


def test_a_sync_of_a_store_that_holds_every_run_reads_no_record(tmp_path, monkeypatch):
    write_runs(tmp_path, 60)
    db = synced_store(_store_file(tmp_path))
    assert len(db.records()) == 60

    def no_reading(path):
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(sync_module, "_finished_record", no_reading)
    assert synced_store(tmp_path / "ltbench.db").sync(tmp_path) == 0


def test_a_newer_record_of_a_stored_run_is_synced_again(tmp_path):
    (record,) = write_runs(tmp_path, 1)
    db = ResultStore(_store_file(tmp_path))
    failed = {**record, "status": "failed", "error": "x"}
    db.ingest(failed)
    newer = {**record, "finished_at": "2027-01-01T00:00:00+00:00"}
    write_record(newer, Path(record["run_dir"]))
    assert db.sync(tmp_path) == 1 and db.status(record["run_id"]) == "done"


def test_folders_the_journal_does_not_list_are_walked(tmp_path):
    write_runs(tmp_path, 5)
    db = ResultStore(_store_file(tmp_path))
    assert db.sync(tmp_path) == 5
    copy = _run_dir(tmp_path, 99, "c" * 64)
    shutil.copytree(_run_dir(tmp_path, 0), copy)  # copied in by hand: no journal entry
    record = json.loads((copy / "record.json").read_text())
    record.update(run_id="c" * 64, run_dir=str(copy))
    (copy / "record.json").write_text(json.dumps(record))
    assert db.sync(tmp_path) == 1 and db.status("c" * 64) == "done"


def test_an_entry_whose_record_is_not_written_yet_is_left_for_later(tmp_path):
    write_runs(tmp_path, 3)
    (tmp_path / "runs" / JOURNAL / f"{'d' * 64}~20260101T0000").write_text("synthetic/m9/not-yet")
    db = synced_store(_store_file(tmp_path))
    assert len(db.records()) == 3


def test_a_run_without_a_store_writes_its_folder_and_opens_no_store(tmp_path, catalog):
    from ltbench.execution.runner import execute_run
    from ltbench.planning.sweep import plan_runs

    (spec,) = plan_runs(["ce"], ["digits_lt"], "smoke", [0], overrides=["epochs=1"], out_dir=tmp_path)
    record = execute_run(spec, None, "cpu")
    assert record["status"] == "done" and not list(tmp_path.rglob("*.db"))
    assert (spec.run_dir / "record.json").is_file()
    (entry,) = (tmp_path / "runs" / JOURNAL).iterdir()
    assert entry.name.startswith(spec.run_id)
    again = execute_run(spec, None, "cpu")  # done: what its folder says, nothing trained
    assert again["skipped"] and again["finished_at"] == record["finished_at"]


def _check_intact(db_path: Path, records_by_id: dict) -> int:
    """The store passes SQLite's integrity check and every run it holds has all its metrics."""
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT run_id, (SELECT count(*) FROM metrics m WHERE m.run_id = r.run_id) FROM runs r")
        held = dict(rows.fetchall())
    for run_id, metrics in held.items():
        assert metrics == sum(len(m) for m in records_by_id[run_id]["metrics"].values())
    return len(held)


_INGEST = """
import sys
from pathlib import Path
from ltbench.store.sqlite import ResultStore
from ltbench.store.records import read_record
db = ResultStore(sys.argv[1])
for i, path in enumerate(sorted(Path(sys.argv[2]).glob("runs/*/*/*"))):
    db.ingest(read_record(path))
    if i == 0:
        print("ingesting", flush=True)
"""


@pytest.mark.slow
def test_an_ingest_killed_midway_leaves_an_intact_store_that_the_next_sync_completes(tmp_path):
    records = {r["run_id"]: r for r in write_runs(tmp_path, 400)}
    db_path = tmp_path / "ltbench.db"
    held = []
    for pause in (0.05, 0.1, 0.3):  # each ingest starts over (replacing what is held) and is killed
        proc = subprocess.Popen(
            [sys.executable, "-c", _INGEST, str(db_path), str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ingesting"
        time.sleep(pause)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        held.append(_check_intact(db_path, records))
    assert 0 < held[0] < 400, held  # the kill landed mid-ingest
    db = synced_store(db_path)  # the next command that reads the store
    assert _check_intact(db_path, records) == 400 and len(db.records()) == 400


@pytest.mark.slow
@needs_slurm
def test_a_slurm_sweep_whose_driver_and_jobs_are_killed_leaves_a_complete_store(tmp_path):
    """The driver following a SLURM sweep is killed with SIGKILL once a first run has finished,
    and the jobs still running are killed too: the store is intact, holds every record the
    folders have after the next sync, and the same command finishes the sweep."""
    out, store = tmp_path / "out", tmp_path / "ltbench.db"
    run = [sys.executable, "-m", "ltbench", "run", "--methods", "ce,la,bce", "--data", "digits_lt"]
    run += ["--budget", "smoke", "--store", str(store), "--out", str(out), "--executor", "slurm"]
    run += ["--cpus-per-job", "1", "--max-parallel", "1", "--time-min", "10"]  # one job at a time
    driver = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(out.rglob("record.json")) and time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert list(out.rglob("record.json")), driver.stderr.read() if driver.poll() is not None else "no run finished"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    jobs = [json.loads(p.read_text())["job_id"] for p in out.rglob("job.json")]
    subprocess.run(["scancel", "--signal=KILL", "--full", *jobs], capture_output=True)
    while subprocess.run(["squeue", "-h", "-j", ",".join(jobs)], capture_output=True, text=True).stdout.strip():
        time.sleep(1.0)
    finished = {json.loads(p.read_text())["run_id"] for p in out.rglob("record.json")}
    db = synced_store(store, out)  # the next command that reads the store
    with sqlite3.connect(store) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert {r["run_id"] for r in db.records()} == finished  # complete: every finished folder
    assert 1 <= len(finished) < 3  # the kill left work undone
    again = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert sorted(r["method"] for r in synced_store(store, out).records()) == ["bce", "ce", "la"]


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_run_finished_with_nobody_ingesting_it_is_skipped_by_the_next_run(tmp_path, catalog, executor):
    """As after `--no-wait`: a job wrote its folder, no driver ingested it; `ltbench run` of the
    same sweep finds it in the journal and skips it instead of starting it (or a job) again."""
    from ltbench import api
    from ltbench.execution.runner import execute_run
    from ltbench.planning.sweep import plan_runs

    (spec,) = plan_runs(["ce"], ["digits_lt"], "smoke", [0], overrides=["epochs=1"], out_dir=tmp_path)
    first = execute_run(spec, None, "cpu")
    (record,) = api.run(
        methods=["ce"], data=["digits_lt"], budget="smoke", overrides=["epochs=1"], out_dir=tmp_path,
        store=tmp_path / "ltbench.db", jobs=1, executor=executor,
    )  # fmt: skip
    assert record["skipped"] and record["finished_at"] == first["finished_at"]
    assert not list((tmp_path / "jobs").glob("*_submitted.pkl"))  # no job started for it
    assert ResultStore(tmp_path / "ltbench.db").status(spec.run_id) == "done"


def test_a_stale_entry_does_not_hide_a_folder_copied_in(tmp_path):
    """A run folder deleted by hand leaves its journal entry; a folder copied in has none: the
    copy is still found (folders are matched to entries by name, not counted)."""
    records = write_runs(tmp_path, 4)
    db = ResultStore(_store_file(tmp_path))
    assert db.sync(tmp_path) == 4
    shutil.rmtree(records[3]["run_dir"])  # its entry stays
    copy = _run_dir(tmp_path, 99, "e" * 64)
    shutil.copytree(records[0]["run_dir"], copy)
    record = json.loads((copy / "record.json").read_text())
    record.update(run_id="e" * 64, run_dir=str(copy))
    (copy / "record.json").write_text(json.dumps(record))
    assert db.sync(tmp_path) == 1 and db.status("e" * 64) == "done"
    assert db.sync(tmp_path) == 0  # held as done now: not read again


def test_a_folder_without_a_record_costs_one_look_not_a_walk(tmp_path, monkeypatch):
    write_runs(tmp_path, 30)
    db = ResultStore(_store_file(tmp_path))
    db.sync(tmp_path)
    (tmp_path / "runs" / "synthetic" / "m0" / "quick-s9-d0-ffffffffff").mkdir()  # a run still going
    looked = []
    real = sync_module._finished_record
    monkeypatch.setattr(sync_module, "_finished_record", lambda path: looked.append(path) or real(path))
    assert db.sync(tmp_path) == 0
    assert [p.parent.name for p in looked] == ["quick-s9-d0-ffffffffff"]
