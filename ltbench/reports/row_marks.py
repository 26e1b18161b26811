"""Marks on report rows that do not rest on what the rows beside them rest on.

Two things a table cell can silently mix with its method, each shown as a marker after the
row's name and a note under the table:

- **Augmentation** (◇, LaTeX ``$^\\diamond$``): rows of one (dataset, budget) block and one
  architecture (the ViT rows, the CNN rows) whose training augmentation differs from the
  block's most common one, e.g. LiVT and DeiT-LT with RandAugment and random erasing beside
  CE without: "deit_lt - ce" then measures augmentation as well as method. A row that
  consumes a backbone (cRT, LWS, ...) is judged by its backbone's augmentation, which learned
  the features.
- **tau on a partial validation set** (¶, LaTeX ``$^\\P$``): rows whose tau (tau-norm, post-hoc
  LA, the known-prior rows' model prior) was chosen on a validation set missing classes. Under
  the CIFAR-LT protocol the head class keeps every one of its training images, so none is left
  for validation, and the protocol's exact counts forbid taking any.

Everything here is read from records (their ``config`` and ``val_counts``), never recomputed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

AUGMENT_MARK = ("$^\\diamond$", "◇")
PARTIAL_VAL_MARK = ("$^\\P$", "¶")
# What makes a training image: the data pipeline's keys and the batch mixing and targets.
DATA_AUGMENT_KEYS = ("crop_pad", "flip", "auto_augment", "color_jitter", "re_prob", "rrc_scale_min")
TRAIN_AUGMENT_KEYS = ("mixup", "cutmix", "label_smoothing", "mixup_off_epoch")
# Architectures whose rows are compared with each other; any other model is its own.
ARCHITECTURES = {"vit": "ViT", "deit": "ViT", "mae": "ViT", "cnn": "CNN"}


def architecture_of(record: Mapping[str, Any]) -> str:
    """The architecture a run's row is compared within: ``ViT`` (ViT, DeiT), ``CNN``, or the model."""
    model = str(((record.get("config") or {}).get("method") or {}).get("model") or "")
    return ARCHITECTURES.get(model, model)


def _own_augmentation(record: Mapping[str, Any]) -> dict[str, Any]:
    cfg = record.get("config") or {}
    data = ((cfg.get("data") or {}).get("augment")) or {}
    train = cfg.get("train") or {}
    out = {k: data[k] for k in DATA_AUGMENT_KEYS if k in data}
    out.update({k: train[k] for k in TRAIN_AUGMENT_KEYS if k in train})
    return out


def augmentation_of(record: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A run's training augmentation as canonical JSON: its backbone's where it consumes one
    (``needs.backbone``) and that run is known, else its own."""
    backbone = (record.get("needs") or {}).get("backbone")
    source = (by_id or {}).get(backbone, record) if backbone else record
    return json.dumps(_own_augmentation(source), sort_keys=True)


def chose_tau(record: Mapping[str, Any], selection: str) -> bool:
    """Whether the run's reported prediction rests on a tau chosen on validation."""
    return "tau" in ((record.get("results") or {}).get(selection) or {})


def val_coverage(record: Mapping[str, Any]) -> tuple[int, int] | None:
    """(classes with validation images, classes) of a run's validation set; None when unknown."""
    counts = record.get("val_counts")
    if counts is None:
        return None
    counts = np.asarray(counts)
    return int((counts > 0).sum()), int(counts.size)


def _describe(settings: str, usual: str) -> str:
    mine, base = json.loads(settings), json.loads(usual)
    changed = [f"{k} {mine.get(k)!s}" for k in sorted(set(mine) | set(base)) if mine.get(k) != base.get(k)]
    return ", ".join(changed)


def augmentation_marks(rows: Mapping[tuple, Mapping[str, Any]]) -> dict[tuple, str]:
    """``{(dataset, budget, method): how its augmentation differs}`` for the rows that differ
    from the most common augmentation of their block and architecture (ties: the first row's).

    Args:
        rows: ``runs_frame``'s ``attrs["rows"]``, each with ``augment`` and ``architecture``.
    """
    groups: dict[tuple, list[tuple]] = {}
    for key, info in rows.items():
        if info.get("augment") is not None:
            groups.setdefault((key[0], key[1], info.get("architecture")), []).append(key)
    out = {}
    for keys in groups.values():
        seen = Counter(rows[k]["augment"] for k in keys)
        if len(seen) < 2:
            continue
        usual = max(seen, key=lambda a: (seen[a], -next(i for i, k in enumerate(keys) if rows[k]["augment"] == a)))
        for k in keys:
            if rows[k]["augment"] != usual:
                out[k] = _describe(rows[k]["augment"], usual)
    return out


def partial_val_rows(rows: Mapping[tuple, Mapping[str, Any]]) -> dict[tuple, tuple[int, int]]:
    """``{(dataset, budget, method): (classes covered, classes)}`` of the rows whose tau was
    chosen on a validation set missing classes."""
    return {k: tuple(info["partial_val"]) for k, info in rows.items() if info.get("partial_val")}


def marker(key: tuple, rows: Mapping[tuple, Mapping[str, Any]], latex: bool) -> str:
    """The markers after a row's name (◇ augmentation, ¶ tau on a partial validation set)."""
    i = 0 if latex else 1
    out = AUGMENT_MARK[i] if key in augmentation_marks(rows) else ""
    return out + (PARTIAL_VAL_MARK[i] if key in partial_val_rows(rows) else "")


def notes(rows: Mapping[tuple, Mapping[str, Any]], escape: Callable[[Any], str], latex: bool) -> list[str]:
    """The sentences that explain the markers the rows carry."""
    i = 0 if latex else 1
    out = []
    differ = augmentation_marks(rows)
    if differ:
        which = "; ".join(f"{escape(m)}: {escape(what)}" for (_, _, m), what in differ.items())
        out.append(
            f"{AUGMENT_MARK[i]}: trained with other augmentation than most rows of its architecture in its block, "
            f"so its difference to them is not the method's alone ({which})"
        )
    partial = partial_val_rows(rows)
    if partial:
        which = ", ".join(f"{escape(m)} ({c} of {n} classes)" for (_, _, m), (c, n) in partial.items())
        out.append(
            f"{PARTIAL_VAL_MARK[i]}: tau chosen on a validation set missing classes, {which}: the missing ones play "
            "no part in the choice (under the CIFAR-LT protocol the head class keeps all its training images, so "
            "none is left for validation)"
        )
    return out


KNOWN_PRIOR_SUFFIX = " + known prior"


KNOWN_PRIOR_TEXT = (
    "+ known prior: an oracle that knows the test set's class prior, the same runs' stored logits "
    "corrected as argmax(z - tau log p_train + log p_test), tau the training prior the logits still carry "
    "(post-hoc LA's choice on validation: 0 where the method removed it already), shown for reference "
    "and never bold"
)
