"""Report tables and plots from hand-made records, with every expected cell worked out by hand."""

import os

import pytest
from fakes import compile_latex, record

from ltbench.reports.plot_classes import plot_per_class
from ltbench.reports.runs import aggregate, runs_frame
from ltbench.reports.tables import latex_table, markdown_table
from ltbench.reports.write import select_records, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# counts (150, 50, 10): one class per group under the default threshold convention.
RECORDS = [
    record("ce", 0, [8, 5, 1]),  # many 80, medium 50, few 10, all 14/30 = 46.7
    record("ce", 1, [9, 5, 3]),  # many 90, medium 50, few 30, all 17/30 = 56.7
    record("bal_bce", 0, [7, 6, 4]),  # one seed: many 70, medium 60, few 40, all 17/30 = 56.7
    record("la", 0, [10, 10, 10], status="failed"),  # would be best everywhere if counted
]
# ce over 2 seeds: many 85.0 ± 7.1, medium 50.0 ± 0.0, few 20.0 ± 14.1, all 51.7 ± 7.1
# (std of {a, b} with ddof 1 is |a - b| / sqrt 2: 10 / 1.414 = 7.07, 20 / 1.414 = 14.14).
# Tail metrics (per-class accuracies are the groups' here): worst = min, H-mean = 3 / sum 1/acc.
# ce seed 0: worst 10, H-mean 3 / (1.25 + 2 + 10) = 22.64; seed 1: worst 30, H-mean
# 3 / (1.111 + 2 + 3.333) = 46.55; so worst 20.0 ± 14.1, H-mean 34.6 ± 16.9 (23.91 / 1.414).
# bal_bce: worst 40.0, H-mean 3 / (1.429 + 1.667 + 2.5) = 53.6.


