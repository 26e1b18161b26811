"""SLURM at scale: waves split into job arrays under MaxArraySize with one %N cap for the sweep,
and jobs of several data-parallel tasks (one process group; the same numbers as one process).

The planning and sbatch scripts are checked without a cluster (sbatch replaced by echo); the
end-to-end tests run on a real SLURM and skip only where none answers (CI starts one with
scripts/slurm-local.sh)."""

import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit
from slurm_local import needs_slurm

from ltbench.cli import main
from ltbench.cli.args import build_parser
from ltbench.config.specs import RecipeError
from ltbench.execution.arrays import chunk_count, dependency, parse_max_array_size, plan_wave, slurm_max_array_size
from ltbench.execution.launch import SlurmOptions, load_profile, make_executor, submit

# -- how a wave becomes arrays -------------------------------------------------------------------


def test_a_2500_run_wave_under_1001_is_three_equal_arrays_sharing_the_cap():
    chunks = plan_wave(0, 2500, max_array_size=1001, max_parallel=64)
    assert [len(c.runs) for c in chunks] == [834, 833, 833]  # at most 1000 each, as equal as can be
    assert sorted(i for c in chunks for i in c.runs) == list(range(2500))  # every run once
    assert chunks[1].runs[:3] == (1, 4, 7)  # strided: each method's seeds spread over the arrays
    assert [c.parallelism for c in chunks] == [22, 21, 21] and sum(c.parallelism for c in chunks) == 64
    assert [c.after for c in chunks] == [None, None, None]  # enough slots: all three start at once


def test_fewer_slots_than_arrays_chain_them_in_lanes_of_equal_work():
    chunks = plan_wave(0, 2500, max_array_size=1001, max_parallel=2)
    # Three arrays would leave one lane twice the work of the other: four, two per lane.
    assert [len(c.runs) for c in chunks] == [625, 625, 625, 625]
    assert [(c.lane, c.parallelism, c.after) for c in chunks] == [(0, 1, None), (1, 1, None), (0, 1, 0), (1, 1, 1)]
    single = plan_wave(1, 7, max_array_size=1001, max_parallel=64)
    assert [(len(c.runs), c.parallelism, c.after) for c in single] == [(7, 64, None)]


def test_array_sizes_and_dependency_strings():
    assert [chunk_count(n, 1001) for n in (0, 1, 1000, 1001, 2000, 2001)] == [0, 1, 1, 2, 2, 3]
    assert dependency(["101", "102", "103"]) == "afterany:101:102:103"
    assert dependency([]) is None
    with pytest.raises(ValueError, match="max_array_size must be >= 2"):
        chunk_count(5, 1)


def test_max_array_size_is_read_from_scontrol_show_config():
    text = "Configuration data as of 2026-12-01T10:00:00\nMaxArraySize            = 1001\nMaxJobCount = 10000\n"
    assert parse_max_array_size(text) == 1001
    assert parse_max_array_size("MaxJobCount = 10000\n") is None


@needs_slurm
def test_the_local_cluster_reports_its_max_array_size():
    said = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    expected = int(re.search(r"MaxArraySize\s*=\s*(\d+)", said).group(1))
    assert slurm_max_array_size() == expected >= 2


# -- sbatch scripts of a 2,503-run sweep, without a cluster ---------------------------------------


def _fake_sbatch(monkeypatch) -> list[str]:
    """sbatch replaced by echo of a new job id; returns the ids handed out, in order."""
    ids: list[str] = []

    def command(self, path):
        ids.append(str(5000 + len(ids)))
        return ["echo", f"Submitted batch job {ids[-1]}"]

    monkeypatch.setattr(submitit.SlurmExecutor, "_make_submission_command", command)
    return ids


def _fake_specs(root: Path, n: int, needs: tuple = (), prefix: str = "r") -> list:
    return [
        SimpleNamespace(run_id=f"{prefix}{i:05d}", run_dir=root / f"{prefix}{i:05d}", needs=needs, need_ids=())
        for i in range(n)
    ]


def test_a_2503_run_sweep_is_four_sbatch_calls_with_every_array_in_the_dependency(tmp_path, monkeypatch):
    ids = _fake_sbatch(monkeypatch)
    first = _fake_specs(tmp_path / "runs", 2500)
    students = _fake_specs(tmp_path / "runs", 3, needs=(("teacher", first[0].run_dir),), prefix="s")
    told = []
    opts = SlurmOptions(cpus_per_job=1, max_array_size=1001, array_parallelism=64)
    jobs = submit(
        first + students, tmp_path / "s.db", "slurm", tmp_path / "jobs", opts, wait=False, on_submitted=told.append
    )
    assert len(jobs) == 2503 and ids == ["5000", "5001", "5002", "5003"]
    scripts = [(tmp_path / "jobs" / f"{i}_submission.sh").read_text() for i in ids]
    assert [re.search(r"--array=(\S+)", s).group(1) for s in scripts[:3]] == ["0-833%22", "0-832%21", "0-832%21"]
    assert not any("--dependency" in s for s in scripts[:3])
    assert "#SBATCH --dependency=afterany:5000:5001:5002" in scripts[3]  # the students wait for all three
    assert "--array=0-2%3" in scripts[3]
    job = json.loads((first[1].run_dir / "job.json").read_text())
    assert job["job_id"] == "5001_0"  # run 1 is the second array's first task (strided split)
    (count,) = told
    assert (count.jobs, count.calls, count.arrays, count.max_array_tasks) == (2503, 4, 4, 1000)
    assert count.describe() == (
        "submitted 2503 jobs to SLURM in 4 sbatch calls (4 job arrays of at most 1000 tasks; at most 64 jobs at once)"
    )


