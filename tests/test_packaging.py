"""The wheel ships the recipes, so a plain `pip install .` finds them outside the repo."""

import subprocess
import sys
import zipfile

import pytest


@pytest.mark.slow
def test_wheel_contains_recipes(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("ltbench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in ("methods/ce.toml", "methods/_vit.toml", "methods/bal_bce.toml", "datasets/mnist_lt.toml"):
        assert f"ltbench/_recipes/{recipe}" in names
    assert "ltbench/cli.py" in names
