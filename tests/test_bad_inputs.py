"""Bad inputs across the command line: each gives its documented exit code and a one-line
message that names the input, never a traceback, and leaves the store and --out as they were.

One small lab (a real store, sweep file and run folder from a one-epoch run) is built once;
each case works on a copy of it. Cases run in-process (``ltbench.cli.main``) for speed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ltbench.cli import main

RUN = ["run", "--methods", "ce", "--data", "digits_lt", "--budget", "smoke"]
DRY = [*RUN, "--dry-run"]
RUN1 = [*RUN, "--set", "epochs=1"]  # the lab's run
REC = ["--recipes", "recipes", *DRY, "--store", "out/ltbench.db", "--out", "out"]  # with the case's recipe folder
SIDE_FILES = ("-wal", "-shm")  # SQLite's own companions of a WAL store, made by any reader


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A store, a sweep file and one finished run folder (ce, one epoch on digits)."""
    root = tmp_path_factory.mktemp("lab")
    cwd = os.getcwd()
    os.chdir(root)  # relative paths in the sweep file: a copy of the lab is a lab
    try:
        assert main([*RUN1, "--store", "out/ltbench.db", "--out", "out", "--device", "cpu"]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def here(lab, tmp_path, monkeypatch):
    """A private copy of the lab, as the working folder."""
    shutil.copytree(lab / "out", tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tree_hash(*paths: Path) -> str:
    """Names and bytes of every file under ``paths`` (SQLite's -wal/-shm companions aside)."""
    h = hashlib.sha256()
    for top in paths:
        files = sorted(top.rglob("*")) if top.is_dir() else [top]
        for p in files:
            if p.is_file() and not p.name.endswith(SIDE_FILES):
                h.update(str(p.relative_to(top.parent)).encode())
                h.update(p.read_bytes())
            elif p.is_dir():
                h.update(str(p.relative_to(top.parent)).encode())
    return h.hexdigest()


def call(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage line and one error line, exit 2
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------- setups


def _run_dir(t: Path) -> Path:
    return next((t / "out" / "runs").rglob("*-s0-d0-*"))


def _sql(path: Path, *statements: str) -> None:
    """Run statements and close the connection (so a WAL store is checkpointed back)."""
    db = sqlite3.connect(path)
    try:
        with db:
            for statement in statements:
                db.execute(statement)
    finally:
        db.close()


def _sqlite_other(path: Path) -> None:
    _sql(path, "CREATE TABLE contacts (name TEXT, phone TEXT)", "INSERT INTO contacts VALUES ('ada', '123')")


def _forget_runs(store: Path) -> None:
    _sql(store, "DELETE FROM metrics", "DELETE FROM runs")


def _store_from(t: Path, kind: str) -> Path:
    """A file at t/bad.db that is not an ltbench store."""
    p = t / "bad.db"
    good = (t / "out" / "ltbench.db").read_bytes()
    if kind == "text":
        p.write_text("name,phone\nada,123\n")
    elif kind == "binary":
        p.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated":
        p.write_bytes(good[: len(good) // 3 + 7])
    elif kind == "garbled":
        p.write_bytes(good[:100] + os.urandom(len(good) - 100))
    elif kind == "header":
        p.write_bytes(good[:60])
    elif kind == "other":
        _sqlite_other(p)
    elif kind == "dir":
        p.mkdir()
    elif kind == "metrics_only":
        _sql(p, "CREATE TABLE metrics (x)")
    return p


def _recipes(t: Path, files: dict[str, str]) -> Path:
    d = t / "recipes"
    for rel, text in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    (d / "methods").mkdir(parents=True, exist_ok=True)
    (d / "datasets").mkdir(parents=True, exist_ok=True)
    return d


def _method(
    name: str, budget: str = "epochs = 1\nbatch_size = 8\nlr = 1e-3\nwarmup_epochs = 0", extra: str = ""
) -> str:
    return (
        f'name = "{name}"\ntitle = "t"\npaper = "p"\nversion = 1\nmodel = "vit"\nloss = "ce"\n{extra}\n'
        f"[budgets.smoke]\n{budget}\n"
    )


class Evil:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


SETUPS = {
    "text": lambda t: _store_from(t, "text"),
    "binary": lambda t: _store_from(t, "binary"),
    "truncated": lambda t: _store_from(t, "truncated"),
    "garbled": lambda t: _store_from(t, "garbled"),
    "header": lambda t: _store_from(t, "header"),
    "other": lambda t: _store_from(t, "other"),
    "dir": lambda t: _store_from(t, "dir"),
    "metrics_only": lambda t: _store_from(t, "metrics_only"),
    "out_is_file": lambda t: (t / "afile").write_text("x"),
    "sweep_garbled": lambda t: (t / "out" / "sweeps" / "latest.json").write_text('[{"run_id": "ab'),
    "sweep_binary": lambda t: (t / "out" / "sweeps" / "latest.json").write_bytes(b"\xff\xfe\x00garbage"),
    "sweep_dict": lambda t: (t / "out" / "sweeps" / "latest.json").write_text('{"runs": []}'),
    "sweep_no_key": lambda t: (t / "out" / "sweeps" / "latest.json").write_text(
        '[{"run_id": "ab", "label": "x", "needs": []}]'
    ),
    "sweep_not_rows": lambda t: (t / "out" / "sweeps" / "latest.json").write_text("[1, 2]"),
    "sweep_gone": lambda t: (t / "out" / "sweeps" / "latest.json").unlink(),
    "ckpt_truncated": lambda t: _damage_checkpoint(t, "truncate"),
    "ckpt_text": lambda t: _damage_checkpoint(t, "text"),
    "ckpt_evil": lambda t: _damage_checkpoint(t, "evil"),
    "record_garbled": lambda t: (_run_dir(t) / "record.json").write_text("{not json"),
    "record_list": lambda t: (_run_dir(t) / "record.json").write_text("[]"),
    "job_garbled": lambda t: (_run_dir(t) / "job.json").write_text("{"),
    "recipe_syntax": lambda t: _recipes(t, {"methods/bad.toml": "name = \n"}),
    "recipe_base_syntax": lambda t: _recipes(
        t,
        {"methods/_mybase.toml": "[budgets.smoke\n", "methods/bad.toml": 'include = "_mybase.toml"\n' + _method("bad")},
    ),
    "recipe_no_base": lambda t: _recipes(t, {"methods/bad.toml": 'include = "_nothere.toml"\n' + _method("bad")}),
    "recipe_unknown_key": lambda t: _recipes(t, {"methods/bad.toml": _method("bad", extra="colour = 'red'")}),
    "recipe_epochs": lambda t: _recipes(
        t, {"methods/bad.toml": _method("bad", budget="epochs = -1\nbatch_size = 8\nlr = 1e-3\nwarmup_epochs = 0")}
    ),
    "recipe_lr_nan": lambda t: _recipes(
        t, {"methods/bad.toml": _method("bad", budget="epochs = 1\nbatch_size = 8\nlr = nan\nwarmup_epochs = 0")}
    ),
    "recipe_smoothing": lambda t: _recipes(
        t,
        {
            "methods/bad.toml": _method(
                "bad", budget="epochs = 1\nbatch_size = 8\nlr = 1e-3\nwarmup_epochs = 0\nlabel_smoothing = 2.0"
            )
        },
    ),
    "recipe_missing_key": lambda t: _recipes(t, {"methods/bad.toml": _method("bad", budget="epochs = 1")}),
    "recipe_bad_name": lambda t: _recipes(t, {"methods/bad.toml": _method("other")}),
    "recipe_bad_loss": lambda t: _recipes(t, {"methods/bad.toml": _method("bad").replace('"ce"', '"nosuchloss"')}),
    "recipe_binary": lambda t: (_recipes(t, {}) / "methods" / "bad.toml").write_bytes(b"\xff\xfe\x00\x01"),
    "dataset_rho": lambda t: _recipes(
        t,
        {
            "datasets/bad_lt.toml": (Path(__file__).parents[1] / "datasets" / "digits_lt.toml")
            .read_text()
            .replace('name = "digits_lt"', 'name = "bad_lt"')
            .replace("rho = ", "rho = 0.5 #")
        },
    ),
    "profile_syntax": lambda t: (t / "profile.toml").write_text("[slurm\npartition = 1"),
    "profile_key": lambda t: (t / "profile.toml").write_text("[slurm]\npartitions = 'gpu'\n"),
    "profile_value": lambda t: (t / "profile.toml").write_text("[slurm]\ntime_min = -5\n"),
    "profile_type": lambda t: (t / "profile.toml").write_text("[slurm]\ngpus_per_job = 'two'\n"),
    "profile_not_table": lambda t: (t / "profile.toml").write_text("slurm = 3\n"),
    "cifar_empty": lambda t: (t / "cifar").mkdir(),
    "cifar_fake": lambda t: _fake_cifar(t),
    "cifar_evil": lambda t: _evil_cifar(t),
}


def _damage_checkpoint(t: Path, how: str) -> None:
    run_dir = _run_dir(t)
    (run_dir / "record.json").unlink()  # an interrupted run: a checkpoint and no record
    _forget_runs(t / "out" / "ltbench.db")
    ckpt = run_dir / "checkpoint.pt"
    if how == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    elif how == "text":
        ckpt.write_text("not a checkpoint")
    else:
        import torch

        torch.save({"epoch": Evil(t / "PWNED"), "model": {}}, ckpt)


def _fake_cifar(t: Path) -> None:
    from fakes import write_cifar

    write_cifar(t / "cifar", 10, 30, 4)


def _evil_cifar(t: Path) -> None:
    from fakes import write_cifar

    folder = write_cifar(t / "cifar", 10, 30, 4) / "cifar-10-batches-py"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil(t / "PWNED"), b"labels": [0]}, f)


# ------------------------------------------------------------------- the table
# (id, argv, setup, exit code, words the message must contain). In argv, {store} is the
# lab's store, {out} its --out, {bad} the file a setup made (t/bad.db), {t} the case folder.

ST, OUT = ["--store", "{store}"], ["--out", "{out}"]
CASES = [
    # run: values checked when the plan is made (the recipe's typed config), nothing written
    ("run-epochs-neg", [*DRY, *ST, *OUT, "--set", "epochs=-1"], None, 2, ["train.epochs", "-1", ">= 1", "--set"]),
    ("run-epochs-zero", [*DRY, *ST, *OUT, "--set", "epochs=0"], None, 2, ["train.epochs", ">= 1"]),
    ("run-batch-zero", [*DRY, *ST, *OUT, "--set", "batch_size=0"], None, 2, ["train.batch_size", ">= 1"]),
    ("run-patch-zero", [*DRY, *ST, *OUT, "--set", "patch_size=0"], None, 2, ["train.patch_size", ">= 1"]),
    ("run-lr-nan", [*DRY, *ST, *OUT, "--set", "lr=nan"], None, 2, ["train.lr", "nan", "> 0"]),
    ("run-lr-inf", [*DRY, *ST, *OUT, "--set", "lr=inf"], None, 2, ["train.lr", "> 0"]),
    ("run-lr-zero", [*DRY, *ST, *OUT, "--set", "lr=0"], None, 2, ["train.lr", "> 0"]),
    ("run-lr-neg", [*DRY, *ST, *OUT, "--set", "lr=-0.1"], None, 2, ["train.lr", "> 0"]),
    ("run-warmup-neg", [*DRY, *ST, *OUT, "--set", "warmup_epochs=-1"], None, 2, ["warmup_epochs", ">= 0"]),
    ("run-smoothing-high", [*DRY, *ST, *OUT, "--set", "label_smoothing=1.5"], None, 2, ["label_smoothing", "[0, 1]"]),
    ("run-smoothing-neg", [*DRY, *ST, *OUT, "--set", "label_smoothing=-0.1"], None, 2, ["label_smoothing", "[0, 1]"]),
    ("run-drop-path", [*DRY, *ST, *OUT, "--set", "drop_path=2"], None, 2, ["drop_path", "[0, 1]"]),
    ("run-mixup-neg", [*DRY, *ST, *OUT, "--set", "mixup=-1"], None, 2, ["train.mixup", ">= 0"]),
    ("run-decay-neg", [*DRY, *ST, *OUT, "--set", "weight_decay=-1"], None, 2, ["weight_decay", ">= 0"]),
    ("run-momentum", [*DRY, *ST, *OUT, "--set", "momentum=1.5"], None, 2, ["momentum", "[0, 1]"]),
    ("run-min-lr-neg", [*DRY, *ST, *OUT, "--set", "min_lr=-1"], None, 2, ["min_lr"]),
    ("run-min-lr-above", [*DRY, *ST, *OUT, "--set", "min_lr=1.0"], None, 2, ["min_lr", "lr"]),
    ("run-eval-batch", [*DRY, *ST, *OUT, "--set", "eval_batch_size=0"], None, 2, ["eval_batch_size", ">= 1"]),
    ("run-depth", [*DRY, *ST, *OUT, "--set", "depth=0"], None, 2, ["train.depth", ">= 1"]),
    ("run-heads", [*DRY, *ST, *OUT, "--set", "num_heads=0"], None, 2, ["num_heads", ">= 1"]),
    ("run-embed", [*DRY, *ST, *OUT, "--set", "embed_dim=0"], None, 2, ["embed_dim", ">= 1"]),
    ("run-grad-clip", [*DRY, *ST, *OUT, "--set", "grad_clip=-1"], None, 2, ["grad_clip", ">= 0"]),
    ("run-betas", [*DRY, *ST, *OUT, "--set", "betas=[2.0, 0.9]"], None, 2, ["betas", "[0, 1)"]),
    ("run-betas-three", [*DRY, *ST, *OUT, "--set", "betas=[0.9, 0.9, 0.9]"], None, 2, ["betas"]),
    ("run-rho-low", [*DRY, *ST, *OUT, "--set", "rho=0.5"], None, 2, ["data.longtail.rho", ">= 1", "digits_lt"]),
    ("run-rho-nan", [*DRY, *ST, *OUT, "--set", "rho=nan"], None, 2, ["longtail.rho"]),
    ("run-nmax-neg", [*DRY, *ST, *OUT, "--set", "n_max=-5"], None, 2, ["n_max", ">= 0"]),
    ("run-re-prob", [*DRY, *ST, *OUT, "--set", "re_prob=2"], None, 2, ["re_prob", "[0, 1]"]),
    ("run-crop-pad", [*DRY, *ST, *OUT, "--set", "crop_pad=-1"], None, 2, ["crop_pad", ">= 0"]),
    ("run-epochs-text", [*DRY, *ST, *OUT, "--set", "epochs=abc"], None, 2, ["epochs", "integer", "abc"]),
    ("run-epochs-float", [*DRY, *ST, *OUT, "--set", "epochs=1.5"], None, 2, ["epochs", "integer"]),
    ("run-unknown-key", [*DRY, *ST, *OUT, "--set", "nosuchkey=1"], None, 2, ["nosuchkey", "matches no setting"]),
    ("run-no-equals", [*DRY, *ST, *OUT, "--set", "epochs"], None, 2, ["epochs", "key=value"]),
    ("run-set-seed", [*DRY, *ST, *OUT, "--set", "seed=3"], None, 2, ["seed", "--seeds"]),
    ("run-set-name", [*DRY, *ST, *OUT, "--set", "method.name=x"], None, 2, ["method.name"]),
    ("run-methods-empty", ["run", "--methods", "", "--dry-run", *ST, *OUT], None, 2, ["--methods", "names nothing"]),
    ("run-methods-commas", ["run", "--methods", ",,", "--dry-run", *ST, *OUT], None, 2, ["--methods", "names nothing"]),
    ("run-methods-unknown", [*DRY[:1], "--methods", "cee", "--dry-run", *ST, *OUT], None, 2, ["cee", "ce"]),
    ("run-data-empty", ["run", "--data", "", "--dry-run", *ST, *OUT], None, 2, ["--data", "names nothing"]),
    ("run-data-unknown", ["run", "--methods", "ce", "--data", "digitz", "--dry-run", *ST, *OUT], None, 2, ["digitz"]),
    ("run-budget", ["run", "--methods", "ce", "--budget", "huge", "--dry-run", *ST, *OUT], None, 2, ["huge", "budget"]),
    ("run-seeds-neg", [*DRY, *ST, *OUT, "--seeds", "-1"], None, 2, ["-1", ">= 0"]),
    ("run-seeds-neg-range", [*DRY, *ST, *OUT, "--seeds", "0--3"], None, 2, ["0--3", ">= 0"]),
    ("run-seeds-reversed", [*DRY, *ST, *OUT, "--seeds", "5-2"], None, 2, ["5-2", "empty"]),
    ("run-seeds-text", [*DRY, *ST, *OUT, "--seeds", "a-b"], None, 2, ["a-b", "0-4"]),
    ("run-seeds-empty", [*DRY, *ST, *OUT, "--seeds", ""], None, 2, ["empty seed list"]),
    ("run-seeds-commas", [*DRY, *ST, *OUT, "--seeds", ",,"], None, 2, ["empty seed list"]),
    ("run-seeds-huge", [*DRY, *ST, *OUT, "--seeds", "0-100000000"], None, 2, ["100,000,001", "--allow-large-sweep"]),
    ("run-seeds-10001", [*DRY, *ST, *OUT, "--seeds", "0-10000"], None, 2, ["10,001", "--allow-large-sweep"]),
    ("run-data-seed-neg", [*DRY, *ST, *OUT, "--data-seed", "-1"], None, 2, ["--data-seed", ">= 0"]),
    ("run-data-seed-text", [*DRY, *ST, *OUT, "--data-seed", "x"], None, 2, ["--data-seed", "'x'"]),
    ("run-device-typo", [*RUN, *ST, *OUT, "--device", "cudaa"], None, 2, ["cudaa", "cpu"]),
    ("run-device-typo-dry", [*DRY, *ST, *OUT, "--device", "gpu"], None, 2, ["gpu", "cpu"]),
    ("run-device-nogpu", [*RUN, *ST, *OUT, "--device", "cuda"], "nogpu", 2, ["--device cuda", "no cuda gpu"]),
    ("run-device-index", [*RUN, *ST, *OUT, "--device", "cuda:99"], "nogpu", 2, ["cuda:99"]),
    ("run-executor", [*DRY, *ST, *OUT, "--executor", "k8s"], None, 2, ["--executor", "k8s"]),
    ("run-tracker-typo", [*DRY, *ST, *OUT, "--log", "tensorbored"], None, 2, ["tensorbored", "tensorboard, wandb"]),
    ("run-jobs-zero", [*DRY, *ST, *OUT, "--jobs", "0"], None, 2, ["--jobs", ">= 1"]),
    ("run-threads-zero", [*DRY, *ST, *OUT, "--threads", "0"], None, 2, ["--threads", ">= 1"]),
    ("run-jobs-env", [*DRY, *ST, *OUT], "jobs_env", 2, ["LTBENCH_JOBS", "'many'"]),
    ("run-cpus-zero", [*DRY, *ST, *OUT, "--cpus-per-job", "0"], None, 2, ["--cpus-per-job", ">= 1"]),
    ("run-recipes-missing", ["--recipes", "{t}/nowhere", *DRY, *ST, *OUT], None, 2, ["nowhere", "does not exist"]),
    ("recipe-syntax", REC, "recipe_syntax", 2, ["bad.toml", "not valid toml"]),
    ("recipe-base-syntax", REC, "recipe_base_syntax", 2, ["_mybase.toml"]),
    ("recipe-no-base", REC, "recipe_no_base", 2, ["_nothere.toml"]),
    ("recipe-unknown-key", REC, "recipe_unknown_key", 2, ["bad.toml", "colour"]),
    ("recipe-epochs", REC, "recipe_epochs", 2, ["bad.toml", "epochs", ">= 1"]),
    ("recipe-lr-nan", REC, "recipe_lr_nan", 2, ["bad.toml", "train.lr"]),
    ("recipe-smoothing", REC, "recipe_smoothing", 2, ["bad.toml", "[0, 1]"]),
    ("recipe-missing-key", REC, "recipe_missing_key", 2, ["bad.toml", "missing required key"]),
    ("recipe-bad-name", REC, "recipe_bad_name", 2, ["bad.toml", "other"]),
    ("recipe-bad-loss", REC, "recipe_bad_loss", 2, ["bad.toml", "nosuchloss"]),
    ("recipe-binary", REC, "recipe_binary", 2, ["bad.toml"]),
    ("dataset-rho", REC, "dataset_rho", 2, ["bad_lt.toml", "rho", ">= 1"]),
    ("list-recipe-syntax", ["--recipes", "{t}/recipes", "list", "--json"], "recipe_syntax", 2, ["bad.toml"]),
    (
        "profile-missing",
        [*RUN, *ST, *OUT, "--executor", "local", "--cluster-profile", "{t}/none.toml"],
        None,
        2,
        ["none.toml"],
    ),
    (
        "profile-syntax",
        [*RUN, *ST, *OUT, "--executor", "local", "--cluster-profile", "{t}/profile.toml"],
        "profile_syntax",
        2,
        ["profile.toml", "toml"],
    ),
    (
        "profile-key",
        [*RUN, *ST, *OUT, "--executor", "local", "--cluster-profile", "{t}/profile.toml"],
        "profile_key",
        2,
        ["profile.toml", "partitions"],
    ),
    (
        "profile-value",
        [*RUN, *ST, *OUT, "--executor", "local", "--cluster-profile", "{t}/profile.toml"],
        "profile_value",
        2,
        ["profile.toml", "time_min", ">= 1"],
    ),
    (
        "profile-type",
        [*RUN, *ST, *OUT, "--executor", "local", "--cluster-profile", "{t}/profile.toml"],
        "profile_type",
        2,
        ["profile.toml", "gpus_per_job"],
    ),
    (
        "profile-not-table",
        [*RUN, *ST, *OUT, "--executor", "local", "--cluster-profile", "{t}/profile.toml"],
        "profile_not_table",
        2,
        ["profile.toml", "table"],
    ),
    # run: stores that are not ltbench stores are refused untouched; --out that cannot be used
    ("run-store-text", [*DRY, "--store", "{bad}", *OUT], "text", 2, ["bad.db", "text file"]),
    ("run-store-text-real", [*RUN, "--store", "{bad}", *OUT], "text", 2, ["bad.db", "text file"]),
    ("run-store-binary", [*DRY, "--store", "{bad}", *OUT], "binary", 2, ["bad.db", "binary data"]),
    ("run-store-truncated", [*RUN, "--store", "{bad}", *OUT], "truncated", 2, ["bad.db", "truncated"]),
    ("run-store-garbled", [*RUN, "--store", "{bad}", *OUT], "garbled", 2, ["bad.db", "damaged"]),
    ("run-store-header", [*RUN, "--store", "{bad}", *OUT], "header", 2, ["bad.db", "truncated"]),
    ("run-store-dir", [*RUN, "--store", "{bad}", *OUT], "dir", 2, ["bad.db", "folder"]),
    ("run-store-other", [*RUN, "--store", "{bad}", *OUT], "other", 2, ["bad.db", "another program", "contacts"]),
    ("run-store-other-dry", [*DRY, "--store", "{bad}", *OUT], "other", 2, ["bad.db", "another program"]),
    ("run-store-metrics-only", [*RUN, "--store", "{bad}", *OUT], "metrics_only", 2, ["bad.db", "another program"]),
    ("run-out-is-file", [*RUN, *ST, "--out", "{t}/afile"], "out_is_file", 2, ["afile", "not a folder"]),
    ("run-ckpt-truncated", [*RUN1, *ST, *OUT, "--device", "cpu"], "ckpt_truncated", 2, ["checkpoint.pt", "delete it"]),
    ("run-ckpt-text", [*RUN1, *ST, *OUT, "--device", "cpu"], "ckpt_text", 2, ["checkpoint.pt", "delete it"]),
    ("run-ckpt-evil", [*RUN1, *ST, *OUT, "--device", "cpu"], "ckpt_evil", 2, ["checkpoint.pt", "cannot be read"]),
    # status
    ("status-no-sweep", ["status", "--out", "{t}/nowhere"], None, 2, ["nowhere", "no sweep"]),
    ("status-sweep-gone", ["status", *OUT], "sweep_gone", 2, ["latest.json", "no sweep"]),
    ("status-sweep-garbled", ["status", *OUT], "sweep_garbled", 2, ["latest.json", "not valid json"]),
    ("status-sweep-binary", ["status", *OUT], "sweep_binary", 2, ["latest.json"]),
    ("status-sweep-dict", ["status", *OUT], "sweep_dict", 2, ["latest.json", "not a list"]),
    ("status-sweep-no-key", ["status", *OUT], "sweep_no_key", 2, ["latest.json", "run_dir"]),
    ("status-sweep-not-rows", ["status", *OUT], "sweep_not_rows", 2, ["latest.json", "run 0"]),
    ("status-ckpt-truncated", ["status", *OUT], "ckpt_truncated", 1, ["damaged", "checkpoint.pt"]),
    ("status-ckpt-evil", ["status", *OUT, "--json"], "ckpt_evil", 1, ["damaged", "checkpoint.pt"]),
    ("status-record-garbled", ["status", *OUT], "record_garbled", 2, ["record.json", "damaged"]),
    ("status-record-list", ["status", *OUT], "record_list", 2, ["record.json", "not a json table"]),
    ("status-job-garbled", ["status", *OUT], "job_garbled", 2, ["job.json", "damaged"]),
    # results / show / report / ingest on stores that are not ltbench stores
    ("results-missing", ["results", "--store", "{t}/none.db"], None, 2, ["none.db", "no results store"]),
    ("results-text", ["results", "--store", "{bad}"], "text", 2, ["bad.db", "text file"]),
    ("results-binary", ["results", "--store", "{bad}"], "binary", 2, ["bad.db", "binary"]),
    ("results-truncated", ["results", "--store", "{bad}"], "truncated", 2, ["bad.db", "truncated"]),
    ("results-garbled", ["results", "--store", "{bad}"], "garbled", 2, ["bad.db", "damaged"]),
    ("results-dir", ["results", "--store", "{bad}"], "dir", 2, ["bad.db", "folder"]),
    ("results-other", ["results", "--store", "{bad}"], "other", 2, ["bad.db", "another program", "contacts"]),
    ("report-text", ["report", "--store", "{bad}", "--out", "{t}/rep"], "text", 2, ["bad.db", "text file"]),
    ("report-other", ["report", "--store", "{bad}", "--out", "{t}/rep"], "other", 2, ["bad.db", "another program"]),
    ("report-garbled", ["report", "--store", "{bad}", "--out", "{t}/rep"], "garbled", 2, ["bad.db", "damaged"]),
    ("report-out-is-file", ["report", *ST, "--out", "{t}/afile"], "out_is_file", 2, ["afile"]),
    ("report-methods-empty", ["report", *ST, "--methods", ""], None, 2, ["--methods", "names nothing"]),
    ("report-no-match", ["report", *ST, "--data", "nothing_lt", "--out", "{t}/rep"], None, 2, ["--data nothing_lt"]),
    ("report-convention", ["report", *ST, "--convention", "median"], None, 2, ["--convention", "median"]),
    ("show-not-hex", ["show", "zzz", *ST], None, 2, ["zzz", "not a run id"]),
    ("show-no-match", ["show", "abcdef", *ST], None, 2, ["abcdef", "no run id"]),
    ("show-text", ["show", "abc", "--store", "{bad}"], "text", 2, ["bad.db", "text file"]),
    ("show-other", ["show", "abc", "--store", "{bad}"], "other", 2, ["bad.db", "another program"]),
    ("ingest-no-folder", ["ingest", "{t}/nowhere", *ST], None, 2, ["nowhere", "no folder"]),
    ("ingest-other", ["ingest", "{out}/runs", "--store", "{bad}"], "other", 2, ["bad.db", "another program"]),
    ("reproduce-text", ["reproduce", "abc", "--store", "{bad}"], "text", 2, ["bad.db", "text file"]),
    ("reproduce-device", ["reproduce", "abc", *ST, "--device", "cudaa"], None, 2, ["cudaa", "cpu"]),
    # data
    ("data-unknown", ["data", "describe", "cifar11_lt"], None, 2, ["cifar11_lt", "cifar10_lt"]),
    (
        "data-cifar-missing",
        ["data", "describe", "cifar10_lt", "--root", "{t}/cifar"],
        "cifar_empty",
        2,
        ["cifar", "not found"],
    ),
    (
        "data-cifar-not-official",
        ["data", "describe", "cifar10_lt", "--root", "{t}/cifar", "--set", "n_max=20", "--set", "rho=10"],
        "cifar_fake",
        1,
        ["data_batch_1", "differ from the official"],
    ),
    ("data-cifar-evil", ["data", "describe", "cifar10_lt", "--root", "{t}/cifar"], "cifar_evil", 2, ["data_batch_1"]),
    ("data-data-seed", ["data", "describe", "mnist_lt", "--data-seed", "-1"], None, 2, ["--data-seed", ">= 0"]),
    ("data-set-rho", ["data", "describe", "mnist_lt", "--set", "rho=0"], None, 2, ["rho", ">= 1"]),
    ("data-set-unknown", ["data", "describe", "mnist_lt", "--set", "nosuch=1"], None, 2, ["nosuch"]),
    ("data-action", ["data", "erase", "mnist_lt"], None, 2, ["erase"]),
    ("data-download-unknown", ["data", "download", "nosuch_lt", "--root", "{t}/dl"], None, 2, ["nosuch_lt"]),
    # bench
    ("bench-epochs-neg", ["bench", "--epochs", "-3"], None, 2, ["--epochs", ">= 1"]),
    ("bench-epochs-zero", ["bench", "--epochs", "0"], None, 2, ["--epochs", ">= 1"]),
    ("bench-epochs-text", ["bench", "--epochs", "many"], None, 2, ["--epochs", "many"]),
    ("bench-method", ["bench", "--method", "nosuch", "--data", "digits_lt", "--budget", "smoke"], None, 2, ["nosuch"]),
    ("bench-device", ["bench", "--device", "cudaa"], None, 2, ["cudaa"]),
    ("bench-lr", ["bench", "--data", "digits_lt", "--budget", "smoke", "--set", "lr=nan"], None, 2, ["train.lr"]),
    ("bench-report-runs", ["bench", "--report-runs", "-1"], None, 2, ["--report-runs"]),
    ("bench-workers", ["bench", "--reference-workers", "-2"], None, 2, ["--reference-workers"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, here, capsys, monkeypatch):
    name, argv, setup, want, words = case
    t = here
    if setup == "jobs_env":
        monkeypatch.setenv("LTBENCH_JOBS", "many")
    elif setup == "nogpu":
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    elif setup is not None:
        SETUPS[setup](t)
    subs = {"{store}": "out/ltbench.db", "{out}": "out", "{bad}": "bad.db", "{t}": "."}
    args = [a for a in argv]
    for key, value in subs.items():
        args = [a.replace(key, value) for a in args]
    before = tree_hash(t)
    code, stdout, stderr = call(args, capsys)
    text = stdout + stderr
    assert code == want, text
    assert "Traceback" not in text and 'File "' not in text, text
    low = " ".join(text.lower().split())
    for w in words:
        assert w.lower() in low, f"{w!r} not in: {text}"
    if want == 2:  # one error line (argparse adds its usage line before it)
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, stderr
    assert tree_hash(t) == before, "the store, --out or the case's files changed"
    assert not (t / "PWNED").exists(), "code ran from data"


# ------------------------------------------------------------------- beyond the table


def test_another_programs_sqlite_is_left_byte_for_byte(tmp_path, capsys):
    """No WAL switch, no tables: the file and its folder stay exactly as they were."""
    other = tmp_path / "app.db"
    _sqlite_other(other)
    before = (other.read_bytes(), sorted(os.listdir(tmp_path)))
    for argv in (["results", "--store", str(other)], ["ingest", str(tmp_path), "--store", str(other)]):
        code, _, err = call(argv, capsys)
        assert code == 2 and "another program" in err
    assert (other.read_bytes(), sorted(os.listdir(tmp_path))) == before
    with sqlite3.connect(other) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_read_commands_open_the_store_read_only(here, capsys):
    """A store whose file cannot be written is read (SQLite mode=ro); nothing is written."""
    store = here / "out" / "ltbench.db"
    before = store.read_bytes()
    os.chmod(store, 0o444)
    try:
        for argv in (["results", "--json"], ["run", *DRY[1:], *OUT]):
            argv = [a.replace("{out}", str(here / "out")) for a in argv]
            code, out, err = call([*argv, "--store", str(store)], capsys)
            assert code == 0, err
        code, out, err = call(["show", _run_dir(here).name.rsplit("-", 1)[1], "--store", str(store)], capsys)
        assert code == 0, err
    finally:
        os.chmod(store, 0o644)
    assert store.read_bytes() == before


@pytest.fixture
def read_only(tmp_path):
    """A read-only view of a folder (a read-only bind mount; chmod for non-root users)."""
    mounts = []

    def make(src: Path) -> Path:
        if os.geteuid() != 0:
            for p in [src, *src.rglob("*")]:
                p.chmod(p.stat().st_mode & ~0o222)
            return src
        dst = tmp_path / f"ro{len(mounts)}"
        dst.mkdir()
        for cmd in (["mount", "--bind", str(src), str(dst)], ["mount", "-o", "remount,ro,bind", str(dst)]):
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                if mounts or cmd[1] == "-o":
                    subprocess.run(["umount", str(dst)], capture_output=True)
                pytest.skip("no read-only mount here (needs root and mount permission)")
        mounts.append(dst)
        return dst

    yield make
    for m in mounts:
        subprocess.run(["umount", str(m)], capture_output=True)


def test_a_store_on_a_read_only_disk_is_read_and_never_written(here, read_only, capsys):
    # An orphan record (a finished run the store lacks): the sync cannot write, says so, goes on.
    import json

    run_dir = _run_dir(here)
    orphan = run_dir.with_name("smoke-s9-d0-aaaaaaaaaa")
    shutil.copytree(run_dir, orphan)
    record = json.loads((orphan / "record.json").read_text())
    record.update(run_id="a" * 64, seed=9, run_dir=str(orphan))
    (orphan / "record.json").write_text(json.dumps(record))
    ro = read_only(here / "out")
    before = tree_hash(here / "out")
    code, out, err = call(["results", "--json", "--store", str(ro / "ltbench.db")], capsys)
    assert code == 0, err
    assert "read-only" in err and len([line for line in err.splitlines() if line.startswith("note:")]) == 1
    assert "Traceback" not in err
    code, out, err = call(["status", "--out", str(ro)], capsys)
    assert code == 0, err
    # Writing there: one line naming the place.
    code, out, err = call([*RUN, "--store", str(ro / "new.db"), "--out", str(here / "elsewhere")], capsys)
    assert code == 2 and "new.db" in err and "Traceback" not in err, err
    code, out, err = call([*RUN, "--store", str(here / "s.db"), "--out", str(ro / "sub")], capsys)
    assert code == 2 and "sub" in err and "Traceback" not in err, err
    code, out, err = call(["report", "--store", str(ro / "ltbench.db"), "--out", str(ro / "rep")], capsys)
    assert code == 2 and "rep" in err and "Traceback" not in err, err
    assert tree_hash(here / "out") == before


def test_the_seed_range_is_counted_before_any_list_is_made():
    from ltbench.cli.args import parse_seeds

    with pytest.raises(Exception, match="--allow-large-sweep"):
        parse_seeds("0-1000000000000000")  # a list this long would not fit in memory
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert len(parse_seeds("0-10000", limit=20_000)) == 10_001


def test_a_run_started_twice_at_once_trains_once(here):
    """Two processes on one run: one trains, the other waits and finds it done."""
    store, out = here / "two.db", here / "two"
    argv = [*RUN, "--set", "epochs=1", "--store", str(store), "--out", str(out), "--device", "cpu"]
    import multiprocessing as mp

    ctx = mp.get_context("fork")  # torch and the recipes are loaded already: forks start at once
    procs = [ctx.Process(target=_main_to_file, args=(argv, here / f"err{i}.txt")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    errs = [(here / f"err{i}.txt").read_text() for i in range(2)]
    assert [p.exitcode for p in procs] == [0, 0], errs
    assert sum("skipped" in e for e in errs) == 1, errs  # the second waited, then found it done
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*), min(status) FROM runs").fetchone() == (1, "done")
    assert not list(out.rglob("*.lock")) and not list(out.rglob("*.tmp"))


def _main_to_file(argv, path: Path) -> None:
    import contextlib

    with open(path, "w") as f, contextlib.redirect_stderr(f), contextlib.redirect_stdout(f):
        code = main(argv)
    os._exit(code)


def test_a_stale_lock_is_reclaimed_and_a_live_one_reported(tmp_path):
    import json
    import socket

    from ltbench.core.errors import RunLockedError
    from ltbench.execution.runlock import RunLock

    run_dir = tmp_path / "runs" / "x"
    lock = RunLock(run_dir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.path.parent.mkdir(parents=True)
    lock.path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "token": "old"}))
    with RunLock(run_dir, wait=False) as held:  # the owner is gone: reclaimed
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match="already running"):
            RunLock(run_dir, wait=False).acquire()  # a live owner (this process): reported
    assert not lock.path.exists()


def test_a_bug_keeps_its_traceback(here, monkeypatch):
    """A ValueError raised outside ltbench's own code (here json's) is a bug, not a user error."""
    import json

    import ltbench.api

    monkeypatch.setattr(ltbench.api, "results", lambda *a, **k: json.loads("{"))
    with pytest.raises(json.JSONDecodeError):
        main(["results", "--store", "out/ltbench.db"])


def test_the_console_script_gives_one_line_and_status_2(tmp_path):
    (tmp_path / "notes.txt").write_text("shopping list\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ltbench", "results", "--store", str(tmp_path / "notes.txt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "notes.txt" in proc.stderr and "text file" in proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "shopping list\n"