def test_chained_arrays_wait_for_the_previous_wave_and_their_lane(tmp_path, monkeypatch):
    ids = _fake_sbatch(monkeypatch)
    first = _fake_specs(tmp_path / "runs", 1)
    second = _fake_specs(tmp_path / "runs", 8, needs=(("teacher", first[0].run_dir),), prefix="s")
    opts = SlurmOptions(cpus_per_job=1, max_array_size=3, array_parallelism=2)
    submit(first + second, tmp_path / "s.db", "slurm", tmp_path / "jobs", opts, wait=False)
    scripts = {i: (tmp_path / "jobs" / f"{i}_submission.sh").read_text() for i in ids}
    assert "--array" not in scripts["5000"]  # a wave of one run is a single job
    deps = [re.search(r"--dependency=(\S+)", scripts[i]).group(1) for i in ids[1:]]
    # 8 runs in arrays of 2 = 4 arrays in 2 lanes of one slot: the 3rd waits for the 1st, the 4th for the 2nd.
    assert deps == ["afterany:5000", "afterany:5000", "afterany:5000:5001", "afterany:5000:5002"]
    assert all("%1\n" in scripts[i] for i in ids[1:])


# -- options: the cap's two names, nodes and tasks -------------------------------------------------


def test_max_parallel_and_array_parallelism_are_one_setting(tmp_path):
    parser = build_parser()
    for flag in ("--max-parallel", "--array-parallelism"):
        args = parser.parse_args(["run", flag, "8", "--max-array-size", "11", "--nodes", "2", "--tasks-per-node", "3"])
        assert (args.array_parallelism, args.max_array_size, args.nodes, args.tasks_per_node) == (8, 11, 2, 3)
    profile = tmp_path / "cluster.toml"
    profile.write_text("[slurm]\nmax_parallel = 16\nmax_array_size = 501\nnodes = 2\n")
    assert load_profile(profile) == SlurmOptions(array_parallelism=16, max_array_size=501, nodes=2)
    assert load_profile(profile, array_parallelism=4).array_parallelism == 4  # the CLI wins
    profile.write_text("[slurm]\nmax_parallel = 16\narray_parallelism = 8\n")
    with pytest.raises(RecipeError, match="one setting"):
        load_profile(profile)
    with pytest.raises(RecipeError, match="tasks_per_node = 2 with gpus_per_job = 4"):
        load_profile(None, gpus_per_job=4, tasks_per_node=2)
    with pytest.raises(RecipeError, match="max_array_size = 1"):
        load_profile(None, max_array_size=1)


def test_a_multi_node_job_runs_one_task_per_gpu_of_each_node(tmp_path):
    gpus = make_executor("slurm", tmp_path, SlurmOptions(nodes=2, gpus_per_job=4)).parameters
    assert (gpus["nodes"], gpus["ntasks_per_node"], gpus["gpus_per_node"]) == (2, 4, 4)
    cpus = make_executor("slurm", tmp_path, SlurmOptions(nodes=3, tasks_per_node=2)).parameters
    assert (cpus["nodes"], cpus["ntasks_per_node"], "gpus_per_node" in cpus) == (3, 2, False)
    one = make_executor("slurm", tmp_path, SlurmOptions()).parameters
    assert "nodes" not in one and "ntasks_per_node" not in one  # a plain job's script is as before
    with pytest.raises(ValueError, match="needs --executor slurm"):
        make_executor("local", tmp_path, SlurmOptions(nodes=2))


# -- on a real SLURM -------------------------------------------------------------------------------


def _sacct(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """State, start and end of each job (array tasks by their id), once accounting has them all."""
    deadline, rows = time.time() + 90, {}
    while time.time() < deadline:  # accounting settles a moment after the result pickle appears
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "JobID,State,Start,End", "-j", ",".join(job_ids)],
            capture_output=True,
            text=True,
        ).stdout
        rows = {r[0]: dict(zip(("state", "start", "end"), r[1:])) for r in (line.split("|") for line in out.split())}
        if all(rows.get(j, {}).get("state") == "COMPLETED" and rows[j]["end"] != "Unknown" for j in job_ids):
            break
        time.sleep(1)
    return rows


