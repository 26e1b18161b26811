"""What a sweep shows (plain lines off a terminal, live bars in one), runs side by side in
worker processes, and the trackers' files read back."""

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

import ltbench
from ltbench.execution.pool import run_cost, schedule_order
from ltbench.execution.progress import LiveReporter, PlainReporter, epoch_line, finished_line
from ltbench.planning.sweep import Sweep

EPOCH = re.compile(r"^\[(\S+) on digits_lt smoke s(\d)\] epoch (\d+)/(\d+) loss \d+\.\d{3} val \d+\.\d% \d+\.\d s$")


def _cli(args, tmp_path, env=None, **kw):
    """`ltbench ARGS` in a subprocess with stdout and stderr going to files, as under nohup."""
    err, out = tmp_path / "stderr.log", tmp_path / "stdout.log"
    with err.open("w") as e, out.open("w") as o:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ltbench", *args], stdout=o, stderr=e, env={**os.environ, **(env or {})}, **kw
        )
    return proc, err, out


def _smoke(out, methods, **kw):
    """``ltbench.run`` of ``methods`` on digits_lt, smoke budget, quietly, into ``out``."""
    return ltbench.run(
        methods=methods, data=["digits_lt"], budget="smoke", out_dir=out, store=Path(out) / "s.db",
        console=Console(quiet=True), **kw
    )  # fmt: skip


def test_a_sweep_logged_to_a_file_has_a_line_per_epoch_and_an_uncut_table(tmp_path):
    # Two workers (the default on a CPU is one per core), stderr to a file.
    proc, err, _ = _cli(
        ["run", "--methods", "ce,la", "--data", "digits_lt", "--budget", "smoke", "--set", "epochs=3"]
        + ["--out", str(tmp_path / "out"), "--store", str(tmp_path / "s.db"), "--jobs", "2"],
        tmp_path,
    )
    assert proc.wait(timeout=600) == 0, err.read_text()
    lines = err.read_text().splitlines()
    epochs = [m.groups() for m in map(EPOCH.match, lines) if m]
    assert sorted((method, int(e)) for method, _, e, total in epochs) == [
        (m, e) for m in ("ce", "la") for e in (1, 2, 3)
    ]
    assert all(total == "3" for *_, total in epochs)
    done = [line for line in lines if re.match(r"^\[(ce|la) on digits_lt smoke s0\] done in \d+ s: all \d+\.\d%", line)]
    assert len(done) == 2
    # The summary is a Markdown table at full width: every cell there, nothing cut.
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["method", "seed", "many", "med", "few", "all", "all@val", "ECE", "train s", "status"]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in table[2:]}
    assert set(rows) == {"ce", "la"} and all(len(r) == len(header) for r in rows.values())
    assert "…" not in err.read_text()
    for row in ltbench.results(tmp_path / "s.db"):
        assert rows[row["method"]][5] == f"{100 * row['last.top1']:.1f}"


def test_worker_runs_give_the_numbers_of_this_process(tmp_path):
    """One thread per run in a worker or here: the same run, the same numbers, bit for bit."""
    here = _smoke(tmp_path / "a", ["ce", "la"], jobs=1, threads=1)
    pooled = _smoke(tmp_path / "b", ["ce", "la"], jobs=2, threads=1)
    assert [r["run_id"] for r in here] == [r["run_id"] for r in pooled]
    for a, b in zip(here, pooled):
        assert a["metrics"] == b["metrics"]
        assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


@pytest.fixture
def spawned(monkeypatch):
    """The thread count of each worker spawned, prestarted or not."""
    from ltbench.execution import pool

    calls, spawn = [], pool._spawn

    def counted(ctx, threads, events):
        calls.append(threads)
        return spawn(ctx, threads, events)

    monkeypatch.setattr(pool, "_spawn", counted)
    yield calls
    pool.release_prestarted()


def _prestarted_processes():
    from ltbench.execution import pool

    return [w[0] for w in pool._prestarted.get("workers", [])]


def test_prestarted_workers_train_the_runs_and_a_spare_one_leaves(tmp_path, spawned):
    from ltbench.execution import pool

    assert pool.prestart(3, 1, "cpu") == 3 and spawned == [1, 1, 1]
    processes = _prestarted_processes()
    records = _smoke(tmp_path, ["ce", "la"], jobs=2, threads=1)
    assert {r["status"] for r in records} == {"done"}
    assert spawned == [1, 1, 1] and _prestarted_processes() == []  # two took the runs, the third was let go
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0


def test_prestarted_workers_with_other_threads_are_let_go(tmp_path, spawned):
    from ltbench.execution import pool

    assert pool.prestart(2, 2, "cpu") == 2 and spawned == [2, 2]
    processes = _prestarted_processes()
    assert {r["status"] for r in _smoke(tmp_path, ["ce", "la"], jobs=2, threads=1)} == {"done"}
    assert spawned == [2, 2, 1, 1]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0


