"""Trust: a run's id covers its whole lineage, --set cannot relabel a run, the store never misses a
finished record, and any stored run can be shown and reproduced from its record alone."""

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

import ltbench.planning.stages as stages
from ltbench import api
from ltbench.cli import main
from ltbench.config.recipe_files import builtin_recipe_dir
from ltbench.config.specs import RecipeError
from ltbench.execution.runner import execute_run
from ltbench.planning.catalog import load_catalog
from ltbench.planning.sweep import plan_runs
from ltbench.store.records import read_record
from ltbench.store.sqlite import ResultStore

# ----------------------------------------------------------------- lineage is identity


def shadow(tmp_path, method, old, new):
    """A recipe folder whose ``method`` replaces the built-in one, with ``old`` text swapped for ``new``."""
    folder = tmp_path / "recipes" / "methods"
    folder.mkdir(parents=True, exist_ok=True)
    src = builtin_recipe_dir() / "methods"
    for base in src.glob("_*.toml"):
        shutil.copy(base, folder / base.name)
    text = (src / f"{method}.toml").read_text()
    assert old in text
    (folder / f"{method}.toml").write_text(text.replace(old, new))
    return str(tmp_path / "recipes")


def plan_ids(tmp_path, methods, recipes=(), **kw):
    catalog = load_catalog(tuple(recipes))
    specs = plan_runs(methods, ["digits_lt"], "smoke", out_dir=tmp_path / "out", catalog=catalog, **kw)
    return {(s.config.method.name, s.config.seed): s for s in specs}


def test_a_teacher_change_gives_the_student_a_new_id(tmp_path):
    before = plan_ids(tmp_path, ["deit_lt"])
    text = (builtin_recipe_dir() / "methods" / "cnn_ldam_drw_sam.toml").read_text()
    rho = re.search(r"sam_rho = [0-9.]+", text).group()
    after = plan_ids(tmp_path, ["deit_lt"], [shadow(tmp_path, "cnn_ldam_drw_sam", rho, "sam_rho = 0.3")])
    t0, t1 = before["cnn_ldam_drw_sam", 0], after["cnn_ldam_drw_sam", 0]
    s0, s1 = before["deit_lt", 0], after["deit_lt", 0]
    assert t0.run_id != t1.run_id and t1.config.train.sam_rho == 0.3
    assert s0.config == s1.config  # the student's own configuration is the same...
    assert s0.run_id != s1.run_id and s0.run_dir != s1.run_dir  # ...its lineage is not
    assert dict(s1.need_ids) == {"teacher": t1.run_id}


def test_a_teacher_version_bump_reaches_the_student(tmp_path):
    before = plan_ids(tmp_path, ["deit_lt"])
    text = (builtin_recipe_dir() / "methods" / "cnn_ldam_drw_sam.toml").read_text()
    version = next(line for line in text.splitlines() if line.startswith("version"))
    folder = shadow(tmp_path, "cnn_ldam_drw_sam", version, "version = 99")
    after = plan_ids(tmp_path, ["deit_lt"], [folder])
    assert before["deit_lt", 0].run_id != after["deit_lt", 0].run_id


def test_an_mgp_stage_change_gives_mgp_and_livt_new_ids(tmp_path, monkeypatch):
    before = plan_ids(tmp_path, ["mgp", "livt"])
    monkeypatch.setattr(stages, "MGP_STAGE_VERSION", stages.MGP_STAGE_VERSION + 1)
    after = plan_ids(tmp_path, ["mgp", "livt"])
    for key in (("mgp", 0), ("livt", 0), ("mgp_pretrain", 0)):
        assert before[key].run_id != after[key].run_id
    assert before["mgp", 0].config == after["mgp", 0].config


def test_stage_seeds_follow_the_run_unless_pinned(tmp_path):
    plan = plan_ids(tmp_path, ["deit_lt", "mgp"], seeds=[0, 1])
    for seed in (0, 1):
        assert dict(plan["deit_lt", seed].need_ids)["teacher"] == plan["cnn_ldam_drw_sam", seed].run_id
        assert dict(plan["mgp", seed].need_ids)["pretrained"] == plan["mgp_pretrain", seed].run_id
    # seeds of one method are one variant, whatever seed their stages had
    assert plan["deit_lt", 0].variant == plan["deit_lt", 1].variant
    pinned = plan_ids(tmp_path, ["deit_lt"], seeds=[0, 1], overrides=["teacher_seed=0"])
    assert {s.config.seed for (m, _), s in pinned.items() if m == "cnn_ldam_drw_sam"} == {0}
    assert pinned["deit_lt", 0].variant != plan["deit_lt", 0].variant


