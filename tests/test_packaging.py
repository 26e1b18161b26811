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
    source = {p.relative_to(root).as_posix() for p in (root / "ltbench").rglob("*.py")}
    assert source - names == set()  # every module of every subpackage ships
    # Installed, the recipes are found inside the package (config/ sits one level below it).
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = "from ltbench.config.recipe_files import builtin_recipe_dir as d; print(d())"
    found = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path / "site")},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert found == str(tmp_path / "site" / "ltbench" / "_recipes")
