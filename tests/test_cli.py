"""The command line end to end on real digits: run, skip, force, results, report, bad input."""

import json
import subprocess
import sys

import pytest

from ltbench.cli import main
from ltbench.cli.args import parse_seeds


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def paths(tmp_path):
    return ["--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "out")]


def test_run_results_report_end_to_end(tmp_path, paths, capsys):
    # No --methods: the main job's methods, as the README's main job runs them.
    args = ["run", "--data", "digits_lt", "--budget", "smoke", "--seeds", "0,1", *paths]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "bal_bce" in err and "done" in err

    code, out, _ = run_cli(["results", "--json", "--store", str(tmp_path / "s.db")], capsys)
    rows = json.loads(out)
    assert code == 0
    from ltbench.api import main_job_methods

    methods = main_job_methods()
    stages = [("mgp_pretrain", s, "done") for s in (0, 1)]  # one MGP stage per seed, shared by mgp and livt
    expected = sorted([(m, s, "done") for m in methods for s in (0, 1)] + stages)
    assert sorted((r["method"], r["seed"], r["status"]) for r in rows) == expected
    assert all(0.0 <= r["last.top1"] <= 1.0 for r in rows if r["method"] != "mgp_pretrain")
    record = json.loads(next((tmp_path / "out" / "runs").rglob("ce/*/record.json")).read_text())
    assert record["provenance"]["data_fingerprint"] and record["provenance"]["torch_version"]
    assert sum(record["results"]["last"]["total"]) == 500 and record["train_counts"][0] == 114

    # Same command again: every run is skipped, nothing retrains.
    code, _, err = run_cli(args, capsys)
    assert code == 0 and err.count("skipped") >= len(expected)

    code, out, err = run_cli(["report", "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    tex = (tmp_path / "rep" / "table.tex").read_text()
    assert "\\toprule" in tex and "bal\\_bce" in tex
    assert (tmp_path / "rep" / "per_class.png").stat().st_size > 1000
    assert "bal_bce" in (tmp_path / "rep" / "table.md").read_text()


def test_force_reruns(tmp_path, paths, capsys):
    args = ["run", "--methods", "ce", "--data", "digits_lt", "--budget", "smoke", "--set", "epochs=1", *paths]
    assert run_cli(args, capsys)[0] == 0
    code, _, err = run_cli([*args, "--force"], capsys)
    assert code == 0 and "skipped" not in err


def test_unknown_method_exits_2_and_writes_nothing(tmp_path, paths, capsys):
    code, _, err = run_cli(["run", "--methods", "ce,foo", "--data", "digits_lt", *paths], capsys)
    assert code == 2
    from ltbench.planning.catalog import load_catalog

    listed = " ".join(err.split())  # the console wraps long lines
    assert "unknown method 'foo'" in err and ", ".join(load_catalog().methods.names()) in listed
    assert not (tmp_path / "s.db").exists()


def test_bad_override_and_budget_exit_2(paths, capsys):
    code, _, err = run_cli(["run", "--methods", "ce", "--data", "digits_lt", "--set", "epochz=3", *paths], capsys)
    assert code == 2 and "matches no setting" in err
    code, _, err = run_cli(["run", "--methods", "ce", "--data", "digits_lt", "--budget", "tiny", *paths], capsys)
    assert code == 2 and "no budget 'tiny'" in err


def test_reading_a_missing_store_is_an_error(tmp_path, capsys):
    code, _, err = run_cli(["results", "--store", str(tmp_path / "none.db")], capsys)
    assert code == 2 and "no results store" in err
    assert not (tmp_path / "none.db").exists()


def test_list_json(capsys):
    code, out, _ = run_cli(["list", "--json"], capsys)
    found = json.loads(out)
    assert code == 0
    assert {m["name"] for m in found["methods"]} >= {"ce", "la", "bce", "bal_bce"}
    bal = next(m for m in found["methods"] if m["name"] == "bal_bce")
    assert "LiVT" in bal["paper"] and bal["budgets"]["quick"]["epochs"] > 0
    assert {d["name"] for d in found["datasets"]} >= {"mnist_lt", "digits_lt"}
    code, out, _ = run_cli(["list", "methods", "*bce", "--json"], capsys)
    assert [m["name"] for m in json.loads(out)["methods"]] == ["bal_bce", "bce"]


def test_parse_seeds():
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert parse_seeds("3") == [3]


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "ltbench", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ltbench ")


def test_every_method_outside_the_main_job_runs(tmp_path, paths, capsys):
    from ltbench.api import main_job_methods
    from ltbench.planning.catalog import load_catalog

    others = sorted(set(load_catalog().methods.names()) - set(main_job_methods()))
    if not others:
        pytest.skip("every method is in the main job")
    code, _, err = run_cli(
        ["run", "--methods", ",".join(others), "--data", "digits_lt", "--budget", "smoke", *paths], capsys
    )
    assert code == 0, err
    code, out, _ = run_cli(["results", "--json", "--store", str(tmp_path / "s.db")], capsys)
    done = {r["method"] for r in json.loads(out) if r["status"] == "done"}
    assert set(others) <= done
