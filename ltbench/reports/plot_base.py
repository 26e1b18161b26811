"""What the report's figures share: a Figure on the Agg canvas (no pyplot), saving as PNG and
PDF, method styles, legends and class-group boundaries.

Every figure takes a :class:`~ltbench.reports.plot_style.MethodStyle` so that a method has one colour,
marker and place in the order (family, then name) across the whole report, and puts its legend
outside the axes. Each ``plot_*`` writes files; the matching ``figure_*`` returns the Figure
(tests inspect it).

- :func:`ltbench.reports.plot_classes.plot_per_class`: per-class accuracy against training
  count, group boundaries drawn; :func:`~ltbench.reports.plot_classes.plot_groups`: many /
  medium / few / all bars per method, error bar = std over seeds.
- :func:`ltbench.reports.plot_training.plot_curves`: validation top-1 and learning rate per
  epoch, training loss by loss type; :func:`~ltbench.reports.plot_training.plot_heads`:
  DeiT-LT's CLS, DIST and averaged heads by group.
- :func:`ltbench.reports.plot_calibration.plot_reliability`: a reliability diagram per
  method, bins pooled over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import write_atomic
from ..evaluation.groups import assign_groups
from .plot_style import MethodStyle, legend_outside

Key = tuple[str, Any, Any]  # (row name, dataset, budget)


GROUP_LABELS = {"many": "many", "medium": "medium", "few": "few", "top1": "all"}


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> list[Path]:
    out = []
    for fmt in ("png", "pdf"):
        target = Path(path).with_suffix(f".{fmt}")
        write_atomic(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=120))
        out.append(target)
    return out


def style_for(records: Sequence[Mapping[str, Any]], names: Mapping[str, str] | None, style: MethodStyle | None):
    return style if style is not None else MethodStyle.from_records(records, names)


def rows_by_block(
    records: Sequence[Mapping[str, Any]], names: Mapping[str, str] | None, style: MethodStyle
) -> dict[Key, list]:
    """Runs by (row name, dataset, budget), rows in the style's order, blocks in order of appearance."""
    out: dict[Key, list] = {}
    for r in records:
        name = (names or {}).get(r["run_id"], r["method"])
        out.setdefault((name, r["dataset"], r.get("budget")), []).append(r)
    blocks = list(dict.fromkeys((d, b) for _, d, b in out))
    rank = {m: i for i, m in enumerate(style.sorted(m for m, _, _ in out))}
    return dict(sorted(out.items(), key=lambda kv: (blocks.index(kv[0][1:]), rank[kv[0][0]])))


def block_title(dataset, budget, several_budgets: bool) -> str:
    return f"{dataset} ({budget})" if several_budgets else str(dataset)


def _label(method: str, ns: Sequence[int]) -> str:
    ns = sorted(set(ns))
    if not ns:
        return method
    return f"{method} (n={ns[0]})" if len(ns) == 1 else f"{method} (n={ns[0]}–{ns[-1]})"


class Legend:
    """One legend entry per method over all panels, with the seeds it had in each."""

    def __init__(self):
        self.handles: dict[str, Any] = {}
        self.ns: dict[str, list[int]] = {}

    def add(self, method: str, handle, n: int) -> None:
        self.handles.setdefault(method, handle)
        self.ns.setdefault(method, []).append(n)

    def draw(self, fig, style: MethodStyle, title: str | None = None):
        order = style.sorted(self.handles)
        ncols = 1 if len(order) <= 22 else 2
        return legend_outside(
            fig, [self.handles[m] for m in order], [_label(m, self.ns[m]) for m in order], title, ncols=ncols
        )


def grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return -(-n // cols), cols


def group_boundaries(train_counts: Sequence[int], convention: str = "threshold", index_sizes=None) -> list[float]:
    """Training counts where many / medium / few change, for drawing on a count axis.

    ``threshold`` and ``oltr`` put the boundary half-way between the last count of one group
    and the first of the next, found by asking :func:`ltbench.evaluation.groups.assign_groups` itself
    (19.5 and 100.5 for ``threshold``), so figures follow the groups' definition. ``index``
    splits the classes of this run: the boundary is the geometric mean of the counts either
    side of the split. Only boundaries between this run's smallest and largest counts are given.
    """
    counts = np.asarray(train_counts, dtype=float)
    if convention == "index":
        order = np.sort(counts)[::-1]
        cuts = np.cumsum(index_sizes)[:2]
        edges = [float(np.sqrt(order[c - 1] * order[c])) for c in cuts if 0 < c < len(order)]
    else:
        probe = np.arange(0, 100_001)
        groups = assign_groups(probe, convention)
        edges = []
        for low, high in (("few", "medium"), ("medium", "many")):
            if len(groups[low]) and len(groups[high]):
                edges.append((probe[groups[low]].max() + probe[groups[high]].min()) / 2)
    lo, hi = counts[counts > 0].min(initial=np.inf), counts.max(initial=0)
    return sorted(float(e) for e in edges if lo < e < hi)
