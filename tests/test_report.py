"""Report tables and plots from hand-made records, with cells worked out by hand."""

import pytest

from ltbench.reporting import aggregate, latex_table, markdown_table, runs_frame, write_report


def record(method, seed, correct, counts=(150, 50, 10), total=None, status="done", dataset="toy", best=None):
    total = list(total or [10] * len(counts))
    results = {"last": {"epoch": 3, "correct": list(correct), "total": total}}
    if best is not None:
        results["best_val"] = {"epoch": 2, "correct": list(best), "total": total}
    return {"run_id": f"{method}-{seed}-{dataset}", "method": method, "dataset": dataset, "budget": "quick",
            "seed": seed, "data_seed": 0, "status": status, "train_counts": list(counts),
            "index_sizes": [1, 1, len(counts) - 2], "results": results}


# counts (150, 50, 10): one class per group under the default threshold convention.
RECORDS = [
    record("ce", 0, [8, 5, 1]),      # many 80, medium 50, few 10, all 14/30
    record("ce", 1, [9, 5, 3]),      # many 90, medium 50, few 30, all 17/30
    record("bal_bce", 0, [7, 6, 4]),  # single seed
    record("la", 0, [0, 0, 0], status="failed"),
]


def table():
    return aggregate(runs_frame(RECORDS))


def test_frame_recomputes_groups_and_ignores_failed():
    f = runs_frame(RECORDS)
    assert list(f["method"]) == ["ce", "ce", "bal_bce"]
    assert f.iloc[0][["many", "medium", "few"]].tolist() == pytest.approx([0.8, 0.5, 0.1])
    assert f.iloc[1]["top1"] == pytest.approx(17 / 30)


def test_aggregate_mean_std_n():
    agg = table()
    ce = agg[agg["method"] == "ce"].iloc[0]
    assert ce["many_mean"] == pytest.approx(0.85) and ce["many_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert ce["n"] == 2
    assert agg[agg["method"] == "bal_bce"].iloc[0]["many_std"] != agg[agg["method"] == "bal_bce"].iloc[0]["many_std"]  # NaN


def test_latex_cells_bold_and_mean_std():
    tex = latex_table(table())
    ce = next(line for line in tex.splitlines() if line.startswith("ce &"))
    bal = next(line for line in tex.splitlines() if line.startswith("bal\\_bce &"))
    # ce: many 85.0 ± 7.1 (best), medium 50.0 ± 0.0, few 20.0 ± 14.1, all 51.7 ± 7.1
    assert ce == "ce & \\textbf{85.0} $\\pm$ 7.1 & 50.0 $\\pm$ 0.0 & 20.0 $\\pm$ 14.1 & 51.7 $\\pm$ 7.1 \\\\"
    # bal_bce (one seed): many 70.0, medium 60.0 (best), few 40.0 (best), all 56.7 (best)
    assert bal == "bal\\_bce & 70.0 & \\textbf{60.0} & \\textbf{40.0} & \\textbf{56.7} \\\\"
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\multicolumn{4}{c}{toy}" in tex


def test_empty_group_is_a_dash_not_zero():
    recs = [record("ce", 0, [9, 8, 5], counts=(150, 120, 50))]  # no class under 20 images
    agg = aggregate(runs_frame(recs))
    assert "ce & \\textbf{85.0} & \\textbf{50.0} & -- & \\textbf{73.3} \\\\" in latex_table(agg).splitlines()
    row = markdown_table(agg).splitlines()[2]
    assert row == "| ce | **85.0** | **50.0** | – | **73.3** | 1 |"


def test_regrouping_under_each_convention():
    # counts (100, 20, 5); accuracies 0.9, 0.6, 0.2.
    rec = record("ce", 0, [9, 6, 2], counts=(100, 20, 5))
    thr = runs_frame([rec], "threshold").iloc[0]
    assert thr["many"] != thr["many"]  # 100 is not > 100: no many class (NaN)
    assert thr["medium"] == pytest.approx(0.75) and thr["few"] == pytest.approx(0.2)
    oltr = runs_frame([rec], "oltr").iloc[0]
    assert oltr["many"] == pytest.approx(0.9) and oltr["medium"] != oltr["medium"]
    assert oltr["few"] == pytest.approx(0.4)  # 20 <= 20 and 5: (0.6 + 0.2) / 2
    idx = runs_frame([rec], "index").iloc[0]  # blocks 1 / 1 / 1 of frequency-sorted classes
    assert [idx["many"], idx["medium"], idx["few"]] == pytest.approx([0.9, 0.6, 0.2])


def test_best_val_selection():
    rec = record("ce", 0, [1, 1, 1], best=[10, 10, 10])
    assert runs_frame([rec], selection="best_val").iloc[0]["top1"] == pytest.approx(1.0)
    assert runs_frame([record("ce", 0, [1, 1, 1])], selection="best_val").empty
    with pytest.raises(ValueError, match="choose one of last, best_val"):
        runs_frame([rec], selection="best_test")


def test_write_report_files(tmp_path):
    paths = write_report(RECORDS, tmp_path / "rep")
    assert set(paths) == {"latex", "markdown", "plot"}
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert "model selection: last epoch" in paths["latex"].read_text()
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["per_class.png", "table.md", "table.tex"]
    with pytest.raises(ValueError, match="no finished runs"):
        write_report([RECORDS[-1]], tmp_path / "empty")
