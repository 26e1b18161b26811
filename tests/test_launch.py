"""Scheduling: waves, profiles, the local executor, kill -9 and resume, status and dry-run,
and a real SLURM (skipped only where none runs; CI starts one with scripts/slurm-local.sh)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from slurm_local import needs_slurm

from ltbench.cli import main
from ltbench.config.specs import RecipeError
from ltbench.execution.launch import SlurmOptions, load_profile, waves
from ltbench.planning.sweep import plan_runs


def test_waves_put_stages_first(tmp_path):
    specs = plan_runs(["deit_lt", "livt", "ce"], ["digits_lt"], "smoke", seeds=[0, 1], out_dir=tmp_path)
    w = waves(specs)
    assert [sorted({s.config.method.name for s in wave}) for wave in w] == [
        ["ce", "cnn_ldam_drw_sam", "mgp_pretrain"],
        ["deit_lt", "livt"],
    ]
    assert sum(map(len, w)) == len(specs)


def test_profile_then_cli(tmp_path):
    profile = tmp_path / "cluster.toml"
    profile.write_text(
        '[slurm]\npartition = "gpu"\ngpus_per_job = 4\ntime_min = 600\n[slurm.sbatch]\nexclusive = true\n'
    )
    opts = load_profile(profile, gpus_per_job=2, qos=None)
    assert opts == SlurmOptions(partition="gpu", gpus_per_job=2, time_min=600, sbatch={"exclusive": True})
    profile.write_text('[slurm]\npartitoin = "gpu"\n')
    with pytest.raises(RecipeError, match="unknown key 'partitoin'"):
        load_profile(profile)


def _args(tmp_path, *extra):
    return [
        "run",
        "--methods",
        "ce,deit_lt",
        "--data",
        "digits_lt",
        "--budget",
        "smoke",
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]


def test_dry_run_and_status(tmp_path, capsys):
    assert main(_args(tmp_path, "--dry-run")) == 0
    out = capsys.readouterr().err.replace("\n", " ")
    assert "3 stages" in out and "teacher:" in out and "skip (done)" not in out
    assert not (tmp_path / "s.db").exists()
    assert main(_args(tmp_path, "--methods", "ce")) == 0
    capsys.readouterr()
    assert main(_args(tmp_path, "--dry-run")) == 0
    assert "skip (done)" in capsys.readouterr().err
    assert main(["status", "--out", str(tmp_path / "out"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["label"].split()[0], r["state"]) for r in rows] == [("ce", "done")]


def test_local_executor_runs_jobs_and_dependents(tmp_path, capsys):
    assert main(_args(tmp_path, "--executor", "local", "--cpus-per-job", "1")) == 0
    capsys.readouterr()
    assert main(["results", "--json", "--store", str(tmp_path / "s.db")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["method"], r["status"]) for r in rows) == [
        ("ce", "done"),
        ("cnn_ldam_drw_sam", "done"),
        ("deit_lt", "done"),
    ]
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("job.json")]
    assert len(jobs) == 3 and all(j["executor"] == "local" for j in jobs)


def _checkpoint_epoch(out):
    for path in out.rglob("checkpoint.pt"):
        import torch

        return torch.load(path, map_location="cpu", weights_only=False)["epoch"]
    return 0


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    common = ["--methods", "la", "--data", "digits_lt", "--budget", "smoke", "--set", "epochs=12", "--set", "mixup=0.5"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    cmd = [sys.executable, "-m", "ltbench", "run", *common]
    subprocess.run([*cmd, "--store", str(ref / "s.db"), "--out", str(ref)], check=True, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, "--store", str(cut / "s.db"), "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while _checkpoint_epoch(cut) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; raise epochs"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _checkpoint_epoch(cut)
    assert 3 <= killed_at < 12
    assert not list(cut.rglob("record.json"))
    subprocess.run([*cmd, "--store", str(cut / "s.db"), "--out", str(cut)], check=True, capture_output=True)
    a = json.loads(next(ref.rglob("record.json")).read_text())
    b = json.loads(next(cut.rglob("record.json")).read_text())
    assert b["timings"]["resumed_from_epoch"] == killed_at
    # Every epoch's random streams are seeded from (seed, epoch), so the resumed run follows the
    # same path: identical predictions; losses equal up to float summation order (rel 1e-6).
    assert b["results"]["last"]["correct"] == a["results"]["last"]["correct"]
    assert [h["train_loss"] for h in b["history"]] == pytest.approx([h["train_loss"] for h in a["history"]], rel=1e-6)


@pytest.mark.slow
@needs_slurm
def test_slurm_sweep_with_array_and_dependent_stage(tmp_path, capsys):
    args = [
        "run",
        "--methods",
        "ce,la,bal_bce,deit_lt",
        "--data",
        "digits_lt",
        "--budget",
        "smoke",
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "out"),
        "--executor",
        "slurm",
        "--cpus-per-job",
        "1",
        "--time-min",
        "10",
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["results", "--json", "--store", str(tmp_path / "s.db")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["method"], r["status"]) for r in rows) == [
        ("bal_bce", "done"),
        ("ce", "done"),
        ("cnn_ldam_drw_sam", "done"),
        ("deit_lt", "done"),
        ("la", "done"),
    ]
    jobs = {p.parent.parent.name: json.loads(p.read_text()) for p in (tmp_path / "out").rglob("job.json")}
    array = {j["job_id"].split("_")[0] for m, j in jobs.items() if m != "deit_lt"}
    assert len(array) == 1  # the four first-wave runs are one job array
    student = jobs["deit_lt"]["job_id"]
    script = (tmp_path / "out" / "jobs" / f"{student}_submission.sh").read_text()
    assert f"--dependency=afterany:{array.pop()}" in script
    deadline, got = time.time() + 60, {}
    while time.time() < deadline:  # accounting settles a moment after the result pickle appears
        states = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(j["job_id"] for j in jobs.values())],
            capture_output=True,
            text=True,
        ).stdout
        got = dict(line.split("|") for line in states.split())
        if all(got.get(j["job_id"]) == "COMPLETED" for j in jobs.values()):
            break
        time.sleep(1)
    assert {got.get(j["job_id"]) for j in jobs.values()} == {"COMPLETED"}
    assert main(["status", "--out", str(tmp_path / "out"), "--json"]) == 0
    assert {r["state"] for r in json.loads(capsys.readouterr().out)} == {"done"}


@pytest.mark.slow
@needs_slurm
def test_cancelled_slurm_job_shows_as_cancelled(tmp_path, capsys):
    out = tmp_path / "out"
    long_run = ("--methods", "ce", "--set", "epochs=2000", "--executor", "slurm", "--cpus-per-job", "1")
    args = _args(tmp_path, *long_run, "--time-min", "10", "--no-wait")
    assert main(args) == 0
    job = json.loads(next(out.rglob("job.json")).read_text())
    deadline = time.time() + 60
    while _checkpoint_epoch(out) < 1 and time.time() < deadline:  # let it start training
        time.sleep(0.5)
    subprocess.run(["scancel", job["job_id"]], check=True)
    deadline, rows = time.time() + 60, []
    while time.time() < deadline:
        capsys.readouterr()
        main(["status", "--out", str(out), "--json"])
        rows = json.loads(capsys.readouterr().out)
        if rows[0]["state"] == "cancelled":
            break
        time.sleep(1)
    assert rows[0]["state"] == "cancelled" and rows[0]["detail"].startswith("CANCELLED")
    assert main(["status", "--out", str(out)]) == 1  # a cancelled stage is worth a non-zero exit


def test_force_reruns_under_the_local_executor(tmp_path, capsys):
    args = _args(tmp_path, "--methods", "ce", "--set", "epochs=1", "--executor", "local", "--cpus-per-job", "1")
    assert main(args) == 0
    first = json.loads(next((tmp_path / "out").rglob("record.json")).read_text())["started_at"]
    time.sleep(1.1)  # started_at has one-second resolution
    assert main([*args, "--force"]) == 0
    second = json.loads(next((tmp_path / "out").rglob("record.json")).read_text())["started_at"]
    assert second != first


def test_local_jobs_log_a_plain_line_per_epoch(tmp_path):
    args = _args(tmp_path, "--methods", "ce", "--set", "epochs=2", "--executor", "local", "--cpus-per-job", "1")
    assert main(args) == 0
    (log,) = (tmp_path / "out" / "jobs").rglob("*_log.err")
    lines = [line for line in log.read_text().splitlines() if line.startswith("[ce on digits_lt smoke s0]")]
    assert [line.split("] ")[1].split(" loss")[0] for line in lines if " epoch " in line] == ["epoch 1/2", "epoch 2/2"]
    assert re.match(r"\[ce on digits_lt smoke s0\] done in \d+ s: all \d+\.\d%", lines[-1])
