"""Accuracy under shifted test distributions (ltbench.reports.shift), every expected value worked out by hand."""

import csv
import shutil

import numpy as np
import pytest
from fakes import compile_latex, record

from ltbench import api
from ltbench.cli.args import build_parser
from ltbench.reports.runs import runs_frame
from ltbench.reports.shift import DISTRIBUTIONS, aggregate_shift, ranks, shift_frame, shift_weights, shifted_accuracy
from ltbench.reports.write import write_report
from ltbench.store.sqlite import ResultStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
S = 10**-0.5  # 10^(-1/2): the middle class's forward-10 weight with 3 classes


def acc(values, counts=(100, 10, 1), dist="uniform", total=None):
    """Shifted accuracy of per-class accuracies ``values`` (out of 10 test images per class)."""
    total = [10] * len(values) if total is None else total
    correct = [round(v * t) for v, t in zip(values, total)]
    return shifted_accuracy(correct, total, counts, dist)


def test_forward_and_backward_by_hand():
    # counts [100, 10, 1]: ranks 0, 1, 2; forward-10 weights 1, 10^-0.5, 10^-1.
    assert acc([0.9, 0.5, 0.1], dist="forward10") == pytest.approx((0.9 + 0.5 * S + 0.1 * 0.1) / (1 + S + 0.1))
    assert acc([0.9, 0.5, 0.1], dist="forward10") == pytest.approx(0.7541964, abs=1e-7)  # 1.0681139 / 1.4162278
    # backward-10 weights 10^-1, 10^-0.5, 1.
    assert acc([0.9, 0.5, 0.1], dist="backward10") == pytest.approx((0.09 + 0.5 * S + 0.1) / (1 + S + 0.1))
    np.testing.assert_allclose(shift_weights([100, 10, 1], "forward50"), [1, 50**-0.5, 1 / 50])
    np.testing.assert_allclose(shift_weights([100, 10, 1], "backward50"), [1 / 50, 50**-0.5, 1])


def test_uniform_is_mean_per_class_accuracy_and_r1_is_uniform():
    values = [0.9, 0.5, 0.1]
    assert acc(values) == pytest.approx(0.5)
    assert acc(values, dist="forward1") == pytest.approx(0.5)
    assert acc(values, dist="backward1") == pytest.approx(0.5)
    # Equal accuracies: every test distribution gives the same number.
    for dist in DISTRIBUTIONS:
        assert acc([0.7, 0.7, 0.7], dist=dist) == pytest.approx(0.7)


def test_symmetry_forward_is_backward_of_the_reversed_ranking():
    values = [0.9, 0.6, 0.3, 0.2]
    for r in (2, 5, 50):
        assert acc(values, (1000, 100, 10, 1), f"forward{r}") == pytest.approx(
            acc(values[::-1], (1000, 100, 10, 1), f"backward{r}")
        )
        assert acc(values, (1, 10, 100, 1000), f"forward{r}") == pytest.approx(
            acc(values, (1000, 100, 10, 1), f"backward{r}")
        )


def test_ties_in_counts_keep_class_order():
    assert list(ranks([5, 5, 1])) == [0, 1, 2]
    assert list(ranks([1, 5, 5, 9])) == [3, 1, 2, 0]
    # forward-4 with 3 classes: weights 1, 1/2, 1/4 in rank order.
    assert acc([1.0, 0.0, 0.0], (5, 5, 1), "forward4") == pytest.approx(1 / 1.75)
    assert acc([0.0, 1.0, 0.0], (5, 5, 1), "forward4") == pytest.approx(0.5 / 1.75)


def test_a_class_without_test_images_is_left_out():
    # class 2 keeps its rank (2) but has no test images: its weight is dropped.
    got = shifted_accuracy([9, 5, 0], [10, 10, 0], [100, 10, 1], "forward10")
    assert got == pytest.approx((0.9 + 0.5 * S) / (1 + S))
    assert shifted_accuracy([9, 5, 0], [10, 10, 0], [100, 10, 1], "uniform") == pytest.approx(0.7)
    assert shifted_accuracy([0, 0], [0, 0], [3, 1], "forward10") is None


def test_bad_distributions_are_refused():
    for bad in ("sideways5", "forward0.5", "forwardx", "backward0"):
        with pytest.raises(ValueError):
            shift_weights([3, 2, 1], bad)


RECORDS = [
    record("ce", 0, [8, 5, 1]),  # uniform 46.67
    record("ce", 1, [9, 5, 3]),  # uniform 56.67
    record("la", 0, [7, 6, 5]),
    record("ce", 0, [5, 5, 5], dataset="other"),
]


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_shift_frame_follows_the_table_rows_and_aggregates():
    frame = runs_frame(RECORDS)
    long = shift_frame(RECORDS, frame)
    assert len(long) == 4 * len(DISTRIBUTIONS)
    agg = aggregate_shift(long)
    row = agg[(agg.method == "ce") & (agg.dataset == "toy") & (agg.distribution == "uniform")].iloc[0]
    assert row.top1_mean == pytest.approx((7 / 15 + 17 / 30) / 2)
    assert row.top1_std == pytest.approx(np.std([7 / 15, 17 / 30], ddof=1))
    assert row.n == 2
    one = agg[(agg.method == "la") & (agg.distribution == "forward50")].iloc[0]
    w = np.array([1, 50**-0.5, 1 / 50])
    assert one.top1_mean == pytest.approx((w * [0.7, 0.6, 0.5]).sum() / w.sum()) and np.isnan(one.top1_std)