def line_of(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


def test_frame_recomputes_groups_and_ignores_failed():
    f = runs_frame(RECORDS)
    assert list(f["method"]) == ["ce", "ce", "bal_bce"]
    assert list(f.columns) == [
        "method",
        "dataset",
        "budget",
        "seed",
        "data_seed",
        "run_id",
        "top1",
        "many",
        "medium",
        "few",
        "worst",
        "hmean",
        "ece",
        "variant",
        "label",
        "base_method",
    ]
    assert f.iloc[0][["many", "medium", "few"]].tolist() == pytest.approx([0.8, 0.5, 0.1])
    # per-class 0.8, 0.5, 0.1: worst 0.1, harmonic mean 3 / (1.25 + 2 + 10)
    assert f.iloc[0][["worst", "hmean"]].tolist() == pytest.approx([0.1, 3 / 13.25])
    assert f.iloc[1]["top1"] == pytest.approx(17 / 30)
    assert f["ece"].isna().all()  # no calibration bins in these records


def test_aggregate_mean_std_n_in_first_seen_order():
    agg = aggregate(runs_frame(RECORDS))
    assert list(agg["method"]) == ["ce", "bal_bce"]
    ce, bal = agg.iloc[0], agg.iloc[1]
    assert ce["many_mean"] == pytest.approx(0.85) and ce["many_std"] == pytest.approx(0.1 / 2**0.5)
    assert ce["top1_mean"] == pytest.approx(15.5 / 30) and ce["n"] == 2
    assert bal["n"] == 1 and bal["many_std"] != bal["many_std"]  # NaN for a single seed


def test_latex_cells_bold_and_mean_std():
    tex = latex_table(aggregate(runs_frame(RECORDS)))
    # ce is best only on many; bal_bce (one seed, so no ± part) on medium, few and all;
    # the second best of each column is underlined.
    assert line_of(tex, "ce &") == (
        "ce & \\textbf{85.0} $\\pm$ 7.1 & \\underline{50.0} $\\pm$ 0.0 & \\underline{20.0} $\\pm$ 14.1 "
        "& \\underline{51.7} $\\pm$ 7.1 & \\underline{20.0} $\\pm$ 14.1 & \\underline{34.6} $\\pm$ 16.9 & 2 \\\\"
    )
    assert line_of(tex, "bal\\_bce &") == (
        "bal\\_bce & \\underline{70.0} & \\textbf{60.0} & \\textbf{40.0} & \\textbf{56.7} "
        "& \\textbf{40.0} & \\textbf{53.6} & 1 \\\\"
    )
    assert "Method & Many & Med. & Few & All & Worst & H-mean & $n$ \\\\" in tex
    for piece in (
        "\\toprule",
        "\\midrule",
        "\\bottomrule",
        "\\multicolumn{6}{c}{toy}",
        "\\cmidrule(lr){2-7}",
        "\\begin{tabular}{lccccccc}",
        "\\label{tab:ltbench}",
    ):
        assert piece in tex
    assert "la &" not in tex  # the failed run


def test_markdown_cells_bold_and_mean_std():
    md = markdown_table(aggregate(runs_frame(RECORDS))).splitlines()
    assert md[0] == "| method | toy Many | toy Med. | toy Few | toy All | toy Worst | toy H-mean | n |"
    assert md[1] == "|---|---|---|---|---|---|---|---|"
    assert md[2] == (
        "| ce | **85.0** ± 7.1 | <u>50.0</u> ± 0.0 | <u>20.0</u> ± 14.1 | <u>51.7</u> ± 7.1 "
        "| <u>20.0</u> ± 14.1 | <u>34.6</u> ± 16.9 | 2 |"
    )
    assert md[3] == "| bal_bce | <u>70.0</u> | **60.0** | **40.0** | **56.7** | **40.0** | **53.6** | 1 |"
    assert len(md) == 4


def test_equal_printed_means_are_both_bold():
    recs = [record("a", 0, [5, 5, 5]), record("b", 0, [5, 5, 5])]
    md = markdown_table(aggregate(runs_frame(recs))).splitlines()
    assert md[2:] == [
        "| a | **50.0** | **50.0** | **50.0** | **50.0** | **50.0** | **50.0** | 1 |",
        "| b | **50.0** | **50.0** | **50.0** | **50.0** | **50.0** | **50.0** | 1 |",
    ]


def test_empty_group_is_a_dash_not_zero():
    recs = [record("ce", 0, [9, 8, 5], counts=(150, 120, 50))]  # no class under 20 images
    agg = aggregate(runs_frame(recs))
    # worst 50.0 and H-mean 3 / (1.111 + 1.25 + 2) = 68.8 still span every class
    row = "ce & \\textbf{85.0} & \\textbf{50.0} & -- & \\textbf{73.3} & \\textbf{50.0} & \\textbf{68.8} & 1 \\\\"
    assert row in latex_table(agg).splitlines()
    assert (
        markdown_table(agg).splitlines()[2] == "| ce | **85.0** | **50.0** | – | **73.3** | **50.0** | **68.8** | 1 |"
    )


def test_regrouping_under_each_convention():
    # counts (100, 20, 5); accuracies 0.9, 0.6, 0.2.
    rec = record("ce", 0, [9, 6, 2], counts=(100, 20, 5), index_sizes=[1, 1, 1])
    thr = runs_frame([rec], "threshold").iloc[0]  # many > 100, few < 20
    assert thr["many"] != thr["many"]  # 100 is not > 100: no many class (NaN)
    assert thr["medium"] == pytest.approx(0.75) and thr["few"] == pytest.approx(0.2)  # {100, 20}, {5}
    oltr = runs_frame([rec], "oltr").iloc[0]  # many >= 100, few <= 20
    assert oltr["many"] == pytest.approx(0.9) and oltr["medium"] != oltr["medium"]
    assert oltr["few"] == pytest.approx(0.4)  # 20 and 5: (0.6 + 0.2) / 2
    idx = runs_frame([rec], "index").iloc[0]  # blocks 1 / 1 / 1 of frequency-sorted classes
    assert [idx["many"], idx["medium"], idx["few"]] == pytest.approx([0.9, 0.6, 0.2])
    assert thr["top1"] == oltr["top1"] == idx["top1"] == pytest.approx(17 / 30)
    md = markdown_table(aggregate(runs_frame([rec], "oltr"))).splitlines()[2]
    # worst 20.0 and H-mean 3 / (1.111 + 1.667 + 5) = 38.6 do not depend on the convention
    assert md == "| ce | **90.0** | – | **40.0** | **56.7** | **20.0** | **38.6** | 1 |"


def test_index_convention_sorts_by_frequency_and_needs_sizes():
    # Labels not in frequency order: class 1 is the head, class 2 mid, class 0 the tail.
    rec = record("ce", 0, [2, 9, 6], counts=(5, 100, 20), index_sizes=[1, 2, 0])
    idx = runs_frame([rec], "index").iloc[0]
    assert idx["many"] == pytest.approx(0.9) and idx["medium"] == pytest.approx(0.4)  # {1}, {2, 0}
    assert idx["few"] != idx["few"]  # empty tail block
    with pytest.raises(ValueError, match="run ce-0-toy-quick .*needs index_sizes"):
        runs_frame([record("ce", 0, [1, 1, 1])], "index")


def test_ece_from_calibration_bins():
    # Two bins. Bin 0: 20 samples of classes 1-2, confidence 7.0 summed, 6 correct;
    # bin 1: 10 samples of class 0, confidence 9.0 summed, 8 correct.
    # ECE = (|6 - 7| + |8 - 9|) / 30 = 2 / 30.
    calib = {
        "n_bins": 2,
        "count": [[0, 10], [10, 0], [10, 0]],
        "conf_sum": [[0.0, 9.0], [4.0, 0.0], [3.0, 0.0]],
        "correct_sum": [[0, 8], [5, 0], [1, 0]],
    }
    f = runs_frame([record("ce", 0, [8, 5, 1], calib=calib)])
    assert f.iloc[0]["ece"] == pytest.approx(2 / 30)


def test_best_val_selection():
    rec = record("ce", 0, [1, 1, 1], best=[10, 10, 5])
    row = runs_frame([rec], selection="best_val").iloc[0]
    assert row["top1"] == pytest.approx(25 / 30) and row["few"] == pytest.approx(0.5)
    assert runs_frame([rec]).iloc[0]["top1"] == pytest.approx(0.1)  # "last" still the default
    assert runs_frame([record("ce", 0, [1, 1, 1])], selection="best_val").empty  # no best_val stored
    with pytest.raises(ValueError, match="choose one of last, best_val"):
        runs_frame([rec], selection="best_test")
    with pytest.raises(ValueError, match="choose one of threshold, oltr, index"):
        runs_frame([rec], convention="median")


def test_budgets_and_datasets_get_their_own_blocks():
    recs = [
        record("ce", 0, [8, 5, 1]),
        record("ce", 0, [2, 2, 2], budget="full"),
        record("ce", 0, [4, 4, 4], dataset="big_lt"),
    ]
    agg = aggregate(runs_frame(recs))
    tex = latex_table(agg)
    assert (
        "\\multicolumn{6}{c}{toy (quick)} & \\multicolumn{6}{c}{toy (full)} & "
        "\\multicolumn{6}{c}{big\\_lt (quick)} &  \\\\" in tex
    )
    assert "\\cmidrule(lr){2-7} \\cmidrule(lr){8-13} \\cmidrule(lr){14-19}" in tex
    # One method: every present cell is the column's best; no budget overwrites another.
    # toy (quick): worst 10, H-mean 3 / (1.25 + 2 + 10) = 22.6.
    assert line_of(tex, "ce &") == (
        "ce & \\textbf{80.0} & \\textbf{50.0} & \\textbf{10.0} & \\textbf{46.7} & \\textbf{10.0} & \\textbf{22.6} & "
        "\\textbf{20.0} & \\textbf{20.0} & \\textbf{20.0} & \\textbf{20.0} & \\textbf{20.0} & \\textbf{20.0} & "
        "\\textbf{40.0} & \\textbf{40.0} & \\textbf{40.0} & \\textbf{40.0} & \\textbf{40.0} & \\textbf{40.0} & 1 \\\\"
    )
    assert "budget quick, full;" in tex


def test_seed_column_when_datasets_differ():
    recs = [record("ce", 0, [8, 5, 1]), record("ce", 1, [9, 5, 3]), record("ce", 0, [4, 4, 4], dataset="b")]
    assert markdown_table(aggregate(runs_frame(recs))).splitlines()[2].endswith(" | 2/1 |")


def test_caption_and_escaping():
    recs = [record("a_b&c%", 0, [5, 5, 5], dataset="x_lt")]
    tex = latex_table(aggregate(runs_frame(recs, "oltr", "last")), label="tab:main")
    assert line_of(tex, "a\\_b\\&c\\% &")
    assert "\\multicolumn{6}{c}{x\\_lt}" in tex and "\\label{tab:main}" in tex
    caption = line_of(tex, "\\caption{")
    assert "budget quick;" in caption and "mean $\\pm$ std over $n$ seeds" in caption
    assert "groups: many $\\geq$100, medium 21--99, few $\\leq$20" in caption
    assert "model selection: last epoch" in caption
    assert "\\caption{Mine}" in latex_table(aggregate(runs_frame(recs)), caption="Mine")
    assert "\\caption" not in latex_table(aggregate(runs_frame(recs)), caption="")


def test_plot_per_class_writes_a_png(tmp_path):
    recs = [*RECORDS, record("ce", 0, [4, 4, 4], dataset="other"), record("ce", 1, [0, 0, 0], total=[0, 0, 0])]
    path = plot_per_class(recs, tmp_path / "plots" / "pc.png")
    assert path == tmp_path / "plots" / "pc.png"
    png = path.read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 1000
    assert sorted(os.listdir(tmp_path / "plots")) == ["pc.pdf", "pc.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="no finished runs"):
        plot_per_class([RECORDS[-1]], tmp_path / "none.png")


def test_a_filter_that_matches_nothing_is_named_with_what_the_store_holds():
    assert select_records(RECORDS, ["ce"], None, None) == [r for r in RECORDS if r["method"] == "ce"]
    asked = r"matches --methods ce_typo,la --budget paper; it holds methods: .*ce.*; budget: "
    with pytest.raises(ValueError, match=asked):
        select_records(RECORDS, ["ce_typo", "la"], None, "paper")
    assert select_records([], ["ce"]) == []  # an empty store: the report says "run `ltbench run` first"


def test_write_report_files(tmp_path):
    paths = write_report(RECORDS, tmp_path / "rep", convention="threshold", selection="last")
    assert set(paths) == {"latex", "markdown", "csv", "plot", "groups", "curves", "reliability", "html"}
    figures = [f"{name}.{ext}" for name in ("curves", "groups", "reliability") for ext in ("pdf", "png")]
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(
        ["per_class.pdf", "per_class.png", "report.html", "table.csv", "table.md", "table.tex", *figures]
    )
    for name in ("plot", "groups", "curves", "reliability"):
        assert paths[name].read_bytes()[:8] == PNG_MAGIC and paths[name].stat().st_size > 1000, name
    assert paths["groups"].with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    tex = paths["latex"].read_text()
    assert "model selection: last epoch" in tex and "many $>$100, medium 20--100, few $<$20" in tex
    assert "| ce | **85.0** ± 7.1 |" in paths["markdown"].read_text(encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    assert paths["latex"].stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0600
    with pytest.raises(ValueError, match="no finished runs in the store; run `ltbench run` first"):
        write_report([RECORDS[-1]], tmp_path / "empty")
    with pytest.raises(ValueError, match="no finished runs"):
        write_report([], tmp_path / "empty")


def test_csv_has_percent_means_and_seeds():
    csv = __import__("ltbench.reports.tables", fromlist=["csv_table"]).csv_table(aggregate(runs_frame(RECORDS)))
    header, ce = csv.splitlines()[:2]
    assert header.split(",")[:4] == ["dataset", "budget", "method", "many_mean"]
    assert ce.split(",")[:5] == ["toy", "quick", "ce", "85.0", "7.07"]
    assert ce.split(",")[-1] == "2"


def test_paired_test_marks_all_column_against_baseline():
    from ltbench.reports.tables import paired_tests

    # la beats ce by 7, 6 and 6 images of 30 on the same three seeds: p well under 0.05.
    recs = [record("ce", s, c) for s, c in enumerate(([5, 5, 5], [4, 5, 6], [6, 5, 4]))]
    recs += [record("la", s, c) for s, c in enumerate(([7, 7, 8], [7, 7, 7], [8, 7, 6]))]
    frame = runs_frame(recs)
    p = paired_tests(frame, "ce")
    from scipy.stats import ttest_rel

    expected = ttest_rel([22 / 30, 21 / 30, 21 / 30], [15 / 30, 15 / 30, 15 / 30]).pvalue
    assert p[("la", "toy", "quick")] == pytest.approx(expected)
    agg = aggregate(frame)
    agg.attrs["baseline"] = "ce"
    tex = latex_table(agg, marks=p)
    assert "\\textbf{71.1} $\\pm$ 1.9$^\\dagger$ & " in line_of(tex, "la &")  # on All only
    assert line_of(tex, "la &").count("$^\\dagger$") == 1
    assert "$^\\dagger$" not in line_of(tex, "ce &")
    assert "paired t-test" in tex


def test_figures_of_deit_heads(tmp_path):
    from ltbench.reports import plot_training

    rec = record("deit_lt", 0, [8, 5, 1])
    rec["results"]["last"]["heads"] = {
        "cls": {"correct": [9, 4, 0], "total": [10] * 3},
        "dist": {"correct": [7, 6, 3], "total": [10] * 3},
    }
    png, pdf = plot_training.plot_heads([rec], tmp_path / "heads")
    assert png.read_bytes()[:8] == PNG_MAGIC and pdf.read_bytes()[:4] == b"%PDF"
    assert plot_training.plot_heads([record("ce", 0, [1, 1, 1])], tmp_path / "none") is None


@pytest.mark.skipif(
    __import__("shutil").which("pdflatex") is None,
    reason="pdflatex is not installed (CI installs texlive-latex-base and -recommended)",
)
def test_latex_table_compiles_with_pdflatex(tmp_path):
    recs = [*RECORDS, record("bal_bce", 1, [8, 6, 3]), record("x_$%&#", 0, [1, 2, 3])]
    paths = write_report(recs, tmp_path, baseline="ce")
    compile_latex(tmp_path, "table.tex")
    assert paths["latex"].name == "table.tex"


CIFAR10_COUNTS = (5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50)


def deit_cifar10(budget="paper", rho=100.0, method="deit_lt", overrides=()):
    """Two seeds of a method on cifar10_lt (100 test images per class)."""
    recs = []
    for seed, correct in enumerate(([90, 80, 70, 60, 50, 40, 30, 20, 10, 0], [92, 82, 72, 62, 52, 42, 32, 22, 12, 2])):
        r = record(method, seed, correct, counts=CIFAR10_COUNTS, total=[100] * 10, dataset="cifar10_lt", budget=budget)
        r["config"] = {"seed": seed, "data": {"longtail": {"rho": rho}}, "train": {"img_size": 224}}
        r["overrides"] = list(overrides)
        r["index_sizes"] = [3, 4, 3]
        recs.append(r)
    return recs


@pytest.mark.skipif(__import__("shutil").which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_with_notes_and_published_rows_compiles(tmp_path):

    recs = deit_cifar10("smoke") + deit_cifar10("smoke", method="ce")
    for r in recs:
        r["val_counts"] = [0] + [5] * 9
        r["results"]["best_val"] = r["results"]["last"]
        r["finished_at"] = "2026-02-01T00:00:00+00:00"
    recs.append({**recs[0], "run_id": "dup", "finished_at": "2026-01-01T00:00:00+00:00"})
    tex = write_report(recs, tmp_path, selection="best_val", baseline="ce")["latex"].read_text()
    assert "not comparable: budget smoke" in tex and "duplicate run" in tex and "9 of 10 classes" in tex
    compile_latex(tmp_path, "table.tex")


@pytest.fixture
def last_epoch_papers(monkeypatch):
    """The published rows as if their papers had reported the last epoch, as ltbench does:
    the one protocol under which a difference is printed."""
    import dataclasses

    from ltbench.reports import published

    rows = tuple(dataclasses.replace(p, selection="last") for p in published.PUBLISHED)
    monkeypatch.setattr(published, "PUBLISHED", rows)
    return rows


def test_published_rows_selected_on_test_are_never_compared(tmp_path):
    # The papers pick their epoch on test, ltbench never does: paper budget, index groups,
    # and still no difference, with the reason, under either selection.
    for selection in ("last", "best_val"):
        recs = deit_cifar10()
        for r in recs:
            r["results"]["best_val"] = r["results"]["last"]
        paths = write_report(recs, tmp_path / selection, convention="index", selection=selection)
        ref = line_of(paths["markdown"].read_text(encoding="utf-8"), "| DeiT-LT (DeiT-B), published rho=100")
        assert "not comparable: the paper's epoch is best on test)" in ref and "(-" not in ref
        assert "minus it" not in line_of(paths["latex"].read_text(), "\\caption{")


def test_published_reference_rows_with_difference(tmp_path, last_epoch_papers):
    # The paper budget under DeiT-LT's own index groups and the paper's selection: like with like.
    paths = write_report(deit_cifar10(), tmp_path, convention="index")
    md = paths["markdown"].read_text(encoding="utf-8").splitlines()
    ref = next(line for line in md if line.startswith("| DeiT-LT (DeiT-B), published rho=100"))
    # ours (index groups, mean of two seeds): many (80 + 82) / 2 = 81.0, all 46.0 -> 81.0 - 94.5, 46.0 - 87.5
    assert "| 94.5 (-13.5) |" in ref and "| 87.5 (-41.5) |" in ref and "index groups, last epoch)" in ref
    assert "not comparable" not in ref
    tex = paths["latex"].read_text()
    assert "DeiT-LT (DeiT-B), published rho=100" in tex
    assert "rho=50" not in tex  # only the matching setting
    assert "in parentheses, ltbench's mean minus it" in line_of(tex, "\\caption{")


def test_published_rows_only_compare_like_with_like(tmp_path, last_epoch_papers):
    # The case: a smoke run under the threshold groups printed 84.1 (-78.1) against
    # DeiT-LT's index-block "medium". Now: the paper's number alone, and why.
    paths = write_report(deit_cifar10("smoke"), tmp_path, convention="threshold")
    md = paths["markdown"].read_text(encoding="utf-8")
    ref = line_of(md, "| DeiT-LT (DeiT-B), published rho=100")
    assert "not comparable: budget smoke, threshold groups)" in ref
    assert "| 94.5 | 84.1 | 85.0 | 87.5 | – |" in ref and "(" not in ref.split("|", 2)[2]
    caption = line_of(paths["latex"].read_text(), "\\caption{")
    assert "published rows give the paper's number alone" in caption and "minus it" not in caption
    # One mismatch is enough: the paper budget under the threshold groups, the index groups
    # under the quick budget.
    ref = line_of(markdown_table(*_with_refs(deit_cifar10(), "threshold")), "| DeiT-LT")
    assert "not comparable: threshold groups)" in ref and "(-" not in ref
    ref = line_of(markdown_table(*_with_refs(deit_cifar10("quick"), "index")), "| DeiT-LT")
    assert "not comparable: budget quick)" in ref and "(-" not in ref


def _with_refs(recs, convention):
    from ltbench.reports.published import references_for

    return aggregate(runs_frame(recs, convention)), None, references_for(recs)


def test_published_rows_only_for_methods_in_the_table(tmp_path):
    # ce on cifar10_lt: no DeiT-LT row, so no DeiT-LT published row, and the caption says nothing of them.
    paths = write_report(deit_cifar10(method="ce"), tmp_path, convention="index")
    md, tex = paths["markdown"].read_text(encoding="utf-8"), paths["latex"].read_text()
    assert "published" not in md and "published" not in tex and "DeiT-B" not in tex


def test_published_rows_compare_with_the_row_of_their_setting(last_epoch_papers):
    # deit_lt at the recipe's rho=100 and with --set rho=50: each published setting is set
    # against its own row, never the other's.
    recs = deit_cifar10() + [
        {**r, "run_id": r["run_id"] + "-50", "results": {"last": {**r["results"]["last"], "correct": [50] * 10}}}
        for r in deit_cifar10(rho=50.0, overrides=["rho=50"])
    ]
    md = markdown_table(*_with_refs(recs, "index"))
    assert "| deit_lt [rho=50] | <u>50.0</u> ± 0.0 |" in md
    assert "| 94.5 (-13.5) |" in line_of(md, "| DeiT-LT (DeiT-B), published rho=100 (index groups, last epoch) |")
    rho50 = line_of(md, "| DeiT-LT (DeiT-B), published rho=50")
    assert "against deit_lt [rho=50])" in rho50 and "| 94.9 (-44.9) |" in rho50  # 50.0 - 94.9


def with_provenance(rec, fingerprint="f" * 64, verified=True, finished="2026-01-01T00:00:00+00:00", run_id=None):
    rec["provenance"] = {"data_fingerprint": fingerprint, "data_verified": verified}
    rec["finished_at"] = finished
    if run_id:
        rec["run_id"] = run_id
    return rec


def test_unverified_data_is_its_own_row():
    # The case: seeds 0-1 on verified data, then seed 0 again with --no-verify
    # (another run id, the same configuration). It used to make one row of n = 3.
    recs = [
        with_provenance(record("ce", 0, [8, 5, 1])),
        with_provenance(record("ce", 1, [9, 5, 3])),
        with_provenance(record("ce", 0, [2, 2, 2]), verified=False, run_id="ce-0-unverified"),
    ]
    for r in recs:
        r["config"] = {"seed": r["seed"], "data_seed": 0, "method": {"name": "ce"}}
    frame = runs_frame(recs)
    assert list(frame["method"]) == ["ce", "ce", "ce (unverified data)"]
    assert frame.attrs["duplicates"] == []
    from ltbench.reports.runs import variant_of

    assert variant_of(recs[0]) == variant_of(recs[1]) != variant_of(recs[2])
    md = markdown_table(aggregate(frame))
    row = (
        "| ce | **85.0** ± 7.1 | **50.0** ± 0.0 | **20.0** ± 14.1 | **51.7** ± 7.1 | **20.0** ± 14.1 | **34.6** ± 16.9"
    )
    assert row + " | 2 |" in md
    row = "| ce (unverified data) | <u>20.0</u> | <u>20.0</u> | **20.0** | <u>20.0</u> | **20.0** | <u>20.0</u>"
    assert row + " | 1 |" in md


def test_record_variant_is_used_when_present():
    # Same configuration, another teacher (lineage): the record's own variant tells them apart.
    recs = [record("deit_lt", 0, [8, 5, 1]), record("deit_lt", 1, [9, 5, 3]), record("deit_lt", 2, [1, 1, 1])]
    for r, variant in zip(recs, ("aa" * 32, "aa" * 32, "bb" * 32)):
        r["config"] = {"seed": r["seed"], "method": {"name": "deit_lt"}}
        r["variant"] = variant
    from ltbench.reports.runs import variant_of

    assert variant_of(recs[2]) == "bb" * 32
    agg = aggregate(runs_frame(recs))
    assert list(agg["method"]) == ["deit_lt {aaaaaaaa}", "deit_lt {bbbbbbbb}"] and list(agg["n"]) == [2, 1]


def test_different_data_of_one_data_seed_splits_the_row():
    a, b, c = "a1" * 32, "b2" * 32, "c3" * 32
    # Data seeds 0 and 1 have different data, as they should: one row of two.
    recs = [with_provenance(record("ce", 0, [8, 5, 1]), a), with_provenance(record("ce", 0, [9, 5, 3]), c)]
    recs[1]["data_seed"], recs[1]["run_id"] = 1, "ce-0-d1"
    agg = aggregate(runs_frame(recs))
    assert list(agg["method"]) == ["ce"] and list(agg["n"]) == [2]
    # Seeds 0 and 1 of data seed 0 trained on different data: two rows, named by fingerprint.
    recs = [with_provenance(record("ce", 0, [8, 5, 1]), a), with_provenance(record("ce", 1, [9, 5, 3]), b)]
    agg = aggregate(runs_frame(recs))
    assert list(agg["method"]) == ["ce (data a1a1a1a1)", "ce (data b2b2b2b2)"] and list(agg["n"]) == [1, 1]
    # Unverified data of two kinds: both said.
    recs = [with_provenance(r, fp, verified=False) for r, fp in zip(recs, (a, b))]
    assert list(runs_frame(recs)["method"]) == ["ce (unverified data a1a1a1a1)", "ce (unverified data b2b2b2b2)"]


def test_duplicate_runs_of_a_seed_keep_the_latest_and_say_so(tmp_path):
    recs = [
        with_provenance(record("ce", 0, [0, 0, 0]), finished="2026-01-02T00:00:00+00:00", run_id="ce-0-later"),
        with_provenance(record("ce", 0, [8, 5, 1]), finished="2026-01-03T00:00:00+00:00", run_id="ce-0-latest"),
        with_provenance(record("ce", 0, [1, 1, 1]), finished="2026-01-01T00:00:00+00:00", run_id="ce-0-first"),
        with_provenance(record("ce", 1, [9, 5, 3])),
    ]
    frame = runs_frame(recs)
    assert list(frame["run_id"]) == ["ce-0-latest", "ce-1-toy-quick"]
    assert [(d["run_id"], d["kept"], d["seed"]) for d in frame.attrs["duplicates"]] == [
        ("ce-0-later", "ce-0-latest", 0),
        ("ce-0-first", "ce-0-latest", 0),
    ]
    agg = aggregate(frame)
    assert list(agg["n"]) == [2] and agg.iloc[0]["top1_mean"] == pytest.approx(15.5 / 30)
    assert len(agg.attrs["duplicates"]) == 2
    caption = line_of(latex_table(agg), "\\caption{")
    assert "2 duplicate runs of the same seed were left out, the latest run of each seed kept: ce seed 0." in caption
    md = markdown_table(agg)
    assert "| ce | **85.0** ± 7.1 |" in md
    assert md.endswith(
        "\n\nNote: 2 duplicate runs of the same seed were left out, the latest run of each seed kept: ce seed 0.\n"
    )
    paths = write_report(recs, tmp_path)
    assert "duplicate runs" in paths["markdown"].read_text(encoding="utf-8")
    # No duplicate, no note.
    assert "duplicate" not in latex_table(aggregate(runs_frame(RECORDS))) and "Note" not in markdown_table(
        aggregate(runs_frame(RECORDS))
    )


def test_paired_test_never_pairs_a_duplicate():
    from scipy.stats import ttest_rel

    from ltbench.reports.tables import paired_tests

    recs = [record("ce", s, c) for s, c in enumerate(([5, 5, 5], [4, 5, 6], [6, 5, 4]))]
    recs += [record("la", s, c) for s, c in enumerate(([7, 7, 8], [7, 7, 7], [8, 7, 6]))]
    # An earlier run of ce's seed 0 (another run id): it used to be paired with la's seed 0 too.
    recs.append({**record("ce", 0, [9, 9, 9]), "run_id": "ce-0-old", "finished_at": "2026-01-01T00:00:00+00:00"})
    for r in recs[:-1]:
        r["finished_at"] = "2026-02-01T00:00:00+00:00"
    p = paired_tests(runs_frame(recs), "ce")
    expected = ttest_rel([22 / 30, 21 / 30, 21 / 30], [15 / 30, 15 / 30, 15 / 30]).pvalue
    assert p[("la", "toy", "quick")] == pytest.approx(expected)
    # A frame made by hand that still holds a duplicate: one run per seed all the same.
    import pandas as pd

    frame = runs_frame(recs[:-1])
    dup = pd.concat([frame.iloc[[0]].assign(top1=0.9, run_id="dup"), frame], ignore_index=True)
    assert paired_tests(dup, "ce")[("la", "toy", "quick")] == pytest.approx(expected)
    assert aggregate(dup).set_index("method").loc["ce", "n"] == 3


def test_caption_says_when_the_validation_set_misses_classes(tmp_path):
    recs = [record("ce", 0, [1, 1, 1], best=[8, 5, 1]), record("ce", 1, [1, 1, 1], best=[9, 5, 3])]
    for r in recs:
        r["val_counts"] = [0, 5, 5]  # the head class has no validation image
    other = record("la", 0, [1, 1, 1], best=[5, 5, 5], dataset="full_lt")
    other["val_counts"] = [5, 5, 5]
    agg = aggregate(runs_frame([*recs, other], selection="best_val"))
    caption = line_of(latex_table(agg), "\\caption{")
    assert "The validation set that picks the best epoch covers only 2 of 3 classes on toy:" in caption
    assert "full\\_lt" not in caption
    assert "Note: The validation set that picks the best epoch covers only 2 of 3 classes on toy:" in markdown_table(
        agg
    )
    # Not under the last epoch, nor when every class has validation images.
    assert "validation set that picks" not in latex_table(aggregate(runs_frame(recs, selection="last")))
    assert "validation set that picks" not in latex_table(aggregate(runs_frame([other], selection="best_val")))
    paths = write_report(recs, tmp_path, selection="best_val")
    assert "covers only 2 of 3 classes on toy" in paths["latex"].read_text()


def test_runs_with_different_settings_are_never_averaged_as_seeds():
    def run(seed, correct, tau, overrides=()):
        r = record("la", seed, correct)
        r["config"] = {"seed": seed, "data_seed": 0, "method": {"loss_params": {"tau": tau}}}
        r["overrides"] = list(overrides)
        return r

    recs = [run(0, [8, 5, 1], 1.0), run(1, [9, 5, 3], 1.0), run(0, [1, 1, 1], 2.0, ["tau=2"])]
    md = markdown_table(aggregate(runs_frame(recs)))
    assert "| la | **85.0** ± 7.1 |" in md  # the two default runs: seeds of one variant
    assert "| la [tau=2] | <u>10.0</u> |" in md  # the override is its own row
    # same name, different configuration (e.g. another recipe version): told apart by hash
    recs[2]["overrides"] = []
    names = list(dict.fromkeys(runs_frame(recs)["method"]))
    assert len(names) == 2 and all(n.startswith("la {") for n in names)


def test_every_published_index_row_can_be_compared():
    # DeiT-LT's rows use its index blocks: each dataset they are published on needs the block
    # sizes in its recipe, or `--convention index` fails there and the row never compares.
    from ltbench.evaluation.groups import assign_groups, group_sizes
    from ltbench.planning.catalog import load_catalog
    from ltbench.reports.published import PUBLISHED

    datasets = load_catalog().datasets
    for pub in PUBLISHED:
        if pub.convention != "index":
            continue
        spec = datasets.get(pub.dataset)
        sizes = spec.groups.index_sizes
        assert sum(sizes) == spec.num_classes, pub
        groups = group_sizes(assign_groups(list(range(spec.num_classes, 0, -1)), "index", sizes))
        assert list(groups.values()) == list(sizes), pub


def test_a_published_row_without_group_numbers_shows_dashes_and_its_overall(tmp_path, last_epoch_papers):
    # MiSLAS's README gives the overall accuracy only: its group cells are dashes, All compares.
    paths = write_report(deit_cifar10(method="cnn_mislas"), tmp_path)
    ref = line_of(paths["markdown"].read_text(encoding="utf-8"), "| MiSLAS (ResNet-32), published rho=100")
    cells = [c.strip() for c in ref.strip("|").split("|")]
    # ours, all: (450 + 470) / 2 / 1000 = 46.0 -> 46.0 - 82.5 = -36.5
    assert cells[1:5] == ["–", "–", "–", "82.5 (-36.5)"]
