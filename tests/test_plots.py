"""The report's figures: one look per method, legends outside, honest reliability and group lines."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from fakes import record
from matplotlib.colors import to_hex

from ltbench.evaluation.metrics import ece_from_bins, summarize
from ltbench.reports import plot_base, plot_calibration, plot_classes, plot_training
from ltbench.reports.plot_style import MethodStyle, look, method_order

COUNTS = (150, 50, 10)  # one class per group under the threshold convention


def run(method, family, loss, seed=0, correct=(9, 6, 2), calib=None, epochs=4, lr=True, **kw):
    """A fake record with a model family, a loss and a short history."""
    r = record(method, seed, list(correct), COUNTS, calib=calib, **kw)
    r["config"] = {"method": {"name": method, "model": family, "loss": loss}}
    r["history"] = [
        {"epoch": e, "train_loss": 2.0 / e + seed, "val_top1": 0.1 * e, **({"lr": 0.1 / e} if lr else {})}
        for e in range(1, epochs + 1)
    ]
    return r


RUNS = [
    run("ce", "vit", "ce"),
    run("ce", "vit", "ce", seed=1, correct=(8, 5, 1)),
    run("la", "vit", "la"),
    run("cnn_ldam", "cnn", "ldam"),
    run("cnn_ce", "cnn", "ce"),
    run("deit_lt", "deit", "deit_lt"),
]


def runs_frame(records) -> pd.DataFrame:
    """What plot_groups reads of reporting.runs_frame (which loads the recipe catalog: slow)."""
    rows = []
    for r in records:
        res = r["results"]["last"]
        m = summarize(res["correct"], res["total"], r["train_counts"])
        keys = ("method", "dataset", "budget", "seed", "data_seed", "run_id")
        rows.append({**{k: r[k] for k in keys}, **m})
    return pd.DataFrame(rows)


def calib_one_class(counts, conf, correct, n_classes=3, n_bins=15):
    """Calibration bins where all samples belong to class 0; the other classes have none."""
    z = np.zeros((n_classes, n_bins))
    count, conf_sum, correct_sum = z.copy(), z.copy(), z.copy()
    for b, (n, c, k) in enumerate(zip(counts, conf, correct)):
        count[0, b], conf_sum[0, b], correct_sum[0, b] = n, c, k
    return {
        "n_bins": n_bins,
        "count": count.tolist(),
        "conf_sum": conf_sum.tolist(),
        "correct_sum": correct_sum.tolist(),
    }


def legend_colours(fig) -> dict[str, str]:
    """{method: colour} read back from the figure legend (labels are "method (n=...)")."""
    (legend,) = fig.legends
    out = {}
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        colour = handle.get_color() if hasattr(handle, "get_color") and not hasattr(handle, "get_facecolor") else None
        colour = colour if colour is not None else handle.get_facecolor()
        out[text.get_text().split(" (n=")[0]] = to_hex(colour)
    return out


def test_cycle_has_20_distinct_colour_marker_pairs():
    looks = [look(i) for i in range(20)]
    assert len({lk.colour for lk in looks}) == 20
    assert len({(lk.colour, lk.marker) for lk in looks}) == 20
    assert len({(look(i).colour, look(i).marker) for i in range(180)}) == 180


def test_order_is_family_then_name_and_stable():
    expected = ["cnn_ce", "cnn_ldam", "deit_lt", "ce", "la"]
    assert method_order(RUNS) == expected
    shuffled = RUNS[:]
    random.Random(3).shuffle(shuffled)
    assert method_order(shuffled) == expected
    assert MethodStyle.from_records(shuffled).order == expected
    # Row names replace method names; a run without a family sorts last; m2 before m10.
    bare = [record("m10", 0, [1, 1, 1]), record("m2", 0, [1, 1, 1])]
    assert method_order(bare + RUNS[:1], {RUNS[0]["run_id"]: "ce [lr=1]"}) == ["ce [lr=1]", "m2", "m10"]


def test_a_method_keeps_its_colour_across_figures(monkeypatch):
    style = MethodStyle.from_records(RUNS)
    want = {m: to_hex(style(m).colour) for m in style.order}
    figs = {
        "per_class": plot_classes.figure_per_class(RUNS, style=style),
        "groups": plot_classes.figure_groups(runs_frame(RUNS), style),
        "curves": plot_training.figure_curves(RUNS, style=style),
    }
    captured = []
    monkeypatch.setattr(plot_base, "save_figure", lambda fig, path: captured.append(fig) or [path])
    from ltbench.reports.shift import aggregate_shift, plot_shift, shift_frame

    frame = runs_frame(RUNS)
    plot_shift(aggregate_shift(shift_frame(RUNS, frame)), "unused", "last", style)
    figs["shift"] = captured[0]
    for name, fig in figs.items():
        assert legend_colours(fig) == want, name
        assert list(legend_colours(fig)) == style.order, name  # legend in the report's order
    # Reliability panels: each method's filled bars in its colour.
    calib = calib_one_class([50] * 15, [0.5 * 50] * 15, [25] * 15)
    reliable = [run("la", "vit", "la", calib=calib), run("cnn_ce", "cnn", "ce", calib=calib)]
    rel = plot_calibration.figure_reliability(reliable, style=style)
    titled = {ax.get_title().split("\n")[0]: ax for ax in rel.axes if ax.get_title()}
    for method, ax in titled.items():
        assert to_hex(ax.patches[0].get_facecolor()) == to_hex(style(method).colour)


def test_reliability_marks_thin_bins_and_titles_the_metric_ece():
    n, conf, corr = [0] * 15, [0.0] * 15, [0] * 15
    n[3], conf[3], corr[3] = (
        plot_calibration.MIN_BIN_SAMPLES - 1,
        0.23 * (plot_calibration.MIN_BIN_SAMPLES - 1),
        1,
    )  # too few: hollow
    n[12], conf[12], corr[12] = 40, 40 * 0.83, 20
    calib = calib_one_class(n, conf, corr)
    fig = plot_calibration.figure_reliability([run("ce", "vit", "ce", calib=calib)])
    ax = next(a for a in fig.axes if a.get_title())
    bars = {round(p.get_x() + p.get_width() / 2, 4): p for p in ax.patches}
    thin, solid = bars[round(3.5 / 15, 4)], bars[round(12.5 / 15, 4)]
    assert thin.get_facecolor()[3] == 0 and thin.get_hatch()  # hollow, hatched
    assert solid.get_facecolor()[3] == 1 and not solid.get_hatch()
    # ECE by hand: (|1 - 2.07| + |20 - 33.2|) / 49 = 0.2912 -> 29.1%; the same as the metric's.
    ece = ece_from_bins(calib)
    assert ece == pytest.approx((abs(1 - 0.23 * 9) + abs(20 - 33.2)) / 49)
    assert f"ECE {100 * ece:.1f}%" in ax.get_title() and "ECE 29.1%" in ax.get_title()
    # The sample counts are drawn under the panel.
    count_ax = next(a for a in fig.axes if a.get_ylabel() == "samples")
    heights = sorted(p.get_height() for p in count_ax.patches if p.get_height() > 0)
    assert heights == [plot_calibration.MIN_BIN_SAMPLES - 1, 40]


def vlines(ax) -> list[float]:
    return sorted(
        float(line.get_xdata()[0])
        for line in ax.lines
        if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
    )


@pytest.mark.parametrize(
    ("convention", "expected"),
    [("threshold", [19.5, 100.5]), ("oltr", [20.5, 99.5]), ("index", [np.sqrt(10 * 50), np.sqrt(50 * 150)])],
)
def test_per_class_draws_the_group_boundaries(convention, expected):
    recs = [run("ce", "vit", "ce", index_sizes=[1, 1, 1]), run("ce", "vit", "ce", 1, (7, 5, 3), index_sizes=[1, 1, 1])]
    fig = plot_classes.figure_per_class(recs, convention=convention)
    (ax,) = fig.axes
    assert vlines(ax) == pytest.approx(expected)
    assert {t.get_text() for t in ax.texts} == {"many", "medium", "few"}
    assert len(ax.collections) == 1  # the ± band: two seeds


def test_loss_panels_never_mix_loss_types():
    fig = plot_training.figure_curves(RUNS)
    style = MethodStyle.from_records(RUNS)
    loss_of = {r["method"]: r["config"]["method"]["loss"] for r in RUNS}
    by_colour = {to_hex(style(m).colour): m for m in style.order}
    panels = [ax for ax in fig.axes if ax.get_title().startswith("training loss")]
    assert sorted(ax.get_title() for ax in panels) == [f"training loss: {x}" for x in ("ce", "deit_lt", "la", "ldam")]
    for ax in panels:
        kinds = {loss_of[by_colour[to_hex(line.get_color())]] for line in ax.lines}
        assert kinds == {ax.get_title().split(": ")[1]}
    titles = [ax.get_title() for ax in fig.axes]
    assert "learning rate" in titles and "validation accuracy" in titles
    no_lr = plot_training.figure_curves([run("ce", "vit", "ce", lr=False)])
    assert "learning rate" not in [ax.get_title() for ax in no_lr.axes]


def test_legends_lie_outside_every_axes():
    heads = run("deit_lt", "deit", "deit_lt")
    heads["results"]["last"]["heads"] = {
        "cls": {"correct": [9, 4, 0], "total": [10] * 3},
        "dist": {"correct": [7, 6, 3], "total": [10] * 3},
    }
    calib = calib_one_class([50] * 15, [25] * 15, [25] * 15)
    figs = [
        plot_classes.figure_per_class(RUNS),
        plot_classes.figure_groups(runs_frame(RUNS)),
        plot_training.figure_curves(RUNS),
        plot_calibration.figure_reliability([run("ce", "vit", "ce", calib=calib), run("la", "vit", "la", calib=calib)]),
        plot_training.figure_heads([heads]),
    ]
    for fig in figs:
        fig.set_dpi(30)  # layout is in inches: a coarse draw places everything as the saved PNG does
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()


def test_tables_list_methods_in_the_figures_order(tmp_path):
    """Family, then name, in table.md and table.csv (each dataset's block): the figures' order."""
    from ltbench.reports.write import write_report

    def run(method, model, dataset):
        r = record(method, 0, [9, 5, 1], dataset=dataset)
        r["config"] = {"method": {"model": model}}
        return r

    runs = [
        run(m, model, d) for d in ("b_set", "a_set") for m, model in (("la", "vit"), ("cnn_la", "cnn"), ("ce", "vit"))
    ]
    paths = write_report(runs, tmp_path)
    rows = [line.split("|")[1].strip() for line in paths["markdown"].read_text().splitlines() if line.startswith("| ")]
    methods = [r for r in rows if r in ("ce", "la", "cnn_la")]
    assert methods == ["cnn_la", "ce", "la"]  # datasets are column blocks of one row per method
    csv = pd.read_csv(paths["csv"])
    assert list(csv["dataset"]) == ["b_set"] * 3 + ["a_set"] * 3  # blocks keep their order
    assert list(csv["method"]) == ["cnn_la", "ce", "la"] * 2