def test_a_stage_folder_holding_another_run_is_refused(tmp_path):
    specs = plan_runs(["mgp"], ["digits_lt"], "smoke", out_dir=tmp_path / "out")
    store = ResultStore(tmp_path / "s.db")
    stage, student = specs
    execute_run(stage, store, "cpu")
    record = read_record(stage.run_dir)
    (stage.run_dir / "record.json").write_text(json.dumps({**record, "run_id": "0" * 64}))
    out = execute_run(student, store, "cpu")
    assert out["status"] == "failed" and "holds run 0000" in out["error"]


# ----------------------------------------------------------- --set cannot relabel a run


@pytest.mark.parametrize(
    "override, where",
    [
        ("method.name=livt", "method.name"),
        ("budget=../../x", "budget"),
        ("data.name=/tmp/x", "data.name"),
        ("method.version=7", "method.version"),
        ("data.default_root=/tmp", "data.default_root"),
        ('data.checksums={a="b"}', "data.checksums"),
        ("seed=3", "seed"),
    ],
)
def test_identity_fields_cannot_be_overridden(tmp_path, capsys, override, where):
    with pytest.raises(RecipeError, match=f"would change {where}"):
        plan_runs(["ce"], ["digits_lt"], "smoke", overrides=[override], out_dir=tmp_path)
    out = tmp_path / "out"
    code = main(["run", "--methods", "ce", "--data", "digits_lt", "--budget", "smoke", "--set", override,
                 "--out", str(out), "--store", str(tmp_path / "s.db")])  # fmt: skip
    assert code == 2 and "would change" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "s.db").exists()  # nothing written


def test_file_prefix_is_a_name_not_a_path(tmp_path):
    with pytest.raises(RecipeError, match="not a path"):
        plan_runs(["ce"], ["places_lt"], "smoke", overrides=["file_prefix=../../etc/x"], out_dir=tmp_path)
    plan_runs(["ce"], ["places_lt"], "smoke", overrides=["file_prefix=Tiny_LT"], out_dir=tmp_path)


def test_recipe_names_that_are_not_folder_names_are_refused(tmp_path):
    folder = tmp_path / "r" / "methods"
    folder.mkdir(parents=True)
    text = (builtin_recipe_dir() / "methods" / "ce.toml").read_text().replace('name = "ce"', 'name = "c e"')
    (folder / "c e.toml").write_text(text)
    shutil.copy(builtin_recipe_dir() / "methods" / "_vit.toml", folder)
    with pytest.raises(RecipeError, match="cannot name a folder"):
        load_catalog((str(tmp_path / "r"),))


# ------------------------------------------------- records are the truth, the store an index


def run_smoke(tmp_path, methods=("ce",), **kw):
    return api.run(
        methods=list(methods),
        data=["digits_lt"],
        budget="smoke",
        store=tmp_path / "s.db",
        out_dir=tmp_path,
        console=quiet(),
        **kw,
    )


def quiet():
    from rich.console import Console

    return Console(file=open("/dev/null", "w"))  # noqa: SIM115


def test_a_run_killed_before_its_ingest_reaches_the_store(tmp_path, monkeypatch):
    # The kill -9 between record.json and the store: the ingest never happens.
    monkeypatch.setattr(ResultStore, "ingest_retrying", lambda self, record, *a, **k: False)
    with pytest.warns(UserWarning, match="stayed locked"):
        (record,) = run_smoke(tmp_path, overrides=["epochs=1"])
    monkeypatch.undo()
    assert record["status"] == "done" and ResultStore(tmp_path / "s.db").status(record["run_id"]) is None
    rows = api.results(tmp_path / "s.db")  # reading the store ingests the finished record first
    assert [(r["run_id"], r["status"]) for r in rows] == [(record["run_id"], "done")]
    # the same command finds it done and does not train again
    (again,) = run_smoke(tmp_path, overrides=["epochs=1"])
    assert again.get("skipped") and again["run_id"] == record["run_id"]


def test_a_locked_store_is_retried_then_synced_not_lost(tmp_path, monkeypatch):
    (record,) = run_smoke(tmp_path, overrides=["epochs=1"])
    store = ResultStore(tmp_path / "s.db")
    store.forget(record["run_id"])
    monkeypatch.setattr(ResultStore, "busy_timeout", 0.05)
    holder = sqlite3.connect(tmp_path / "s.db")
    holder.execute("BEGIN EXCLUSIVE")  # another process writing for longer than we wait
    assert store.ingest_retrying(read_record(Path(record["run_dir"])), attempts=2, wait=0.0) is False
    holder.rollback()
    holder.close()
    assert store.status(record["run_id"]) is None
    assert [r["run_id"] for r in api.results(tmp_path / "s.db")] == [record["run_id"]]


