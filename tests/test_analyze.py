"""`ltbench analyze`: attention distance and effective rank against answers known by hand, and
end to end on stored runs of a tiny DeiT and a CIFAR ResNet built from ltbench's registry."""

import json
import math

import numpy as np
import pytest
import torch

from ltbench.cli import main
from ltbench.config.record import RECORD_SCHEMA
from ltbench.config.run_config import resolve
from ltbench.reports.analyze import (
    analyze_model,
    analyze_runs,
    attention_distance,
    effective_rank,
    mean_attention_distance,
)
from ltbench.store.records import write_record
from ltbench.store.sqlite import ResultStore
from ltbench.training.models import build_model

# Uniform attention over a 2x2 grid: from any patch the distances are 0, 1, 1 and sqrt(2) patches.
UNIFORM_2X2 = (2 + math.sqrt(2)) / 4


# ------------------------------------------------------------------ effective rank


@pytest.mark.parametrize("k", [1, 3, 7])
def test_effective_rank_of_k_equal_singular_values_is_k(k):
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(40, k)))
    v, _ = np.linalg.qr(rng.normal(size=(12, k)))
    x = 2.5 * u @ v.T  # singular values: k times 2.5, the rest 0
    assert effective_rank(x, center=False) == pytest.approx(k, abs=1e-9)


def test_effective_rank_centres_the_features():
    # Rows +e_i and -e_i: already centred, k equal singular values, so rank k either way.
    k = 4
    x = np.concatenate([np.eye(k, 9), -np.eye(k, 9)])
    assert effective_rank(x) == pytest.approx(k, abs=1e-9)
    # A constant offset changes nothing once centred; uncentred it dominates the spectrum.
    assert effective_rank(x + 3.0) == pytest.approx(k, abs=1e-9)
    assert effective_rank(x + 3.0, center=False) < k - 1


def test_effective_rank_of_rank_one_is_one():
    t = np.linspace(-1, 1, 50)
    assert effective_rank(np.outer(t, np.arange(1.0, 7.0))) == pytest.approx(1.0, abs=1e-9)
    assert effective_rank(np.zeros((5, 3))) == 0.0
    with pytest.raises(ValueError, match="samples, dims"):
        effective_rank(np.zeros(5))


# ------------------------------------------------------------------ attention distance


def test_attention_to_self_only_has_distance_zero():
    attn = torch.eye(4).expand(3, 2, 4, 4)  # 3 images, 2 heads, 2x2 grid
    assert torch.equal(mean_attention_distance(attn, (2, 2), 16), torch.zeros(3, 2, dtype=torch.float64))


def test_uniform_attention_on_a_2x2_grid():
    attn = torch.full((1, 1, 4, 4), 0.25)
    assert mean_attention_distance(attn, (2, 2), 16).item() == pytest.approx(16 * UNIFORM_2X2)
    # With CLS and DIST tokens taking half the attention: dropped, the rest renormalised.
    full = torch.zeros(1, 1, 6, 6)
    full[..., :2] = 0.25
    full[..., 2:] = 0.125
    assert mean_attention_distance(full, (2, 2), 16, num_prefix_tokens=2).item() == pytest.approx(16 * UNIFORM_2X2)
    # A query attending only to its horizontal neighbour is one patch (16 px) away.
    right = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.float32)
    assert mean_attention_distance(right[None, None], (2, 2), 16).item() == pytest.approx(16)


# ------------------------------------------------------------------ tiny models from the registry


def _tiny(catalog, method):
    return resolve(catalog.methods.get(method), catalog.datasets.get("digits_lt"), "smoke", 0, 0, ("depth=2",))


def test_hooks_give_timm_own_attention(catalog, digits):
    model = build_model(_tiny(catalog, "deit_lt")).eval()
    x = torch.randn(6, 1, 8, 8)
    seen = []
    for blk in model.blocks:  # timm's unfused path passes the softmax through attn_drop
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(lambda m, a, out: seen.append(out))
    mine = attention_distance(model, x)
    grid, patch = tuple(model.patch_embed.grid_size), model.patch_embed.patch_size
    theirs = torch.stack([mean_attention_distance(a, grid, patch, 2).mean(0) for a in seen]).numpy()
    assert mine.shape == (2, model.blocks[0].attn.num_heads)
    np.testing.assert_allclose(mine, theirs, rtol=1e-5)


