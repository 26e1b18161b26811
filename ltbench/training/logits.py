"""Stored logits: kept during evaluation, written beside the record, read back, and the tau of
logit adjustment chosen on validation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import write_atomic
from ..data.formats._checksum import file_digest

LOGITS_FILE = "logits.npz"


SPLITS = ("test", "val")


_CHUNK = 8192  # rows per argmax: bounds the float32 copy (8,192 x 8,142 x 4 B = 267 MB on iNat18)


class LogitsError(ValueError):
    """A run's stored logits are missing, unreadable or not the file its record names."""


class MissingLogits(LogitsError):
    """The run stored none of the logits asked for (a record from before they were stored, a
    file not here, no validation set); reports skip such a run and say why (``reason``)."""

    def __init__(self, message: str, reason: str = "no stored logits"):
        super().__init__(message)
        self.reason = reason


def _host(kept: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(float32 logits, labels) on the host from ``Classify.evaluate``'s ``logits_out``.

    The logits come in the dtype the record's statistics counted them in (float32 on CPU, bf16
    under CUDA autocast) and are converted to float32 on the host: exact, nothing clipped or
    rounded, so their argmax is the record's.
    """
    if not kept:
        return None
    z = kept["logits"].detach().cpu().float().numpy()
    y = kept["labels"].cpu().numpy()
    return z, y.astype(np.int16 if z.shape[1] <= np.iinfo(np.int16).max + 1 else np.int32)


def _stacked(tensors):
    import torch

    return torch.stack(list(tensors))


def _float32(z) -> np.ndarray:
    return z.detach().cpu().float().numpy()


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Uncompressed: float32 logits barely compress, and np.load then reads without inflating.
    write_atomic(path, lambda tmp: _savez(tmp, arrays))


def _savez(tmp: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as f:  # a file object: savez would add ".npz" to a bare name
        np.savez(f, **arrays)


def _read_all(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


class LogitKeeper:
    """Collects a run's test and validation logits per epoch while it trains, and writes its
    logits file when it ends (:meth:`finish`).

    Contract: :meth:`keep` is called with the logits of an epoch whose test set was evaluated
    for a selection (``last``, and the ``best_val`` epoch's kept weights, after the last epoch).
    :meth:`write` writes every epoch kept so far at once, so a run resumed after it still
    has those epochs' logits. Only one process of a data-parallel run writes (``enabled``).
    """

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path = Path(run_dir) / LOGITS_FILE
        self.enabled = enabled
        self.entries: dict[int, dict[str, np.ndarray]] = {}
        self.head_names: list[str] = []  # the heads whose logits are stored (experts), in order
        self.write_seconds = 0.0

    def keep(self, epoch: int, test: dict | None, val: dict | None = None) -> None:
        """Keep ``epoch``'s logits (``Classify.evaluate``'s ``logits_out`` of test and validation)."""
        if not self.enabled:
            return
        entry = {}
        for split, kept in (("test", test), ("val", val)):
            arrays = _host(kept)
            if arrays is not None:
                entry[f"e{epoch}_{split}_logits"], entry[f"e{epoch}_{split}_labels"] = arrays
                if kept.get("heads"):  # each expert's logits, (E, N, C), in the experts' order
                    self.head_names = list(kept["heads"])
                    entry[f"e{epoch}_{split}_heads"] = _float32(_stacked(kept["heads"].values()))
                if kept.get("views") is not None:  # each expert on augmented views, (V, E, N, C)
                    entry[f"e{epoch}_{split}_views"] = _float32(kept["views"])
        if not entry:
            return
        self.entries[epoch] = entry

    def write(self) -> None:
        """Write every epoch kept so far to the run folder now, so that a run resumed after
        this point still has those epochs' logits."""
        if not self.enabled or not self.entries:
            return
        tick = time.perf_counter()
        _write(self.path, {k: v for kept_entry in self.entries.values() for k, v in kept_entry.items()})
        self.write_seconds += time.perf_counter() - tick

    def restore(self, results: dict[str, dict]) -> None:
        """After a resume: take back from the file on disk the logits of the selections that
        ``results`` (the checkpoint's) already evaluated on the test set, so that the next
        write keeps them. A choice not yet evaluated (``best_val`` mid-run) takes nothing."""
        if not self.enabled or not self.path.is_file():
            return
        try:
            on_disk = _read_all(self.path)
        except (OSError, ValueError):
            return  # a torn or foreign file: nothing usable
        for epoch in {int(r["epoch"]) for r in results.values() if "epoch" in r and "correct" in r}:
            entry = {k: v for k, v in on_disk.items() if k.startswith(f"e{epoch}_")}
            if entry:
                self.entries[epoch] = entry

    def finish(self, results: dict[str, dict]) -> dict[str, Any] | None:
        """Write the logits file of the selections in ``results`` and return the record's
        ``logits`` entry (None when no selection has logits: a pretraining stage).

        A selection whose epoch's logits are neither kept in this process nor in the file on
        disk (a run resumed from a checkpoint older than its logits) is left out; the entry's
        ``selections`` lists those stored.
        """
        if not self.enabled:
            return None
        tick = time.perf_counter()
        on_disk: dict[str, np.ndarray] = {}
        wanted = {sel: int(res["epoch"]) for sel, res in results.items() if "epoch" in res}
        if self.path.is_file() and any(e not in self.entries for e in wanted.values()):
            try:
                on_disk = _read_all(self.path)
            except (OSError, ValueError):
                on_disk = {}  # a torn or foreign file: nothing usable
        arrays: dict[str, np.ndarray] = {}
        selections = {}
        for sel, epoch in wanted.items():
            prefix = f"e{epoch}_"
            entry = self.entries.get(epoch) or {k: v for k, v in on_disk.items() if k.startswith(prefix)}
            if f"{prefix}test_logits" in entry:
                arrays.update(entry)
                selections[sel] = f"e{epoch}"  # best_val at the last epoch shares last's arrays
        if not selections:
            self.path.unlink(missing_ok=True)
            return None
        _write(self.path, arrays)
        self.write_seconds += time.perf_counter() - tick
        # float32; float16 only where a run resumed from a file written before float32 storage
        # still holds such an epoch (the least precise dtype stored: its rows may tie).
        dtypes = {np.dtype(v.dtype) for k, v in arrays.items() if k.endswith("_logits")}
        entry = {
            "file": LOGITS_FILE,
            "sha256": file_digest(self.path, "sha256"),
            "bytes": self.path.stat().st_size,
            "dtype": min(dtypes, key=lambda d: d.itemsize).name,
            "selections": selections,
            "write_seconds": round(self.write_seconds, 4),
        }
        if any(k.endswith("_heads") for k in arrays):
            entry["heads"] = self.head_names or _head_names(arrays)
        return entry


