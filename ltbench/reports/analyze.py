"""Diagnostics of a trained run from its final weights: attention distance and effective rank.

DeiT-LT (Rangwani et al., CVPR 2024) explains its gains with two measurements, both computed
here from a stored run's ``checkpoint.pt`` and its test images (no retraining):

- **Mean attention distance** per block and head (Dosovitskiy et al., ICLR 2021, Fig. 7): for
  each query patch, the attention-weighted Euclidean distance in input pixels to the key
  patches, averaged over queries and images. Distillation from a CNN makes early blocks local
  (small distances). Attention is recomputed from each block's ``qkv`` projection through
  forward pre-hooks on that model instance; no library code is patched.
- **Effective rank** (Roy & Vetterli, 2007) of the CLS and DIST token features (the final norm's
  output at those positions) over the test images: ``exp(H(p))`` with ``p`` the singular values
  of the centred feature matrix divided by their sum. A flat teacher gives low-rank DIST features.

CNN runs have no attention; their pooled (penultimate) features still get an effective rank.
:func:`analyze_runs` is what ``ltbench analyze`` calls; docs/analysis.md gives the details.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.atomic import write_atomic, write_text_atomic

DEFAULT_IMAGES = 500
SUBSET_SEED = 0  # the same test images for every run of one dataset, so runs compare like with like


# ------------------------------------------------------------------ the two measurements


def patch_distances(grid: tuple[int, int], patch_size: int | tuple[int, int]) -> torch.Tensor:
    """(P, P) Euclidean distances in pixels between the centres of the patches of a ``grid``
    (rows, columns), patches in row-major order as a ViT flattens them."""
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    yx = torch.stack([rows.flatten() * float(ph), cols.flatten() * float(pw)], 1)
    return torch.cdist(yx, yx)


def mean_attention_distance(
    attn: torch.Tensor, grid: tuple[int, int], patch_size: int | tuple[int, int], num_prefix_tokens: int = 0
) -> torch.Tensor:
    """Mean attention distance (pixels) of attention probabilities ``attn`` (B, H, N, N).

    The first ``num_prefix_tokens`` tokens (CLS, DIST) are dropped as queries and as keys and each
    query's attention is renormalised over the patch keys, so a distance is a weighted mean over
    patches only (a query that sends half its attention to CLS counts like one that sends none).

    Returns:
        (B, H): per image and head, the mean over query patches of sum_k a_qk * d(q, k).
    """
    p = num_prefix_tokens
    a = attn[..., p:, p:].double()
    a = a / a.sum(-1, keepdim=True).clamp_min(1e-30)
    dist = patch_distances(grid, patch_size).to(a.device, a.dtype)
    if a.shape[-1] != dist.shape[0]:
        raise ValueError(f"attention over {a.shape[-1]} patch tokens, but a {grid} grid has {dist.shape[0]} patches")
    return (a * dist).sum(-1).mean(-1)


def effective_rank(features: np.ndarray | torch.Tensor, center: bool = True) -> float:
    """Roy & Vetterli's effective rank of a (samples, dims) matrix: exp of the Shannon entropy of
    its normalised singular values ``p_i = s_i / sum_j s_j``, after centring the columns (default).

    Between 1 and min(samples, dims); equals k for k equal non-zero singular values. An all-zero
    matrix has no spectrum and gives 0.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (samples, dims), got shape {tuple(x.shape)}")
    if center:
        x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    if float(s.sum()) <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


# ------------------------------------------------------------------ one model over images


def _is_vit(model: torch.nn.Module) -> bool:
    return hasattr(model, "blocks") and hasattr(model, "patch_embed") and hasattr(model, "forward_features")


def _batches(images, batch_size: int) -> Iterable[torch.Tensor]:
    """Image tensors from a tensor (N, C, H, W), or an iterable of tensors or (images, labels) pairs."""
    if isinstance(images, torch.Tensor):
        yield from images.split(batch_size)
        return
    for item in images:
        yield item[0] if isinstance(item, (tuple, list)) else item


