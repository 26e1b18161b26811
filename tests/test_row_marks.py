"""Rows that rest on something their neighbours do not: other augmentation (◇), tau chosen on
a validation set missing classes (¶), and SADE's integer shifted-test counts."""

import pytest
from fakes import record

from ltbench.reports.shift import shifted_accuracy
from ltbench.reports.write import write_report


def _configured(method, model, augment=None, train=None, seed=0, dataset="cifar10_lt"):
    rec = record(method, seed, [8, 6, 2], dataset=dataset)
    rec["config"] = {
        "method": {"model": model},
        "data": {"augment": {"crop_pad": 4, "flip": True, "auto_augment": "", "re_prob": 0.0, **(augment or {})}},
        "train": {"mixup": 0.8, "cutmix": 1.0, "label_smoothing": 0.1, **(train or {})},
    }
    return rec


def _line(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


def test_a_row_trained_with_other_augmentation_is_marked(tmp_path):
    # The case: deit_lt with RandAugment and erasing beside ce and la without it.
    recs = [
        _configured("ce", "vit"),
        _configured("la", "vit"),
        _configured("deit_lt", "deit", {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25}),
        _configured("cnn_ce", "cnn", train={"mixup": 0.0, "cutmix": 0.0, "label_smoothing": 0.0}),
    ]
    paths = write_report(recs, tmp_path)
    md, tex = paths["markdown"].read_text(encoding="utf-8"), paths["latex"].read_text()
    assert _line(md, "| deit_lt◇ |")
    for plain in ("| ce |", "| la |", "| cnn_ce |"):  # the CNN's own augmentation is its architecture's
        assert _line(md, plain)
    note = _line(md, "Note: ◇")
    assert "deit_lt: auto_augment rand-m9-mstd0.5-inc1, re_prob 0.25" in note
    assert "deit\\_lt$^\\diamond$ &" in tex and "auto\\_augment rand-m9-mstd0.5-inc1" in tex


def test_a_decoupled_row_is_judged_by_its_backbone(tmp_path):
    # cRT retrains the classifier with plain augmentation (Kang): its features are its backbone's,
    # so it carries no mark where the backbone trained like its neighbours.
    base = _configured("ce", "vit")
    crt = _configured("crt", "vit", train={"mixup": 0.0, "cutmix": 0.0, "label_smoothing": 0.0})
    crt["needs"] = {"backbone": base["run_id"]}
    md = write_report([base, _configured("la", "vit"), crt], tmp_path)["markdown"].read_text(encoding="utf-8")
    assert _line(md, "| crt |") and "◇" not in md


def test_a_tau_chosen_on_a_partial_validation_set_is_said_on_its_row(tmp_path):
    # CIFAR-LT's head class keeps all its training images: no validation image is left for it.
    tau_norm = _configured("tau_norm", "vit")
    tau_norm["results"]["last"]["tau"] = 1.5
    ce = _configured("ce", "vit")
    for r in (tau_norm, ce):
        r["val_counts"] = [0, 5, 5]
    paths = write_report([ce, tau_norm], tmp_path)
    md = paths["markdown"].read_text(encoding="utf-8")
    assert _line(md, "| tau_norm¶ |") and _line(md, "| ce |")  # ce's last epoch chose nothing on val
    assert "tau_norm (2 of 3 classes)" in _line(md, "Note: ¶")
    assert "tau\\_norm$^\\P$ &" in paths["latex"].read_text()
    # Covered validation: no mark.
    for r in (tau_norm, ce):
        r["val_counts"] = [5, 5, 5]
    md = write_report([ce, tau_norm], tmp_path / "full")["markdown"].read_text(encoding="utf-8")
    assert "¶" not in md


def test_sade_counts_by_hand():
    # Three classes, 100 test images each, forward-10: weights (1, 10^-0.5, 0.1); SADE keeps
    # int(100 w) = (100, 31, 10) images. Accuracies (1, 0.5, 0).
    correct, total, train = [100, 50, 0], [100, 100, 100], [100, 10, 1]
    sade = shifted_accuracy(correct, total, train, "forward10", "sade")
    assert sade == pytest.approx((100 + 15.5) / 141)
    expected = shifted_accuracy(correct, total, train, "forward10")
    assert expected == pytest.approx((1 + 0.5 * 10**-0.5) / (1 + 10**-0.5 + 0.1))
    assert abs(sade - expected) > 5e-4  # the two protocols differ, which is why both exist
    assert shifted_accuracy(correct, total, train, "uniform", "sade") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown shifted-test counts 'floor'"):
        shifted_accuracy(correct, total, train, "uniform", "floor")


def test_report_shift_counts_reach_the_tables(tmp_path):
    recs = [_configured("ce", "vit")]
    recs[0]["results"]["last"].update(correct=[10, 5, 0], total=[10, 10, 10])
    recs[0]["train_counts"] = [100, 10, 1]
    md = write_report(recs, tmp_path, shift=True, shift_counts="sade")["shift_markdown"].read_text(encoding="utf-8")
    assert "SADE's integer per-class counts" in md and "Not comparable with SADE's published" in md
    # forward10 with 10 test images per class: int(10 w) = (10, 3, 1): (10 + 1.5 + 0) / 14
    assert f"| **{100 * 11.5 / 14:.1f}** |" in _line(md, "| ce |")
    with pytest.raises(ValueError, match="unknown shifted-test counts"):
        write_report(recs, tmp_path / "x", shift=True, shift_counts="floor")
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_an_empty_sade_set_has_no_value():
    # int(1 * 0.02) = 0 images of the one tested class: no test set, no accuracy.
    assert shifted_accuracy([1, 0], [1, 0], [100, 1], "backward50", "sade") is None
    assert shifted_accuracy([1, 0], [1, 0], [100, 1], "backward50") == pytest.approx(1.0)