@pytest.mark.slow
@needs_slurm
def test_a_wave_over_max_array_size_runs_to_the_end_and_its_dependent_waits_for_every_array(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--methods", "ce,la,bal_bce,deit_lt", "--data", "digits_lt", "--budget", "smoke"]
    args += ["--store", str(tmp_path / "s.db"), "--out", str(out), "--executor", "slurm", "--cpus-per-job", "1"]
    # 4 first-wave runs in arrays of at most 2 tasks (MaxArraySize 3): 2 arrays, then deit_lt. A cap
    # of 1 (below the cluster's 2 CPUs) chains the two arrays: one job at a time over the sweep.
    args += ["--time-min", "10", "--max-array-size", "3", "--max-parallel", "1"]
    assert main(args) == 0
    said = capsys.readouterr().err
    assert (
        "submitted 5 jobs to SLURM in 3 sbatch calls (2 job arrays of at most 2 tasks; at most 1 job at once)"
        in " ".join(said.split())
    )
    assert main(["results", "--json", "--store", str(tmp_path / "s.db")]) == 0
    rows = json.loads(capsys.readouterr().out)
    methods = ["bal_bce", "ce", "cnn_ldam_drw_sam", "deit_lt", "la"]
    assert sorted((r["method"], r["status"]) for r in rows) == [(m, "done") for m in methods]
    assert len(list(out.rglob("record.json"))) == 5
    jobs = {p.parent.parent.name: json.loads(p.read_text())["job_id"] for p in out.rglob("job.json")}
    arrays = sorted({j.split("_")[0] for m, j in jobs.items() if m != "deit_lt"}, key=int)
    assert len(arrays) == 2
    script = (out / "jobs" / f"{jobs['deit_lt']}_submission.sh").read_text()
    assert f"--dependency=afterany:{arrays[0]}:{arrays[1]}" in script
    second = (out / "jobs" / f"{arrays[1]}_submission.sh").read_text()
    assert f"--dependency=afterany:{arrays[0]}\n" in second and "%1\n" in second  # its lane: after the first
    acct = _sacct(list(jobs.values()))
    assert {acct[j]["state"] for j in jobs.values()} == {"COMPLETED"}
    span = {
        m: (datetime.fromisoformat(acct[j]["start"]), datetime.fromisoformat(acct[j]["end"])) for m, j in jobs.items()
    }
    first_wave_end = max(end for m, (_, end) in span.items() if m != "deit_lt")
    assert span["deit_lt"][0] >= first_wave_end  # the student started after the last array task ended
    for moment in (start for start, _ in span.values()):  # the cap held over the whole sweep
        assert sum(start <= moment < end for start, end in span.values()) <= 1


def _ddp_args(tmp_path: Path, *extra: str) -> list[str]:
    sets = [x for o in ("epochs=6", "batch_size=64", "mixup=0.5", "drop_path=0.0") for x in ("--set", o)]
    where = ["--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out")]
    return ["run", "--methods", "la", "--data", "digits_lt", "--budget", "smoke", *sets, *where, *extra]


@pytest.mark.slow
@pytest.mark.parametrize("executor", [pytest.param("slurm", marks=needs_slurm), "local"])
def test_a_two_task_job_trains_like_one_process_with_the_whole_batch(tmp_path, capsys, executor):
    # 1 node, 2 tasks of 1 CPU each, gloo: fits the local cluster's 2 CPUs. Through submitit's local
    # executor the same two tasks run as subprocesses, where no SLURM is.
    tasks = ("--executor", executor, "--tasks-per-node", "2", "--cpus-per-job", "1", "--time-min", "10")
    assert main(_ddp_args(tmp_path / "ddp", *tasks)) == 0
    assert main(_ddp_args(tmp_path / "one", "--jobs", "1", "--threads", "1")) == 0
    capsys.readouterr()
    (ddp,) = [json.loads(p.read_text()) for p in (tmp_path / "ddp" / "out").rglob("record.json")]
    (one,) = [json.loads(p.read_text()) for p in (tmp_path / "one" / "out").rglob("record.json")]
    assert ddp["status"] == one["status"] == "done"
    assert (ddp["world_size"], one["world_size"]) == (2, 1)
    assert ddp["effective_batch"] == one["effective_batch"] == 64
    if executor == "slurm":
        (job,) = [json.loads(p.read_text()) for p in (tmp_path / "ddp" / "out").rglob("job.json")]
        script = tmp_path / "ddp" / "out" / "jobs" / f"{job['job_id']}_submission.sh"
        assert "#SBATCH --ntasks-per-node=2" in script.read_text()
    # Same samples, same mixing, same update; only the order of float sums differs (measured: 1e-7).
    losses = [h["train_loss"] for h in ddp["history"]]
    assert losses == pytest.approx([h["train_loss"] for h in one["history"]], rel=1e-5)
    for selection in ("last", "best_val"):
        assert ddp["results"][selection]["correct"] == one["results"][selection]["correct"]
    assert ddp["metrics"]["last"]["top1"] == pytest.approx(one["metrics"]["last"]["top1"], abs=0.01)