def test_report_and_ingest_find_records_the_store_never_saw(tmp_path):
    (record,) = run_smoke(tmp_path, overrides=["epochs=1"])
    (tmp_path / "s.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"s.db{suffix}").unlink(missing_ok=True)
    ResultStore(tmp_path / "s.db")  # an empty store beside the run folders
    paths = api.report(tmp_path / "s.db", tmp_path / "rep")
    assert "ce" in paths["markdown"].read_text()
    other = tmp_path / "other.db"
    assert api.ingest(tmp_path / "runs", other) == 1 and api.ingest(tmp_path / "runs", other) == 1
    assert [r["run_id"] for r in ResultStore(other).records()] == [record["run_id"]]


# --------------------------------------------------------------------- show and reproduce


def test_show_gives_the_record_and_its_lineage(tmp_path, capsys):
    records = run_smoke(tmp_path, methods=["deit_lt"])
    student = next(r for r in records if r["method"] == "deit_lt")
    teacher = next(r for r in records if r["method"] == "cnn_ldam_drw_sam")
    assert student["needs"] == {"teacher": teacher["run_id"]}
    shown = api.show(student["run_id"][:8], tmp_path / "s.db")
    assert shown["run_id"] == student["run_id"] and shown["config"]["method"]["teacher"] == "cnn_ldam_drw_sam"
    (need,) = shown["lineage"]["needs"]
    assert (need["role"], need["run_id"], need["status"]) == ("teacher", teacher["run_id"], "done")
    assert main(["show", student["run_id"][:8], "--json", "--store", str(tmp_path / "s.db")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lineage"]["needs"][0]["run_id"] == teacher["run_id"] and len(out["results"]["last"]["correct"]) == 10
    assert main(["show", student["run_id"][:8], "--store", str(tmp_path / "s.db")]) == 0
    assert "teacher: cnn_ldam_drw_sam" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no run id starts with"):
        api.show("ffffffffff", tmp_path / "s.db")


def test_reproduce_is_identical_on_the_same_cpu(tmp_path):
    records = run_smoke(tmp_path, methods=["deit_lt"])
    student = next(r for r in records if r["method"] == "deit_lt")
    out = api.reproduce(student["run_id"][:12], tmp_path / "s.db", tmp_path / "again", "cpu", quiet())
    assert out["id_matches"] and out["identical"]
    assert out["metrics"] and all(m["difference"] == 0 for m in out["metrics"] if m["difference"] is not None)
    again = ResultStore(tmp_path / "again" / "ltbench.db")
    assert {r["method"] for r in again.records()} == {"deit_lt", "cnn_ldam_drw_sam"}  # the teacher re-ran too


def test_reproduce_uses_the_stored_config_not_todays_recipe(tmp_path):
    (record,) = run_smoke(tmp_path, overrides=["epochs=1"])
    folder = shadow(tmp_path, "ce", 'loss = "ce"\n', 'loss = "ce"\n[budgets.smoke]\nepochs = 3\n')
    load_catalog.cache_clear()
    import os

    os.environ["LTBENCH_RECIPES"] = folder
    try:
        out = api.reproduce(record["run_id"][:10], tmp_path / "s.db", tmp_path / "again", "cpu", quiet())
    finally:
        del os.environ["LTBENCH_RECIPES"]
        load_catalog.cache_clear()
    assert out["identical"]
    assert ResultStore(tmp_path / "again" / "ltbench.db").records()[0]["config"]["train"]["epochs"] == 1


# ------------------------------------------------------------ a table row is one run per seed


def test_unverified_duplicates_never_count_as_seeds(tmp_path):
    from ltbench.reports import runs as reporting

    run_smoke(tmp_path, seeds=[0, 1], overrides=["epochs=1"])
    run_smoke(tmp_path, seeds=[0], overrides=["epochs=1"], verify=False)
    records = ResultStore(tmp_path / "s.db").records()
    assert len(records) == 3
    agg = reporting.aggregate(reporting.runs_frame(records))
    assert sorted(zip(agg["method"], agg["n"])) == [("ce [epochs=1]", 2), ("ce [epochs=1] (unverified data)", 1)]


def test_a_stage_done_under_another_out_is_used_where_it_is(tmp_path):
    first = api.run(
        methods=["cnn_crt"], data=["digits_lt"], budget="smoke", store=tmp_path / "s.db",
        out_dir=tmp_path / "one", console=quiet(),
    )  # fmt: skip
    again = api.run(
        methods=["cnn_crt"], data=["digits_lt"], budget="smoke", overrides=["cnn_crt.lr=0.05"],
        store=tmp_path / "s.db", out_dir=tmp_path / "two", console=quiet(),
    )  # fmt: skip
    assert again[0].get("skipped") and again[0]["run_id"] == first[0]["run_id"]  # the backbone, once
    assert again[1]["status"] == "done" and again[1]["needs"] == {"backbone": first[0]["run_id"]}