def _attention_probs(attn: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention (B, H, N, N) of a timm-style Attention module on its input ``x``, from
    its own ``qkv`` projection (and q/k norms, if any), as its forward computes it."""
    if not isinstance(getattr(attn, "qkv", None), torch.nn.Linear):
        raise ValueError(f"{type(attn).__name__} has no fused qkv projection; attention distance needs one")
    b, n, _ = x.shape
    heads = attn.num_heads
    head_dim = attn.qkv.out_features // 3 // heads
    q, k, _ = attn.qkv(x).reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = getattr(attn, "q_norm", torch.nn.Identity())(q), getattr(attn, "k_norm", torch.nn.Identity())(k)
    scale = getattr(attn, "scale", head_dim**-0.5)
    return ((q.float() * scale) @ k.float().transpose(-2, -1)).softmax(-1)


def _classifier(model: torch.nn.Module) -> torch.nn.Module:
    for name in ("fc", "head"):
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ValueError(f"{type(model).__name__} has no fc or head whose input is its pooled features")


@torch.inference_mode()
def analyze_model(model: torch.nn.Module, images, batch_size: int = 256, progress=None) -> dict[str, Any]:
    """Attention distance and token features of ``model`` over ``images`` in one pass.

    Args:
        model: a timm ViT / DeiT (attention and CLS/DIST features) or a CNN with an ``fc``
            classifier (pooled features only).
        images: normalised images, a tensor (N, C, H, W) or an iterable of batches (tensors or
            (images, labels) pairs), on the model's device.
        progress: called with the number of images of each finished batch.

    Returns:
        ``attention`` (np.ndarray (blocks, heads) in pixels, or None for a CNN), ``features``
        (name -> (N, D) float32 array: ``cls``, ``dist``, ``pooled``), ``n_images``, ``patch_size``
        and ``grid`` (None for a CNN).
    """
    model.eval()
    vit = _is_vit(model)
    sums: list[torch.Tensor] = []
    feats: dict[str, list[torch.Tensor]] = {}
    hooks = []
    if vit:
        prefix = int(getattr(model, "num_prefix_tokens", 1))
        grid = tuple(model.patch_embed.grid_size)
        patch = tuple(model.patch_embed.patch_size)
        sums = [torch.zeros((), dtype=torch.float64)] * len(model.blocks)

        def capture(i):
            def hook(module, args):
                d = mean_attention_distance(_attention_probs(module, args[0]), grid, patch, prefix)
                sums[i] = sums[i] + d.sum(0).cpu()

            return hook

        hooks = [blk.attn.register_forward_pre_hook(capture(i)) for i, blk in enumerate(model.blocks)]
    else:
        hooks = [_classifier(model).register_forward_pre_hook(lambda m, a: feats.setdefault("pooled", []).append(a[0]))]
    n = 0
    try:
        for x in _batches(images, batch_size):
            if vit:
                tokens = model.forward_features(x)
                if getattr(model, "has_class_token", getattr(model, "cls_token", None) is not None):
                    feats.setdefault("cls", []).append(tokens[:, 0])
                if getattr(model, "dist_token", None) is not None:
                    feats.setdefault("dist", []).append(tokens[:, 1])
                if getattr(model, "global_pool", "token") not in ("token", ""):  # pooled differs from CLS
                    feats.setdefault("pooled", []).append(model.forward_head(tokens, pre_logits=True))
            else:
                model(x)
            n += len(x)
            if progress is not None:
                progress(len(x))
    finally:
        for h in hooks:
            h.remove()
    if n == 0:
        raise ValueError("no images to analyze")
    return {
        "attention": torch.stack(sums).numpy() / n if vit else None,
        "features": {k: torch.cat(v).float().cpu().numpy() for k, v in feats.items()},
        "n_images": n,
        "patch_size": list(patch) if vit else None,
        "grid": list(grid) if vit else None,
    }


def attention_distance(model: torch.nn.Module, images, batch_size: int = 256) -> np.ndarray:
    """Mean attention distance in pixels of each block and head of a ViT over ``images``:
    (blocks, heads); ``.mean(1)`` is the per-block value. See :func:`mean_attention_distance`.

    Raises:
        ValueError: ``model`` is not a ViT (a CNN has no attention).
    """
    if not _is_vit(model):
        raise ValueError(f"{type(model).__name__} is not a ViT: attention distance does not apply")
    return analyze_model(model, images, batch_size)["attention"]


# ------------------------------------------------------------------ stored runs


def _weights_path(record: dict[str, Any], store_dir: Path) -> Path:
    """The run's checkpoint: in its folder under the store's own ``runs/`` (a copied or moved
    store reads its own files), else in the folder the record names."""
    from ..store.records import read_record
    from ..training.checkpoints import CHECKPOINT

    stored = Path(record.get("run_dir") or ".")
    local = store_dir / "runs" / record["dataset"] / record["method"] / stored.name
    for folder in dict.fromkeys((local, stored)):
        found = read_record(folder) if (folder / CHECKPOINT).is_file() else None
        if found is not None and found.get("run_id") == record["run_id"]:
            return folder / CHECKPOINT
    label = f"run {record['run_id'][:10]} ({record['method']})"
    if record.get("status") != "done":
        raise ValueError(f"{label} is {record.get('status')}, not done; analyze a finished run")
    if "backbone" in (record.get("needs") or {}):
        raise ValueError(
            f"{label} stores no weights of its own (an evaluation-only stage); "
            f"analyze its backbone run {record['needs']['backbone'][:10]} instead"
        )
    raise ValueError(f"{label} has no {CHECKPOINT} in {local} or {stored}; copy its run folder there or re-run it")


def load_run_model(record: dict[str, Any], weights: Path, device: torch.device) -> torch.nn.Module:
    """The network of a stored run, rebuilt from its record's config, with the final weights
    of ``weights`` (loaded with ``weights_only=True``). An LWS wrapper is unwrapped and an MGP
    stage gives its encoder."""
    from ..config.specs import run_config_from_dict
    from ..training.models import build_model

    model = build_model(run_config_from_dict(record["config"]))
    state = torch.load(weights, map_location="cpu", weights_only=True)["model"]
    own = model.state_dict().keys()
    for prefix in ("inner.", "encoder."):  # LWS's ScaledLogits, MGP's MaskedAutoencoder
        if not any(k in own for k in state) and any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    model.load_state_dict(state)
    return model.to(device).eval()


def run_test_images(record: dict[str, Any], n_images: int, device, root: str | Path | None = None):
    """The run's test images rebuilt as the runner builds them (its recorded dataset config,
    data seed and root), ``n_images`` of them drawn with a fixed seed (all when 0 or more than
    there are); returns (batches, number of test images, data fingerprint matches the record)."""
    from ..config.specs import run_config_from_dict
    from ..data import build_data
    from ..training.loop import make_batches

    cfg = run_config_from_dict(record["config"])
    prov = record.get("provenance") or {}
    data = build_data(cfg.data, cfg.data_seed, root or prov.get("data_root"), bool(prov.get("data_verified", True)))
    test = data.test
    if 0 < n_images < len(test):
        test = test.take(np.sort(np.random.default_rng(SUBSET_SEED).choice(len(test), n_images, replace=False)))
    same = prov.get("data_fingerprint") in (None, data.fingerprint())
    return make_batches(data, test, cfg, torch.device(device)), len(data.test), same


def analyze_record(
    record: dict[str, Any],
    store_dir: Path,
    n_images: int = DEFAULT_IMAGES,
    device=None,
    root=None,
    batch_size: int = 256,
    progress=None,
) -> dict[str, Any]:
    """:func:`analyze_model` on one stored run: its weights, its test images; a JSON-ready dict."""
    from ..execution.runner import default_device

    device = torch.device(device) if device is not None else default_device()
    weights = _weights_path(record, store_dir)
    model = load_run_model(record, weights, device)
    batches, n_test, same = run_test_images(record, n_images, device, root)
    found = analyze_model(model, batches.eval_batches(batch_size), batch_size, progress)
    att = found["attention"]
    return {
        "run_id": record["run_id"],
        "method": record["method"],
        "dataset": record["dataset"],
        "budget": record["budget"],
        "seed": record["seed"],
        "model": record["config"]["method"]["model"],
        "weights": str(weights),
        "n_images": found["n_images"],
        "n_test_images": n_test,
        "data_matches_record": same,
        "patch_size": found["patch_size"],
        "grid": found["grid"],
        "attention_distance": None if att is None else att.mean(1).tolist(),
        "attention_distance_per_head": None if att is None else att.tolist(),
        "attention_note": None if att is not None else "a CNN has no attention: attention distance does not apply",
        "effective_rank": {k: effective_rank(v) for k, v in found["features"].items()},
        "feature_dim": {k: int(v.shape[1]) for k, v in found["features"].items()},
    }


def _csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run_id", "method", "quantity", "block", "head", "value"])
    rid, method = result["run_id"][:10], result["method"]
    for b, heads in enumerate(result["attention_distance_per_head"] or []):
        w.writerow([rid, method, "attention_distance_px", b, "mean", f"{np.mean(heads):.4f}"])
        w.writerows([rid, method, "attention_distance_px", b, h, f"{v:.4f}"] for h, v in enumerate(heads))
    for name, value in result["effective_rank"].items():
        w.writerow([rid, method, f"effective_rank_{name}", "", "", f"{value:.4f}"])
    return buf.getvalue()


def analyze_runs(
    store: str | Path,
    run_ids: Sequence[str],
    out: str | Path | None = None,
    n_images: int = DEFAULT_IMAGES,
    device: str | None = None,
    root: str | Path | None = None,
    console=None,
) -> dict[str, Any]:
    """Analyze stored runs and draw them side by side (what ``ltbench analyze`` does).

    Args:
        store: the results store holding the runs.
        run_ids: run ids or unique prefixes of them.
        out: output folder (default: ``analysis/`` next to the store).
        n_images: test images per run (a fixed-seed draw, the same for every run of one dataset);
            0 uses them all.
        device: ``cpu``, ``cuda``... (None: CUDA when present).
        root: the dataset's files, when they moved since the run (default: the recorded root).
        console: where the progress bar goes (rich; None: stderr).

    Returns:
        ``results`` (one dict per run, as in its JSON file) and ``files`` (kind -> path).

    Raises:
        ValueError: an unknown or ambiguous id, or a run without weights (nothing is written).
        FileNotFoundError: no store at ``store``.
    """
    from rich.console import Console

    from ..execution.progress import progress_bar
    from ..store.access import synced_store

    db = synced_store(store)
    store_dir = Path(store).parent
    records = [db.get(db.find(r)) for r in dict.fromkeys(run_ids)]
    for rec in records:  # every id checked before any work
        _weights_path(rec, store_dir)
    out = Path(out) if out is not None else store_dir / "analysis"
    results, files = [], {}
    with progress_bar(console or Console(stderr=True)) as bar:
        for rec in records:
            task = bar.add_task(f"{rec['method']} {rec['run_id'][:10]}", total=None, info="")

            def advance(k, task=task):
                bar.advance(task, k)

            result = analyze_record(rec, store_dir, n_images, device, root, progress=advance)
            bar.update(task, total=result["n_images"], completed=result["n_images"], info=_summary(result))
            short = rec["run_id"][:10]
            stem = out / f"{rec['method']}_{short}"
            files[f"json {short}"] = write_text_atomic(stem.with_suffix(".json"), json.dumps(result, indent=1))
            files[f"csv {short}"] = write_text_atomic(stem.with_suffix(".csv"), _csv(result))
            results.append(result)
    png, pdf = plot_analysis(results, out / "analysis")
    files.update(png=png, pdf=pdf)
    return {"results": results, "files": files}


def _summary(result: dict[str, Any]) -> str:
    att = result["attention_distance"]
    ranks = ", ".join(f"{k} {v:.1f}" for k, v in result["effective_rank"].items())
    where = "no attention (CNN)" if att is None else f"block 1 {att[0]:.1f}px, last {att[-1]:.1f}px"
    return f"{where}; effective rank {ranks}"


# ------------------------------------------------------------------ figure


def figure_analysis(results: Sequence[dict[str, Any]]):
    """Two panels side by side: mean attention distance per block (a line per ViT run, its
    heads as dots) and effective-rank bars of the CLS / DIST / pooled features (a bar per run);
    the legend sits below, outside the data. Methods follow the report's order and colour
    cycle (:mod:`ltbench.reports.plot_style`: model family, then name), so a report of the same
    methods draws each in the same colour; the seeds of one method share its colour and
    differ in marker and hatch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plot_style import HATCHES, MARKERS, MethodStyle

    style = MethodStyle({r["method"]: r["model"] for r in results})
    results = sorted(results, key=lambda r: (style.order.index(r["method"]), r["seed"], r["run_id"]))
    nth: dict[str, int] = {}
    looks = []  # (colour, marker, hatch) per run: the method's colour, the run's rank among its seeds
    for r in results:
        k = nth[r["method"]] = nth.get(r["method"], -1) + 1
        looks.append((style(r["method"]).colour, MARKERS[k % len(MARKERS)], HATCHES[k % len(HATCHES)]))

    fig = Figure(figsize=(10.4, 4.4), layout="constrained")  # no pyplot: no global figure state
    FigureCanvasAgg(fig)
    ax_att, ax_rank = fig.subplots(1, 2)
    handles = []
    depth = 1
    for i, r in enumerate(results):
        colour, marker, _ = looks[i]
        per_head = r["attention_distance_per_head"]
        if per_head is None:
            handles.append(ax_att.plot([], [], color=colour, marker="s", ls="none", label=f"{_label(r)} (CNN)")[0])
            continue
        heads = np.asarray(per_head)
        depth = max(depth, len(heads))
        blocks = np.arange(1, len(heads) + 1)
        offset = (i - (len(results) - 1) / 2) * 0.06  # keep runs' head dots apart
        for h in range(heads.shape[1]):
            ax_att.scatter(blocks + offset, heads[:, h], s=12, color=colour, alpha=0.45, marker=marker, lw=0)
        (line,) = ax_att.plot(blocks, heads.mean(1), color=colour, marker=marker, lw=1.8, label=_label(r))
        handles.append(line)
    grids = {(tuple(r["grid"]), tuple(r["patch_size"])) for r in results if r["grid"] is not None}
    if len(grids) == 1:  # the value of attention spread evenly over all patches: the no-locality reference
        uniform = float(patch_distances(*next(iter(grids))).mean())
        handles.append(ax_att.axhline(uniform, color="0.5", ls="--", lw=1, label="uniform attention"))
    ax_att.set_xlabel("block")
    ax_att.set_ylabel("mean attention distance (px)")
    ax_att.set_title("attention distance (line: mean over heads; dots: heads)", fontsize=9)
    ax_att.set_xticks(np.arange(1, depth + 1))
    drawn = [np.asarray(line.get_ydata(), dtype=float) for line in ax_att.lines]
    ax_att.set_ylim(0, max([1.0, *(y.max() for y in drawn if y.size)]) * 1.12)  # room above the uniform line
    if all(r["attention_distance_per_head"] is None for r in results):
        ax_att.text(0.5, 0.5, "CNN runs only: no attention", ha="center", transform=ax_att.transAxes)

    kinds = [k for k in ("cls", "dist", "pooled") if any(k in r["effective_rank"] for r in results)]
    most = max((sum(k in r["effective_rank"] for r in results) for k in kinds), default=1)
    width = 0.8 / most
    for j, kind in enumerate(kinds):  # each group holds only the runs that have that feature
        having = [(i, r) for i, r in enumerate(results) if kind in r["effective_rank"]]
        for slot, (i, r) in enumerate(having):
            x = j + (slot - (len(having) - 1) / 2) * width
            colour, _, hatch = looks[i]
            # A black edge keeps light colours visible.
            look = {"color": colour, "hatch": hatch or None, "edgecolor": "black", "lw": 0.4}
            bars = ax_rank.bar([x], [r["effective_rank"][kind]], width * 0.92, **look)
            if len(having) <= 6:
                ax_rank.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax_rank.set_xticks(range(len(kinds)), [k.upper() if k != "pooled" else "pooled" for k in kinds])
    ax_rank.set_ylabel("effective rank")
    n = sorted({r["n_images"] for r in results})
    ax_rank.set_title(f"effective rank of token features ({'/'.join(map(str, n))} test images)", fontsize=9)
    ax_rank.margins(y=0.12)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8, frameon=False)
    return fig


def _label(r: dict[str, Any]) -> str:
    return f"{r['method']} s{r['seed']} [{r['run_id'][:6]}]"


def plot_analysis(results: Sequence[dict[str, Any]], path: str | Path) -> list[Path]:
    """:func:`figure_analysis`, written as ``path``.png and .pdf."""
    fig = figure_analysis(results)
    written = []
    for fmt in ("png", "pdf"):
        target = Path(path).with_suffix(f".{fmt}")
        written.append(write_atomic(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=120)))
    return written


__all__ = [
    "DEFAULT_IMAGES",
    "analyze_model",
    "analyze_record",
    "analyze_runs",
    "attention_distance",
    "effective_rank",
    "load_run_model",
    "mean_attention_distance",
    "figure_analysis",
    "patch_distances",
    "plot_analysis",
    "run_test_images",
]