def test_nothing_is_prestarted_for_one_job_or_a_device_that_may_be_a_gpu():
    from ltbench.execution import pool

    assert pool.prestart(1, 1, "cpu") == 0
    assert pool.prestart(2, 1, "cuda") == 0
    kept = len(pool._let_go)
    pool.release_prestarted()  # nothing to let go: nothing kept
    assert len(pool._let_go) == kept
    one_per_core = min(pool._cpu_count(), pool.PRESTART_MAX)
    assert pool.prestart(None, 1, "cpu") == (one_per_core if one_per_core > 1 else 0)
    pool.release_prestarted()
    assert pool._prestarted == {}


def test_making_a_plan_imports_neither_timm_nor_the_training_loop():
    # The driver plans while its workers import those (seconds of CPU each on a small machine).
    code = (
        "import sys; from ltbench.planning.sweep import Sweep; "
        "specs = Sweep.of(methods=None, data=['mnist_lt'], budget='quick').plan(); "
        "print(len(specs), sorted(m for m in ('timm', 'torchvision', 'ltbench.training.loop') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) > 10 and out[1:] == ["[]"]


def test_a_stage_trains_before_the_runs_that_consume_it(tmp_path):
    records = _smoke(tmp_path, ["deit_lt", "ce"], jobs=2, threads=1)
    by_method = {r["method"]: r for r in records}
    assert {r["status"] for r in records} == {"done"}
    teacher, student = by_method["cnn_ldam_drw_sam"], by_method["deit_lt"]
    assert teacher["finished_at"] <= student["started_at"]
    assert student["needs"]["teacher"] == teacher["run_id"]


def test_schedule_puts_the_longest_chain_first(catalog):
    specs = Sweep.of(methods=["ce", "cnn_ce", "deit_lt"], data=["digits_lt"], budget="quick").plan()
    order = [s.config.method.name for s in schedule_order(specs)]
    # The DeiT-LT teacher heads the longest chain (its own SAM epochs, then the student's).
    assert order[0] == "cnn_ldam_drw_sam"
    assert order.index("ce") < order.index("cnn_ce")  # 80 epochs before 30
    assert run_cost(specs[[s.config.method.name for s in specs].index("cnn_ldam_drw_sam")]) == 2 * 30


def test_plain_lines_name_the_run_and_its_numbers():
    row = {"epoch": 12, "train_loss": 0.41234, "val_top1": 0.81, "seconds": 0.61}
    assert epoch_line("ce on mnist_lt s0", 12, 80, row) == "[ce on mnist_lt s0] epoch 12/80 loss 0.412 val 81.0% 0.6 s"
    record = {
        "status": "done",
        "metrics": {
            "last": {"top1": 0.786, "many": 0.965, "medium": 0.85, "few": 0.483},
            "best_val": {"top1": 0.793},
        },
        "timings": {"total_seconds": 70.2},
    }
    assert finished_line("ce on mnist_lt s0", record) == (
        "[ce on mnist_lt s0] done in 70 s: all 78.6% (many 96.5, medium 85.0, few 48.3), best-on-val 79.3%"
    )
    failed = {"status": "failed", "error": "NonFiniteLoss: training loss is nan at epoch 3"}
    assert finished_line("x", failed) == "[x] failed: NonFiniteLoss: training loss is nan at epoch 3"


def test_plain_reporter_can_thin_its_epoch_lines():
    class Spec:
        run_id = "abc"

    stream = io.StringIO()
    reporter = PlainReporter(stream, every=5)
    spec = Spec()
    spec.config = Sweep.of(methods=["ce"], data=["digits_lt"], budget="smoke").plan()[0].config
    for epoch in range(1, 12):
        reporter.epoch(spec, epoch, 11, {"train_loss": 1.0, "val_top1": None, "seconds": 0.1})
    assert [int(re.search(r"epoch (\d+)/", line).group(1)) for line in stream.getvalue().splitlines()] == [5, 10, 11]


def test_the_live_table_grows_as_runs_finish(tmp_path):
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=160)
    records = _smoke(tmp_path, ["ce", "la"])
    specs = Sweep.of(methods=["ce", "la"], data=["digits_lt"], budget="smoke", out_dir=tmp_path).plan()
    with LiveReporter(console, 2) as live:
        live.run_started(specs[0])
        live.run_finished(specs[0], records[0])
        assert [r["method"] for r in live.progress.done_records] == ["ce"]
        drawn = io.StringIO()
        Console(file=drawn, width=160).print(*live.progress.get_renderables())
        live.run_finished(specs[1], records[1])
        assert [r["method"] for r in live.progress.done_records] == ["ce", "la"]
    # While the sweep runs, the finished runs' table is drawn above the bars.
    text = drawn.getvalue()
    assert "all@val" in text and re.search(r"\bce\b", text) and not re.search(r"\bla\b", text)
    assert f"{100 * records[0]['metrics']['last']['top1']:.1f}" in text


