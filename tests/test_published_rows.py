"""Every published reference row is well formed: a registered method and dataset, percentages,
a known selection rule, and the overall accuracy consistent with its group cells."""

import re

from ltbench.reports.published import PUBLISHED, SELECTION_TEXT, references_for


def _cells(row):
    return [v for v in (row.many, row.medium, row.few, row.all) if v is not None]


def test_every_published_row_names_a_registered_method_and_dataset(catalog):
    methods, datasets = set(catalog.methods.names()), set(catalog.datasets.names())
    for row in PUBLISHED:
        assert row.method in methods, row
        assert row.dataset in datasets, row


def test_published_cells_are_percentages_with_a_known_selection_and_setting():
    for row in PUBLISHED:
        assert row.all is not None and all(0 <= v <= 100 for v in _cells(row)), row
        assert row.selection in SELECTION_TEXT, row
        assert row.convention in ("threshold", "index"), row
        pattern = r"rho=\d+" if row.dataset.startswith("cifar") else r"\d+"
        assert re.fullmatch(pattern, row.setting), row


def test_group_cells_come_all_or_none_and_bracket_the_overall_accuracy():
    for row in PUBLISHED:
        groups = [row.many, row.medium, row.few]
        assert all(g is None for g in groups) or all(g is not None for g in groups), row
        if groups[0] is not None:  # the overall accuracy is a class-weighted mean of the groups
            assert min(groups) <= row.all <= max(groups), row


def test_no_row_is_listed_twice():
    keys = [(r.method, r.paper, r.dataset, r.setting) for r in PUBLISHED]
    assert len(keys) == len(set(keys))


def test_a_run_finds_the_rows_of_its_method_dataset_and_setting():
    row = PUBLISHED[-1]
    cifar = row.setting.startswith("rho=")
    train = {} if cifar else {"img_size": int(row.setting)}
    data = {"longtail": {"rho": float(row.setting[4:])}} if cifar else {}
    record = {"method": row.method, "dataset": row.dataset, "budget": "paper", "config": {"train": train, "data": data}}
    found = references_for([record])
    assert (row, "paper") in found
    assert all(p.method == row.method and p.dataset == row.dataset and p.setting == row.setting for p, _ in found)
