"""Tiny files in the exact on-disk formats users have, for loader tests."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np

from ltbench.config.record import RECORD_SCHEMA


def write_cifar(root: Path, num_classes: int, train_per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """torchvision's layout of the CIFAR python pickles; pixel value = class index * 2 (+ noise)."""
    rng = np.random.default_rng(seed)

    def images(labels):
        base = (np.asarray(labels, dtype=np.uint8) * 2)[:, None]
        return (base + rng.integers(0, 2, (len(labels), 3072))).astype(np.uint8)

    train = rng.permutation(np.repeat(np.arange(num_classes), train_per_class))
    test = np.repeat(np.arange(num_classes), test_per_class)
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for i, chunk in enumerate(np.array_split(train, 5), 1):
            _dump(folder / f"data_batch_{i}", {b"data": images(chunk), b"labels": chunk.tolist()})
        _dump(folder / "test_batch", {b"data": images(test), b"labels": test.tolist()})
        _dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        _dump(folder / "train", {b"data": images(train), b"fine_labels": train.tolist()})
        _dump(folder / "test", {b"data": images(test), b"fine_labels": test.tolist()})
        _dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(num_classes)]})
    return root


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_jpegs(root: Path, rel_paths, size: int = 12) -> None:
    from PIL import Image

    for i, rel in enumerate(rel_paths):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), (i * 37) % 256, dtype=np.uint8)).save(p, format="JPEG")


def write_split_lists(root: Path, prefix: str, counts: dict[str, list[int]], images: bool = True) -> dict[str, list]:
    """``<prefix>_{train,val,test}.txt`` with ``counts[split][c]`` images of class c, plus JPEGs."""
    written = {}
    for split, per_class in counts.items():
        lines = [f"{split}/n{c:04d}/img_{c}_{k}.jpg {c}" for c, n in enumerate(per_class) for k in range(n)]
        (root / f"{prefix}_{split}.txt").write_text("\n".join(lines) + "\n")
        written[split] = lines
        if images:
            write_jpegs(root, [line.rsplit(" ", 1)[0] for line in lines])
    return written


def write_inat(path: Path, category_ids: list[int], labels_by_image: list[int]) -> None:
    """A COCO-style iNaturalist json; ``labels_by_image`` holds category ids."""
    doc = {
        "images": [
            {"id": 100 + i, "file_name": f"train_val2018/x/{i}.jpg", "width": 8, "height": 8}
            for i in range(len(labels_by_image))
        ],
        "annotations": [{"id": i, "image_id": 100 + i, "category_id": c} for i, c in enumerate(labels_by_image)],
        "categories": [{"id": c, "name": f"species {c}"} for c in category_ids],
    }
    path.write_text(json.dumps(doc))


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def compile_latex(folder: Path, table: str) -> None:
    """``\\input{table}`` in a minimal booktabs document compiled by pdflatex in ``folder``;
    fails the test with pdflatex's log when it does not compile."""
    import subprocess

    doc = folder / "doc.tex"
    doc.write_text(
        f"\\documentclass{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\n\\input{{{table}}}\n\\end{{document}}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (folder / "doc.pdf").read_bytes()[:4] == b"%PDF"


def record(
    method,
    seed,
    correct,
    counts=(150, 50, 10),
    *,
    total=None,
    status="done",
    dataset="toy",
    budget="quick",
    best=None,
    calib=None,
    index_sizes=None,
):
    """A stored run record; ``correct`` out of ``total`` (10 test images per class by default)."""
    total = list(total or [10] * len(counts))
    results = {"last": {"epoch": 3, "correct": list(correct), "total": total}}
    if calib is not None:
        results["last"]["calib"] = calib
    if best is not None:
        results["best_val"] = {"epoch": 2, "correct": list(best), "total": total}
    return {
        "schema": RECORD_SCHEMA,
        "run_id": f"{method}-{seed}-{dataset}-{budget}",
        "method": method,
        "dataset": dataset,
        "budget": budget,
        "seed": seed,
        "data_seed": 0,
        "status": status,
        "num_classes": len(counts),
        "class_names": [str(i) for i in range(len(counts))],
        "train_counts": list(counts),
        "index_sizes": index_sizes,
        "results": results,
        "history": [],
    }


def interrupt_after(cfg, data, run_dir, epoch: int) -> None:
    """``train.fit`` stopped by Ctrl-C right after ``epoch`` ends (its checkpoint written):
    the same ``fit`` on ``run_dir`` then resumes from there."""
    import pytest

    from ltbench.training.loop import fit

    def interrupt(done, total, row):
        if done == epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, data, run_dir, on_epoch=interrupt)