@pytest.mark.slow
def test_results_shows_finished_runs_while_the_sweep_still_runs(tmp_path):
    store, out = tmp_path / "s.db", tmp_path / "out"
    proc, err, _ = _cli(
        ["run", "--methods", "ce,la", "--data", "digits_lt", "--budget", "smoke", "--set", "la.epochs=400"]
        + ["--out", str(out), "--store", str(store), "--jobs", "2"],
        tmp_path,
    )
    try:
        deadline, seen = time.monotonic() + 300, []
        while time.monotonic() < deadline and proc.poll() is None:
            if store.is_file():
                seen = [r["method"] for r in ltbench.results(store, runs=out)]
                if seen:
                    break
            time.sleep(1)
        assert seen == ["ce"], err.read_text()
        assert proc.poll() is None  # la is still training
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_gets_every_epoch_and_the_final_numbers(tmp_path):
    (record,) = _smoke(tmp_path, ["ce"], overrides=["epochs=3"], log=["tensorboard"])
    (folder,) = (tmp_path / "tensorboard" / "ce").iterdir()
    assert folder.name.endswith(record["run_id"][:8])
    scalars = _tb_scalars(folder)
    history = record["history"]
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([h["train_loss"] for h in history], rel=1e-6)
    assert [v for _, v in scalars["train/lr"]] == pytest.approx([h["lr"] for h in history], rel=1e-6)
    assert [v for _, v in scalars["val/top1"]] == pytest.approx([100 * h["val_top1"] for h in history], rel=1e-6)
    for key in ("top1", "many", "medium", "few"):
        assert scalars[f"test/{key}"][0][1] == pytest.approx(100 * record["metrics"]["last"][key], rel=1e-6)


def test_tensorboard_replays_runs_that_trained_elsewhere(tmp_path):
    """A record from another process (a SLURM job) reaches the tracker with its whole history."""
    from ltbench.execution.trackers import TensorBoardTracker

    (record,) = _smoke(tmp_path, ["ce"])
    (spec,) = Sweep.of(methods=["ce"], data=["digits_lt"], budget="smoke", out_dir=tmp_path).plan()
    tracker = TensorBoardTracker(tmp_path / "replay")
    tracker.run_finished(spec, record)
    (folder,) = (tmp_path / "replay" / "tensorboard" / "ce").iterdir()
    scalars = _tb_scalars(folder)
    assert [s for s, _ in scalars["train/loss"]] == [h["epoch"] for h in record["history"]]
    tracker.run_finished(spec, {**record, "skipped": True})  # an already-done run is not logged twice
    assert len(list((tmp_path / "replay" / "tensorboard" / "ce").iterdir())) == 1


def _wandb_records(run_file: Path):
    """The protobuf records of a W&B ``.wandb`` file: a 7-byte header (``:W&B``, magic,
    version), then LevelDB-log records (crc32, length, type) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data, block, out, pending = run_file.read_bytes(), 32768, [], b""
    assert data[:4] == b":W&B"
    pos = 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _wandb_history(run_file: Path) -> tuple[list[dict], dict, dict]:
    rows, config, summary = [], {}, {}
    for rec in _wandb_records(run_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item}
            )
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in rec.config.update})
        elif kind == "run":
            config.update({item.key: json.loads(item.value_json) for item in rec.run.config.update})
        elif kind == "summary":
            summary.update(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.summary.update}
            )
    return rows, config, summary


@pytest.mark.slow
def test_wandb_offline_gets_every_epoch_the_config_and_the_lineage(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    records = _smoke(tmp_path, ["deit_lt"], log=["wandb"])
    student = next(r for r in records if r["method"] == "deit_lt")
    files = list((tmp_path / "wandb").rglob(f"run-{student['run_id'][:32]}.wandb"))
    assert len(files) == 1, list((tmp_path / "wandb").rglob("*.wandb"))
    rows, config, summary = _wandb_history(files[0])
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert losses == pytest.approx([h["train_loss"] for h in student["history"]], rel=1e-6)
    assert config["run_id"] == student["run_id"]
    assert config["lineage"] == {"teacher": student["needs"]["teacher"]}
    assert summary["test/top1"] == pytest.approx(100 * student["metrics"]["last"]["top1"])
    assert not any(Path.cwd().glob("wandb"))  # nothing outside --out


def test_workers_end_when_their_driver_is_killed(tmp_path):
    """kill -9 of `ltbench run` leaves no worker training on: each follows its driver."""
    proc, err, _ = _cli(
        ["run", "--methods", "ce,la", "--data", "digits_lt", "--budget", "smoke", "--set", "epochs=500"]
        + ["--out", str(tmp_path / "out"), "--store", str(tmp_path / "s.db"), "--jobs", "2"],
        tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and err.read_text().count(" epoch ") < 2:
            time.sleep(0.5)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 2, err.read_text()
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30  # a second when idle; a loaded machine can take longer
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)]
    assert alive == []


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0].lower()
    except (OSError, IndexError):
        return "gone"
