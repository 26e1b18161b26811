"""``ltbench data describe``: what a dataset recipe yields on the files at hand, from labels alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config.specs import DatasetSpec
from ..evaluation.groups import CONVENTIONS, assign_groups, group_sizes
from . import apply_protocol
from .integrity import found_figures
from .sources import SOURCES


def describe_dataset(spec: DatasetSpec, root: str | Path | None = None, data_seed: int = 0) -> dict[str, Any]:
    """Classes, split sizes, per-class training counts, imbalance ratio, group sizes under each
    convention, file checksums and expected-against-found figures.

    Mismatches with the recipe are reported (``expected[i]["ok"] is False``), not raised, so
    a custom copy can be inspected; a missing or malformed file still raises.
    """
    root = Path(root) if root else (Path(spec.default_root) if spec.default_root else None)
    src = SOURCES.get(spec.source)(spec, root, False)
    found = found_figures(src)
    expected = [
        {"figure": key, "expected": want, "found": found[key], "ok": found[key] == want}
        for key, want in vars(spec.expected).items()
        if want
    ]
    for name, want in {**official_checksums(spec.source), **spec.checksums}.items():
        got = src.files.get(name) or src.files.get(f"{name}.gz", "")  # Fashion-MNIST: content of a .gz
        expected.append(
            {
                "figure": f"checksum {name}",
                "expected": want,
                "found": got,
                "ok": got.split(":", 1)[-1] == want.split(":", 1)[-1],
            }
        )
    data = apply_protocol(spec, src, data_seed)
    counts = data.class_counts
    index_sizes = spec.groups.index_sizes or None
    groups = {}
    for conv in CONVENTIONS:
        if conv == "index" and index_sizes is None:
            continue
        groups[conv] = group_sizes(assign_groups(counts, conv, index_sizes))
    return {
        "name": spec.name,
        "title": spec.title,
        "source": spec.source,
        "root": str(root) if root else None,
        "classes": spec.num_classes,
        "class_names": list(data.class_names),
        "storage": spec.storage,
        "data_seed": data_seed,
        "source_splits": {k: found[f"{k}_total"] for k in ("train", "val", "test")},
        "splits": {
            "train": len(data.train),
            "val": len(data.val) if data.val is not None else 0,
            "test": len(data.test),
        },
        "train_counts": counts.tolist(),
        "imbalance_ratio": float(counts.max() / max(counts.min(), 1)),
        **_imbalance_note(spec, counts),
        "groups": groups,
        "files": src.files,
        "expected": expected,
        # Files whose digest differs from the official one (or the recipe's `checksums`).
        "differing_files": [
            e["figure"][len("checksum ") :] for e in expected if e["figure"].startswith("checksum ") and not e["ok"]
        ],
        "verified": all(e["ok"] for e in expected),
    }


def official_checksums(source: str) -> dict[str, str]:
    """The official files' digests of a source whose format module knows them (CIFAR's md5s,
    Fashion-MNIST's content sha256s), as ``{file name: "algorithm:hex"}``; {} for the others."""
    if source in ("cifar10", "cifar100"):
        from .formats.cifar import CIFAR_FILES

        return {name: f"md5:{md5}" for name, md5 in CIFAR_FILES[int(source[5:])]["md5"].items()}
    if source == "fashion_mnist":
        from .formats.idx import FASHION_MNIST_FILES, FASHION_MNIST_SHA256

        return {FASHION_MNIST_FILES[k]: f"sha256:{v}" for k, v in FASHION_MNIST_SHA256.items()}
    return {}


def _imbalance_note(spec: DatasetSpec, counts: np.ndarray) -> dict[str, Any]:
    """The recipe's stated imbalance beside the measured one, and why they differ when they do."""
    stated, source = spec.stated_imbalance()
    measured = float(counts.max() / max(counts.min(), 1))
    if stated is None:
        note = "the recipe states no imbalance; the measured ratio is the files'"
    elif abs(measured - stated) <= 0.01 * stated:
        note = "as stated"
    elif spec.longtail.n_max > 0:
        note = (
            f"n_i = int(n_max * rho^(-i/(C-1))) truncates: the smallest class keeps {int(counts.min())} "
            f"images, so max / min is {measured:.1f}, not {stated:g}"
        )
    else:
        note = "the files differ from the published split (see expected against found)"
    return {"stated_imbalance": stated, "stated_imbalance_from": source, "imbalance_note": note}


def format_counts(counts: list[int], width: int = 12) -> str:
    """``5000 2997 ... 50`` for long vectors."""
    if len(counts) <= width:
        return " ".join(map(str, counts))
    head = " ".join(map(str, counts[: width // 2]))
    tail = " ".join(map(str, counts[-width // 2 :]))
    return f"{head} ... {tail} (sorted: max {max(counts)}, median {int(np.median(counts))}, min {min(counts)})"