_DIGESTS: dict[tuple, str] = {}  # (path, inode, size, mtime, ctime) -> SHA-256: a report reads a file often


def _sha256(path: Path) -> str:
    """The file's SHA-256, hashed once per version of the file (a change gives a new mtime or size)."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)  # ctime: even a copy2 moves it
    if key not in _DIGESTS:
        if len(_DIGESTS) > 4096:
            _DIGESTS.clear()
        _DIGESTS[key] = file_digest(path, "sha256")
    return _DIGESTS[key]


def logits_path(record: dict[str, Any]) -> Path:
    """Where a record's logits file lies (its run folder).

    Raises:
        MissingLogits: the record names no logits file (a run from before they were stored).
        LogitsError: the record names something other than a file in its run folder.
    """
    entry = record.get("logits")
    if not entry:
        raise MissingLogits(f"run {record.get('run_id', '?')[:10]} stored no logits (recorded before they were)")
    name = str(entry.get("file", ""))
    if not name or Path(name).name != name or name in (".", ".."):
        raise LogitsError(f"run {record.get('run_id', '?')[:10]}: logits file {name!r} is not a name in its run folder")
    return Path(record["run_dir"]) / name


def _checked_file(record: dict[str, Any], selection: str) -> tuple[Path, str]:
    """The run's logits file and the key prefix of ``selection`` in it, once the file is there,
    holds that selection and matches the record's SHA-256 (the errors of :func:`load_logits`)."""
    path = logits_path(record)
    run = record.get("run_id", "?")[:10]
    if not path.is_file():
        raise MissingLogits(
            f"run {run}: logits file {path} is missing (the run folder moved or was cleaned)", "logits file missing"
        )
    entry = record["logits"]
    key = (entry.get("selections") or {}).get(selection)
    if key is None:
        raise MissingLogits(f"run {run} stored no logits for selection {selection!r}", f"no {selection} logits")
    digest = _sha256(path)
    if digest != entry.get("sha256"):
        raise LogitsError(
            f"run {run}: {path} does not match its record (sha256 {digest[:16]}..., record says "
            f"{str(entry.get('sha256'))[:16]}...): the file was changed or swapped; restore it, or re-run "
            "the run with --force to store it afresh"
        )
    return path, key


