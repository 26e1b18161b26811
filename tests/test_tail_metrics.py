"""Tail metrics (worst-class accuracy, harmonic mean of recalls), error-rate tables and the
pretraining marker, with every expected number worked out by hand."""

import dataclasses

import pytest

from ltbench.evaluation.metrics import summarize, tail_accuracy
from ltbench.reports.runs import aggregate, runs_frame
from ltbench.reports.tables import csv_table, latex_table, markdown_table


def record(method, seed, correct, counts=(150, 50, 10), total=None, **extra):
    total = list(total or [10] * len(counts))
    return {
        "run_id": f"{method}-{seed}",
        "method": method,
        "dataset": "toy",
        "budget": "quick",
        "seed": seed,
        "data_seed": 0,
        "status": "done",
        "num_classes": len(counts),
        "train_counts": list(counts),
        "results": {"last": {"epoch": 3, "correct": list(correct), "total": total}},
        **extra,
    }


def line_of(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


# ---------------------------------------------------------------- metrics


def test_worst_and_harmonic_mean_by_hand():
    # per-class accuracies 1.0, 0.5, 0.25: worst 0.25, H-mean 3 / (1 + 2 + 4) = 3/7
    worst, hmean = tail_accuracy([4, 2, 1], [4, 4, 4])
    assert worst == pytest.approx(0.25) and hmean == pytest.approx(3 / 7)
    m = summarize([4, 2, 1], [4, 4, 4], [150, 50, 10])
    assert m["worst"] == pytest.approx(0.25) and m["hmean"] == pytest.approx(3 / 7)


def test_a_class_without_test_images_is_ignored():
    # the fourth class has no test image: not a 0, not counted in C'
    worst, hmean = tail_accuracy([4, 2, 1, 0], [4, 4, 4, 0])
    assert worst == pytest.approx(0.25) and hmean == pytest.approx(3 / 7)


def test_a_class_with_zero_accuracy_makes_the_harmonic_mean_zero():
    worst, hmean = tail_accuracy([4, 0, 1], [4, 4, 4])
    assert worst == 0.0 and hmean == 0.0
    assert tail_accuracy([0, 0], [0, 0]) == (None, None)  # no test image at all


def test_old_records_get_tail_metrics_at_report_time():
    # a record with counts only (as older records are): the report recomputes them
    frame = runs_frame([record("ce", 0, [4, 2, 1], total=[4, 4, 4])])
    assert frame.iloc[0]["worst"] == pytest.approx(0.25) and frame.iloc[0]["hmean"] == pytest.approx(3 / 7)


# ---------------------------------------------------------------- error tables

# ce (2 seeds): per-class accuracies (0.8, 0.5, 0.1) and (0.9, 0.5, 0.3); bal_bce (0.7, 0.6, 0.4).
# Errors: ce many 15.0 ± 7.1, medium 50.0 ± 0.0, few 80.0 ± 14.1, all 100 - 51.7 = 48.3 ± 7.1,
# worst (highest per-class error) 80.0 ± 14.1; bal_bce 30.0, 40.0, 60.0, 43.3, 60.0.
RECORDS = [record("ce", 0, [8, 5, 1]), record("ce", 1, [9, 5, 3]), record("bal_bce", 0, [7, 6, 4])]


def error_agg(records=RECORDS):
    agg = aggregate(runs_frame(records))
    agg.attrs["metric"] = "error"  # as write_report(metric="error") sets it
    return agg


def test_error_table_numbers_and_lowest_is_bold():
    md = markdown_table(error_agg()).splitlines()
    assert md[0] == "| method | toy Many | toy Med. | toy Few | toy All | toy Worst | n |"  # no H-mean
    assert md[2] == (
        "| ce | **15.0** ± 7.1 | <u>50.0</u> ± 0.0 | <u>80.0</u> ± 14.1 | <u>48.3</u> ± 7.1 | <u>80.0</u> ± 14.1 | 2 |"
    )
    assert md[3] == "| bal_bce | <u>30.0</u> | **40.0** | **60.0** | **43.3** | **60.0** | 1 |"
    assert "Note: Cells are top-1 error (%), 100 minus accuracy; the lowest is best." in md
    tex = latex_table(error_agg())
    assert line_of(tex, "bal\\_bce &") == (
        "bal\\_bce & \\underline{30.0} & \\textbf{40.0} & \\textbf{60.0} & \\textbf{43.3} & \\textbf{60.0} & 1 \\\\"
    )
    assert "Method & Many & Med. & Few & All & Worst & $n$ \\\\" in tex
    assert "\\multicolumn{5}{c}{toy}" in tex and "\\begin{tabular}{lcccccc}" in tex
    caption = line_of(tex, "\\caption{")
    assert "Top-1 error (\\%)" in caption and "Best (lowest) mean per column in bold" in caption
    assert "harmonic mean of per-class accuracies has no error form and is left out" in caption
    assert "H-mean" not in tex


def test_accuracy_caption_explains_tail_columns():
    caption = line_of(latex_table(aggregate(runs_frame(RECORDS))), "\\caption{")
    assert "Top-1 accuracy (\\%)" in caption and "Best (highest) mean" in caption
    assert "Worst: the lowest per-class accuracy" in caption and "H-mean: the harmonic mean" in caption


def test_error_csv():
    lines = csv_table(error_agg()).splitlines()
    assert lines[0] == (
        "dataset,budget,method,many_error_mean,many_error_std,medium_error_mean,medium_error_std,"
        "few_error_mean,few_error_std,top1_error_mean,top1_error_std,worst_error_mean,worst_error_std,n"
    )
    assert lines[2] == "toy,quick,bal_bce,30.0,,40.0,,60.0,,43.33,,60.0,,1"


def test_bad_metric_is_refused_and_cli_accepts_error(tmp_path):
    from ltbench.cli.args import build_parser
    from ltbench.reports.write import write_report

    with pytest.raises(ValueError, match="unknown table metric 'top5'"):
        write_report(RECORDS, tmp_path, metric="top5")
    assert build_parser().parse_args(["report", "--metric", "error"]).metric == "error"
    assert build_parser().parse_args(["report"]).metric == "accuracy"


# ---------------------------------------------------------------- pretraining data


def test_recipes_declare_pretraining_data_outside_the_run_identity():
    from ltbench.config.identity import config_hash
    from ltbench.config.run_config import resolve
    from ltbench.planning.catalog import load_catalog

    catalog = load_catalog()
    assert catalog.methods.get("mgp").pretraining_data == "long_tailed_train"
    assert catalog.methods.get("livt").pretraining_data == "long_tailed_train"
    for name in ("ce", "crt", "lws", "tau_norm", "deit_lt"):
        assert catalog.methods.get(name).pretraining_data == "none"
    mgp, data = catalog.methods.get("mgp"), catalog.datasets.get(catalog.datasets.names()[0])
    cfg = resolve(mgp, data, "smoke")
    assert "pretraining_data" not in str(cfg.to_dict())
    other = resolve(dataclasses.replace(mgp, pretraining_data="external"), data, "smoke")
    assert config_hash(other) == config_hash(cfg)


def test_mgp_rows_are_marked_and_the_caption_explains():
    recs = [record("ce", 0, [8, 5, 1]), record("mgp", 0, [9, 6, 2]), record("livt", 0, [9, 7, 3])]
    agg = aggregate(runs_frame(recs))
    tex = latex_table(agg)
    assert line_of(tex, "mgp$^\\ddagger$ & ") and line_of(tex, "livt$^\\ddagger$ & ")
    assert line_of(tex, "ce & ")  # trained from scratch: no marker
    caption = line_of(tex, "\\caption{")
    assert "$^\\ddagger$: weights pretrained on the long-tailed train set" in caption
    assert "external" not in caption
    md = markdown_table(agg)
    assert "| mgp‡ | " in md and "| livt‡ | " in md and "| ce | " in md
    assert "Note: ‡: weights pretrained on the long-tailed train set" in md
    # no pretrained row: no marker note
    assert "pretrained" not in latex_table(aggregate(runs_frame(recs[:1])))


def test_external_pretraining_is_flagged_not_comparable():
    recs = [record("ce", 0, [8, 5, 1]), record("vit_in21k", 0, [9, 9, 9], pretraining_data="external")]
    agg = aggregate(runs_frame(recs))
    tex = latex_table(agg)
    # 90.0 everywhere, yet not bold: an external row does not compete; ce is best of the rest
    assert (
        line_of(tex, "vit\\_in21k$^\\S$ & ") == "vit\\_in21k$^\\S$ & 90.0 & 90.0 & 90.0 & 90.0 & 90.0 & 90.0 & 1 \\\\"
    )
    assert line_of(tex, "ce & ").startswith("ce & \\textbf{80.0} & ")
    assert "$^\\S$: weights pretrained on external data: not comparable with the other rows, nor ranked" in tex
    md = markdown_table(agg)
    assert "| vit_in21k§ | " in md and "Note: §: weights pretrained on external data: not comparable" in md


def test_unknown_method_falls_back_to_its_config():
    # a method no recipe names (e.g. from another recipe folder) whose config ran the MGP stage
    rec = record("my_mgp", 0, [9, 6, 2], config={"method": {"name": "my_mgp", "pretrain": "mgp"}})
    assert "| my_mgp‡ | " in markdown_table(aggregate(runs_frame([rec])))