def _store(tmp_path, catalog, digits):
    """A store with a tiny DeiT (q and k zeroed: uniform attention) and a tiny CIFAR ResNet, each
    with its record and untrained weights in its run folder, as ``ltbench run`` leaves them."""
    db = ResultStore(tmp_path / "s.db")
    ids = {}
    for method, rid in (("deit_lt", "abc1" + "0" * 60), ("cnn_ce", "abd2" + "0" * 60)):
        cfg = _tiny(catalog, method)
        torch.manual_seed(0)
        model = build_model(cfg)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".qkv." in name:  # q and k rows zero, v kept: the image still reaches CLS and DIST
                    p[: 2 * len(p) // 3].zero_()
        run_dir = tmp_path / "runs" / "digits_lt" / method / "smoke-s0-d0-x"
        run_dir.mkdir(parents=True)
        torch.save({"model": model.state_dict()}, run_dir / "checkpoint.pt")
        record = {
            "schema": RECORD_SCHEMA,
            "run_id": rid,
            "method": method,
            "dataset": "digits_lt",
            "budget": "smoke",
            "seed": 0,
            "data_seed": 0,
            "status": "done",
            "config": cfg.to_dict(),
            "needs": {},
            "provenance": {"data_root": None, "data_verified": True, "data_fingerprint": digits.fingerprint()},
            "run_dir": str(run_dir),
            "finished_at": "2025-01-01T00:00:00+00:00",
        }
        write_record(record, run_dir)
        db.ingest(record)
        ids[method] = rid
    return ids


@pytest.fixture
def stored(tmp_path, catalog, digits):
    return tmp_path, _store(tmp_path, catalog, digits)


def test_analyze_stored_runs_end_to_end(stored):
    from io import StringIO

    from rich.console import Console

    folder, ids = stored
    out = analyze_runs(
        folder / "s.db", [ids["deit_lt"][:4], ids["cnn_ce"][:4]], n_images=40, console=Console(file=StringIO())
    )
    deit, cnn = out["results"]
    assert deit["n_images"] == 40 and deit["data_matches_record"] and deit["grid"] == [2, 2]
    # q, k zeroed: every query attends evenly to every token, so (2 + sqrt 2) / 4 patches of 4 px.
    assert deit["attention_distance"] == pytest.approx([4 * UNIFORM_2X2] * 2)
    assert np.asarray(deit["attention_distance_per_head"]).shape == (2, 2)
    assert set(deit["effective_rank"]) == {"cls", "dist"}
    assert all(1 <= r <= deit["feature_dim"]["cls"] for r in deit["effective_rank"].values())
    assert cnn["attention_distance"] is None and "does not apply" in cnn["attention_note"]
    assert set(cnn["effective_rank"]) == {"pooled"}
    files = out["files"]
    assert json.loads(files[f"json {ids['deit_lt'][:10]}"].read_text())["run_id"] == ids["deit_lt"]
    csv_text = files[f"csv {ids['deit_lt'][:10]}"].read_text()
    assert "attention_distance_px" in csv_text and "effective_rank_dist" in csv_text
    assert files["png"].stat().st_size > 10_000 and files["pdf"].read_bytes()[:4] == b"%PDF"
    assert files["png"].parent == folder / "analysis"


def test_the_figure_takes_the_reports_colours_and_order():
    from matplotlib.colors import to_hex

    from ltbench.reports.analyze import figure_analysis
    from ltbench.reports.plot_style import MethodStyle

    def result(method, model, seed, ranks, heads=None):
        return {
            "run_id": f"{method}{seed}".ljust(12, "0"), "method": method, "model": model, "seed": seed,
            "attention_distance_per_head": heads, "grid": None if heads is None else [2, 2],
            "patch_size": [4, 4], "effective_rank": ranks, "n_images": 8,
        }  # fmt: skip

    heads = [[1.0, 2.0], [3.0, 4.0]]
    results = [
        result("ce", "vit", 1, {"cls": 3.0}, heads),
        result("deit_lt", "deit", 0, {"cls": 2.0, "dist": 2.5}, heads),
        result("ce", "vit", 0, {"cls": 3.5}, heads),
        result("cnn_ce", "cnn", 0, {"pooled": 4.0}),
    ]
    fig = figure_analysis(results)
    ax_att, ax_rank = fig.axes
    style = MethodStyle({"ce": "vit", "deit_lt": "deit", "cnn_ce": "cnn"})
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    # Family, then name, then seed; the uniform-attention reference last.
    assert [label.split()[0] for label in labels] == ["cnn_ce", "deit_lt", "ce", "ce", "uniform"]
    assert labels[2].startswith("ce s0") and labels[3].startswith("ce s1")
    lines = {line.get_label(): line for line in ax_att.lines if not line.get_label().startswith("_")}
    ce0, ce1 = (lines[label] for label in labels[2:4])
    assert to_hex(ce0.get_color()) == to_hex(ce1.get_color()) == to_hex(style("ce").colour)
    assert ce0.get_marker() != ce1.get_marker()  # seeds of one method: one colour, two markers
    bar_colours = {to_hex(b.get_facecolor()) for b in ax_rank.patches}
    assert bar_colours == {to_hex(style(m).colour) for m in ("ce", "deit_lt", "cnn_ce")}


def test_cnn_features_are_the_pooled_penultimate_ones(catalog):
    model = build_model(_tiny(catalog, "cnn_ce")).eval()
    x = torch.randn(5, 1, 8, 8)
    found = analyze_model(model, x)
    assert found["attention"] is None and found["features"]["pooled"].shape == (5, 64)
    with pytest.raises(ValueError, match="not a ViT"):
        attention_distance(model, x)


def _cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_errors_name_the_fix(stored, capsys):
    folder, ids = stored
    store = ["--store", str(folder / "s.db")]
    code, _, err = _cli(["analyze", "ffff", *store], capsys)
    assert code == 2 and "no run id starts with 'ffff'" in err and "ltbench results" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _cli(["analyze", "ab", *store], capsys)
    assert code == 2 and "ambiguous" in err and "give more of it" in err
    (folder / "runs" / "digits_lt" / "cnn_ce" / "smoke-s0-d0-x" / "checkpoint.pt").unlink()
    code, _, err = _cli(["analyze", ids["deit_lt"][:4], "abd2", *store], capsys)
    assert code == 2 and "has no checkpoint.pt" in err
    assert not (folder / "analysis").exists()  # every run checked before any work


def test_cli_analyze_prints_and_writes(stored, capsys):
    folder, ids = stored
    args = ["analyze", "abc1", "--store", str(folder / "s.db"), "--images", "20", "--out", str(folder / "an")]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    text = " ".join(out.split())  # rich wraps at the terminal's width
    assert "deit_lt abc1000000: attention distance (px) by block: 3.4, 3.4; effective rank cls" in text
    assert (folder / "an" / "analysis.png").is_file()