def load_logits(record: dict[str, Any], selection: str = "last") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A run's stored logits of one selection, checked against the record's SHA-256.

    Args:
        record: the run's record (its ``run_dir`` and ``logits`` entry).
        selection: ``last`` or ``best_val``.

    Returns:
        ``{split: (logits [N, C], labels [N])}`` for ``test`` and, where stored, ``val``; the
        logits as stored (float32; float16 in records from before exact storage).

    Raises:
        MissingLogits: no logits stored, the file is not in the run folder, or the selection
            was not stored.
        LogitsError: the file's SHA-256 differs from the record's (changed or swapped), or it
            cannot be read as plain arrays.
    """
    path, key = _checked_file(record, selection)
    run = record.get("run_id", "?")[:10]
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {
                split: (f[f"{key}_{split}_logits"], f[f"{key}_{split}_labels"])
                for split in SPLITS
                if f"{key}_{split}_logits" in f.files
            }
    except (OSError, ValueError, KeyError) as e:
        raise LogitsError(f"run {run}: cannot read {path} as plain arrays: {e}") from e
    if "test" not in out:
        raise LogitsError(f"run {run}: {path} holds no test logits for selection {selection!r}")
    return out


def _head_names(arrays: dict[str, np.ndarray]) -> list[str]:
    """Expert names for a file whose heads were kept before a resume (this process saw none)."""
    count = next(v.shape[0] for k, v in arrays.items() if k.endswith("_heads"))
    return [f"expert{i}" for i in range(count)]


def load_expert_logits(record: dict[str, Any], selection: str = "last") -> dict[str, dict[str, np.ndarray]]:
    """Each expert's stored logits of one selection, checked like :func:`load_logits`.

    Returns:
        ``{split: {"heads": (E, N, C), "labels": (N,), "views": (V, E, N, C)}}`` for the splits
        stored (``views``: augmented test views, only where the run kept them, ``train.test_views``).

    Raises:
        MissingLogits: the run stored no per-expert logits (not a multi-expert model, or a
            record from before they were stored), or not for this selection.
        LogitsError: as :func:`load_logits`.
    """
    path, key = _checked_file(record, selection)
    run = record.get("run_id", "?")[:10]
    if not record["logits"].get("heads"):
        raise MissingLogits(f"run {run} stored no per-expert logits", "no expert logits")
    with np.load(path, allow_pickle=False) as f:
        out = {}
        for split in SPLITS:
            if f"{key}_{split}_heads" not in f.files:
                continue
            out[split] = {"heads": f[f"{key}_{split}_heads"], "labels": f[f"{key}_{split}_labels"]}
            if f"{key}_{split}_views" in f.files:
                out[split]["views"] = f[f"{key}_{split}_views"]
    if "test" not in out:
        raise MissingLogits(f"run {run} stored no per-expert test logits for {selection!r}", "no expert logits")
    return out


def log_prior(train_counts: Sequence[float]) -> np.ndarray:
    """``log p_train`` per class; 0 (no adjustment) for a class with no training image."""
    counts = np.asarray(train_counts, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, np.log(counts / max(counts.sum(), 1.0)), 0.0)


def predict(logits: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """``argmax_j logits_j + offset_j`` per row, in float32, a chunk of rows at a time."""
    add = None if offset is None else np.asarray(offset, dtype=np.float32)
    out = np.empty(len(logits), dtype=np.int64)
    for start in range(0, len(logits), _CHUNK):
        z = logits[start : start + _CHUNK].astype(np.float32)
        out[start : start + _CHUNK] = (z if add is None else z + add).argmax(1)
    return out


def class_counts(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class correct and total, as a record stores them."""
    labels = np.asarray(labels, dtype=np.int64)
    total = np.bincount(labels, minlength=num_classes)
    correct = np.bincount(labels[pred == labels], minlength=num_classes)
    return correct, total


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean per-class accuracy over the classes present in ``labels`` (the objective's tau score)."""
    from ..evaluation.metrics import mean_class_accuracy

    return mean_class_accuracy(*class_counts(pred, labels, num_classes))


def choose_tau(
    val_logits: np.ndarray, val_labels: np.ndarray, train_counts: Sequence[float], grid: Sequence[float] | None = None
) -> tuple[float, dict[float, float]]:
    """Pick post-hoc LA's ``tau`` on the validation logits.

    Args:
        val_logits, val_labels: the validation set's logits ``[N, C]`` and labels.
        train_counts: training images per class.
        grid: taus to try (default :data:`ltbench.training.objectives.LOGIT_ADJUST_GRID`, 0 to 3 by
            0.25, the ``posthoc_logit_adjust`` objective's).

    Returns:
        (tau, {tau: mean per-class validation accuracy}); the first of equal scores in grid
        order wins, as the objective chooses.
    """
    if grid is None:
        from .objectives import LOGIT_ADJUST_GRID as grid
    lp = log_prior(train_counts)
    c = len(lp)
    scores = {float(t): balanced_accuracy(predict(val_logits, -t * lp), val_labels, c) for t in grid}
    return max(scores, key=scores.get), scores  # max keeps the first of ties