def test_write_report_with_shift_writes_every_file(tmp_path):
    paths = write_report(RECORDS, tmp_path, shift=True)
    for kind, name in [
        ("shift_csv", "shift.csv"),
        ("shift_latex", "shift.tex"),
        ("shift_markdown", "shift.md"),
        ("shift_plot", "shift.png"),
    ]:
        assert paths[kind] == tmp_path / name
    assert paths["shift_plot"].read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "shift.pdf").read_bytes()[:4] == b"%PDF"
    rows = read_csv(paths["shift_csv"])
    assert {"method", "dataset", "budget", "distribution", "top1_mean", "top1_std", "n"} <= set(rows[0])
    assert [r["distribution"] for r in rows[: len(DISTRIBUTIONS)]] == list(DISTRIBUTIONS)
    (ce,) = [r for r in rows if (r["method"], r["dataset"], r["distribution"]) == ("ce", "toy", "uniform")]
    assert float(ce["top1_mean"]) == pytest.approx(51.67) and ce["n"] == "2"
    assert float(ce["top1_std"]) == pytest.approx(7.07)
    tex = paths["shift_latex"].read_text()
    assert (
        "\\toprule" in tex
        and "forward-$r$" in tex
        and "backward-$r$" in tex
        and "51.7 &" in tex
        and "{\\tiny $\\pm$7.1}" in tex
    )
    md = paths["shift_markdown"].read_text()
    assert "| ce | " in md and "51.7 ± 7.1" in md and "**toy**" in md and "**other**" in md
    assert "shift_csv" not in write_report(RECORDS, tmp_path / "plain")


def test_api_and_cli_take_shift(tmp_path):
    store = ResultStore(tmp_path / "s.db")
    for r in RECORDS:
        store.ingest(r)
    paths = api.report(tmp_path / "s.db", tmp_path / "rep", shift=True)
    assert paths["shift_csv"].exists() and paths["shift_plot"].exists()
    assert build_parser().parse_args(["report", "--shift"]).shift is True
    assert build_parser().parse_args(["report"]).shift is False


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_shift_latex_compiles(tmp_path):
    recs = [*RECORDS, record("x_$%&#", 0, [1, 2, 3], budget="paper")]
    write_report(recs, tmp_path, shift=True)
    compile_latex(tmp_path, "shift.tex")


def test_subset_indices_are_sades_integer_counts_drawn_once_per_class():
    from ltbench.reports.shift import shift_weights, subset_indices

    labels = np.repeat(np.arange(3), 10)  # 10 test images per class
    train = [100, 10, 1]
    idx = subset_indices(labels, train, "forward10")
    want = shift_weights(train, "forward10", np.full(3, 10)).astype(int)  # int(10 * w)
    assert np.bincount(labels[idx], minlength=3).tolist() == want.tolist()
    assert np.array_equal(idx, subset_indices(labels, train, "forward10"))  # fixed seed: the same subset
    assert len(np.unique(idx)) == len(idx)  # without replacement
    assert np.array_equal(subset_indices(labels, train, "uniform"), np.arange(30))  # uniform: the whole set


def test_subset_accuracy_scores_the_predictions_on_the_subset():
    from ltbench.reports.shift import subset_accuracy, subset_indices

    labels = np.repeat(np.arange(2), 4)
    pred = labels.copy()
    pred[labels == 1] = 0  # class 1 always wrong
    train = [8, 1]
    idx = subset_indices(labels, train, "backward8")  # int(4 * 1/8) = 0 of class 0, all 4 of class 1
    assert np.bincount(labels[idx], minlength=2).tolist() == [0, 4]
    assert subset_accuracy(pred, labels, train, "backward8") == 0.0
    assert subset_accuracy(pred, labels, train, "uniform") == 0.5


def test_report_scores_actual_subsets_from_the_stored_logits(tmp_path):
    import ltbench
    from ltbench.store.sqlite import ResultStore

    ltbench.run(methods=["cnn_ce"], data=["digits_lt"], budget="smoke", out_dir=tmp_path, store=tmp_path / "s.db")
    paths = ltbench.report(store=tmp_path / "s.db", out_dir=tmp_path / "rep", shift=True, shift_counts="subsets")
    rows = {r.split(",")[3]: r for r in paths["shift_csv"].read_text().splitlines()[1:]}
    record = ResultStore(tmp_path / "s.db").records()[0]
    res = record["results"]["last"]
    overall = 100 * sum(res["correct"]) / sum(res["total"])  # digits_lt's test set is balanced
    assert float(rows["uniform"].split(",")[4]) == pytest.approx(overall, abs=0.05)
    assert "actual test subsets" in paths["shift_markdown"].read_text()
