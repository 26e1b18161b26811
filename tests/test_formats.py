"""Format readers on tiny files written in each exact on-disk format."""

import gzip
import json
import pickle
import time

import numpy as np
import pytest
from fakes import write_cifar, write_idx, write_inat

from ltbench.core.errors import DataFormatError, DataIntegrityError, DataMissingError
from ltbench.data.formats.cifar import CIFAR_FILES, read_cifar, read_cifar_labels
from ltbench.data.formats.idx import DEBIAN_DIR, FASHION_MNIST_FILES, find_idx_files, read_fashion_mnist, read_idx
from ltbench.data.formats.inat import read_inat
from ltbench.data.formats.splitlist import check_images_exist, read_split_list


def test_cifar100_pickles_nchw_and_order(tmp_path):
    write_cifar(tmp_path, 100, train_per_class=2, test_per_class=1)
    d = read_cifar(tmp_path, 100, verify=False)
    assert d.train_x.shape == (200, 3, 32, 32) and d.test_x.shape == (100, 3, 32, 32)
    assert np.bincount(d.train_y).tolist() == [2] * 100
    assert d.class_names[:2] == ("c0", "c1") and len(d.class_names) == 100
    # pixel value = 2 * label (+0/1): the reshape keeps each image with its label
    assert np.all(d.train_x.reshape(200, -1).min(1) // 2 == d.train_y)
    same = read_cifar(tmp_path / "cifar-100-python", 100, verify=False)  # the folder itself as root
    np.testing.assert_array_equal(same.train_y, d.train_y)
    with pytest.raises(DataIntegrityError, match=r"cifar-100-python/train: md5 .* the official file has 16019d7e"):
        read_cifar(tmp_path, 100)


def test_cifar10_train_order_is_batch_order(tmp_path):
    import pickle

    write_cifar(tmp_path, 10, train_per_class=3, test_per_class=1)
    folder = tmp_path / "cifar-10-batches-py"
    expected = np.concatenate([pickle.load(open(folder / f"data_batch_{i}", "rb"))[b"labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(read_cifar(tmp_path, 10, verify=False).train_y, expected)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataMissingError, match="data_batch_3"):
        read_cifar(tmp_path, 10, verify=False)


def test_cifar10_nchw_reshape_and_root_forms(tmp_path):
    """Rows are 1024 R, 1024 G, 1024 B values, each plane row-major: a known pixel lands in place."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        data = np.zeros((4, 3072), dtype=np.uint8)
        data[:, 1024 * 2 + 32 * 5 + 7] = 10 * i + np.arange(4)  # blue, row 5, col 7
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": data, b"labels": [i, i, 0, 9], b"batch_label": b"x"}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 4]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {b"label_names": [n.encode() for n in "plane car bird cat deer dog frog horse ship truck".split()]}, f
        )
    for root in (tmp_path, folder):
        d = read_cifar(root, 10, verify=False)
        assert d.train_x.shape == (20, 3, 32, 32) and d.train_x.dtype == np.uint8
        assert d.train_y.dtype == np.int64 and d.train_y.tolist() == [y for i in range(1, 6) for y in (i, i, 0, 9)]
        assert d.train_x[:, 2, 5, 7].tolist() == [10 * i + k for i in range(1, 6) for k in range(4)]
        assert int(d.train_x.sum()) == int(d.train_x[:, 2, 5, 7].astype(int).sum())  # nothing else is set
        assert d.test_y.tolist() == [3, 4] and d.class_names[0] == "plane" and d.class_names[9] == "truck"
        assert set(d.files) == set(CIFAR_FILES[10]["md5"])
    train_y, test_y, names, files = read_cifar_labels(tmp_path, 10, verify=False)
    np.testing.assert_array_equal(train_y, d.train_y)
    assert test_y.tolist() == [3, 4] and names == d.class_names and files == d.files
    with pytest.raises(
        DataIntegrityError, match=r"data_batch_1: md5 [0-9a-f]{32}, the official file has c99cafc1.*--no-verify"
    ):
        read_cifar(folder, 10)


def test_cifar_missing_says_layout_source_and_download(tmp_path):
    with pytest.raises(DataMissingError) as e:
        read_cifar(tmp_path, 10)
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1 ... (torchvision's layout" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg and "--download" in msg
    write_cifar(tmp_path, 100, train_per_class=1, test_per_class=1)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DataMissingError, match=r"cifar-100-python/meta not found.*--download"):
        read_cifar_labels(tmp_path, 100)  # missing file reported before any checksum


def test_split_list_parsing_and_errors(tmp_path):
    f = tmp_path / "L_train.txt"
    f.write_text("a/x.jpg 0\n\nb/y z.jpg 2\nc/w.jpg 1\n")
    lst = read_split_list(f, 3)
    assert lst.paths == ["a/x.jpg", "b/y z.jpg", "c/w.jpg"] and lst.labels.tolist() == [0, 2, 1]
    assert len(lst.sha256) == 64
    f.write_text("a/x.jpg 0\nb/y.jpg 1\nc/w.jpg\n")
    with pytest.raises(DataFormatError, match=r"L_train.txt:3: cannot parse 'c/w.jpg'"):
        read_split_list(f, 3)
    f.write_text("a/x.jpg 0\n\nb/y.jpg 7\n")
    with pytest.raises(DataFormatError, match=r"L_train.txt:3: label 7 outside 0..2"):
        read_split_list(f, 3)
    with pytest.raises(DataMissingError, match="OLTR"):
        read_split_list(tmp_path / "absent.txt")


def test_split_list_non_integer_label_and_image_check(tmp_path):
    f = tmp_path / "ImageNet_LT_val.txt"
    f.write_text("train/n1/a.JPEG 0\n\ntrain/n1/b.JPEG one\n")
    with pytest.raises(DataFormatError, match=r"ImageNet_LT_val.txt:3: cannot parse .*expected 'relative/path label'"):
        read_split_list(f)
    with pytest.raises(DataMissingError, match=r"Places_LT_test.txt.*OpenLongTailRecognition-OLTR"):
        read_split_list(tmp_path / "Places_LT_test.txt", 365)
    f.write_text("train/n1/a.JPEG 0\ntrain/n1/b.JPEG 1\ntrain/n2/c.JPEG -1\n")
    with pytest.raises(DataFormatError, match=r":3: label -1 outside 0..9"):
        read_split_list(f, 10)
    assert read_split_list(f).labels.tolist() == [0, 1, -1]  # no range check without num_classes
    (tmp_path / "train" / "n1").mkdir(parents=True)
    (tmp_path / "train" / "n1" / "a.JPEG").write_bytes(b"")
    paths = ["train/n1/a.JPEG", "train/n1/b.JPEG", "train/n2/c.JPEG"]
    assert check_images_exist(tmp_path, paths) == ["train/n1/b.JPEG", "train/n2/c.JPEG"]
    assert check_images_exist(tmp_path, paths, limit=1) == []


@pytest.mark.slow
def test_split_list_of_inaturalist_size_reads_in_about_a_second(tmp_path):
    f = tmp_path / "big.txt"
    f.write_text("".join(f"train_val2018/Plantae/{i % 8142}/{i:08d}.jpg {i % 8142}\n" for i in range(437_513)))
    tick = time.perf_counter()
    lst = read_split_list(f, 8142)
    assert len(lst.paths) == 437_513
    assert time.perf_counter() - tick < 3.0  # generous: about 0.5 s here


def test_inat_json(tmp_path):
    write_inat(tmp_path / "t.json", [5, 2, 9], [9, 5, 2, 2])
    s = read_inat(tmp_path / "t.json")
    assert s.labels.tolist() == [2, 1, 0, 0] and s.category_ids == (2, 5, 9)
    assert s.class_names == ("species 2", "species 5", "species 9")
    assert s.paths[0] == "train_val2018/x/0.jpg"
    write_inat(tmp_path / "bad.json", [5], [5, 7])
    with pytest.raises(DataFormatError, match="image 101 has unknown category_id 7"):
        read_inat(tmp_path / "bad.json")
    (tmp_path / "nokey.json").write_text('{"images": [], "categories": []}')
    with pytest.raises(DataFormatError, match="missing key 'annotations'"):
        read_inat(tmp_path / "nokey.json")


def test_inat_index_is_position_among_sorted_ids(tmp_path):
    write_inat(tmp_path / "val2018.json", [5, 2, 9], [2, 5, 9, 9, 5, 2])
    s = read_inat(tmp_path / "val2018.json")
    assert s.category_ids == (2, 5, 9) and s.labels.tolist() == [0, 1, 2, 2, 1, 0] and s.labels.dtype == np.int64
    assert s.paths == [f"train_val2018/x/{i}.jpg" for i in range(6)] and len(s.sha256) == 64
    doc = json.loads((tmp_path / "val2018.json").read_text())
    doc["annotations"].pop(3)  # image 103 loses its annotation
    (tmp_path / "val2018.json").write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match="image 103 .* has no annotation"):
        read_inat(tmp_path / "val2018.json")
    (tmp_path / "notjson.json").write_text("{images: ")
    with pytest.raises(DataFormatError, match="notjson.json is not JSON"):
        read_inat(tmp_path / "notjson.json")
    with pytest.raises(DataMissingError, match="train2018.json not found.*inat_comp"):
        read_inat(tmp_path / "train2018.json")


def test_idx_raw_gz_and_bad_magic(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", arr)
    write_idx(tmp_path / "a-idx3-ubyte.gz", arr, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataFormatError, match="bad magic"):
        read_idx(tmp_path / "bad")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01\x00\x00\x00\x09\x01")
    with pytest.raises(DataFormatError, match="truncated"):
        read_idx(tmp_path / "short.gz")


def test_fashion_mnist_layouts(tmp_path):
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, arr in [
        ("train-images-idx3-ubyte", np.zeros((4, 28, 28))),
        ("train-labels-idx1-ubyte", np.arange(4)),
        ("t10k-images-idx3-ubyte", np.zeros((2, 28, 28))),
        ("t10k-labels-idx1-ubyte", np.arange(2)),
    ]:
        write_idx(raw / stem, arr.astype(np.uint8))
        write_idx(tmp_path / f"{stem}.gz", arr.astype(np.uint8), compress=True)  # Debian's layout
    assert find_idx_files(tmp_path / "tv")["train_images"] == raw / "train-images-idx3-ubyte"
    assert find_idx_files(tmp_path)["test_labels"].name == "t10k-labels-idx1-ubyte.gz"
    d = read_fashion_mnist(tmp_path / "tv", verify=False)
    assert d.train_x.shape == (4, 1, 28, 28) and d.test_y.tolist() == [0, 1]
    assert d.class_names[9] == "Ankle boot"
    with pytest.raises(DataIntegrityError, match="sha256 of its content"):
        read_fashion_mnist(tmp_path / "tv")
    with pytest.raises(DataMissingError, match="apt install dataset-fashion-mnist"):
        find_idx_files(tmp_path / "nothing")


def test_real_fashion_mnist_from_debian_verifies():
    if not DEBIAN_DIR.is_dir():
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_DIR} missing)")
    d = read_fashion_mnist(DEBIAN_DIR, verify=True)
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(d.train_y).tolist() == [6000] * 10 and np.bincount(d.test_y).tolist() == [1000] * 10
    assert set(d.files) == {f"{stem}.gz" for stem in FASHION_MNIST_FILES.values()}
    assert find_idx_files(DEBIAN_DIR)["train_images"] == DEBIAN_DIR / "train-images-idx3-ubyte.gz"


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (CI installs it)")
def test_smoke_training_on_fashion_mnist_lt(tmp_path):
    from ltbench.cli import main

    code = main(
        [
            "run",
            "--methods",
            "bal_bce",
            "--data",
            "fashion_mnist_lt",
            "--budget",
            "smoke",
            "--set",
            "epochs=1",
            "--store",
            str(tmp_path / "s.db"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    import json

    record = json.loads(next((tmp_path / "out").rglob("record.json")).read_text())
    assert record["train_counts"] == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert sum(record["results"]["last"]["total"]) == 10000
    assert sum(record["results"]["last"]["correct"]) > 2000  # far above chance (1,000) after one epoch
    assert record["provenance"]["data_verified"] is True


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    import os
    import pickle

    from ltbench.core.errors import DataFormatError
    from ltbench.data.formats.cifar import _load

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Payload(), b"labels": [0]}))
    with pytest.raises(DataFormatError, match="references posix.system|references nt.system"):
        _load(path, (b"data", b"labels"))
    assert not (tmp_path / "pwned").exists()
