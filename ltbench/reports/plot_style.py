"""One look per method for every figure of a report, and the order methods are listed in.

A report draws the same methods in several figures (per-class accuracy, groups, curves,
reliability, shift); a reader matches them by colour, so a method must keep its colour, marker
and line style everywhere, and no two methods may share all three. :class:`MethodStyle` gives
each method a :class:`Look` from its position in the report's order: model family first (the
``model`` of the run's method config: cnn, deit, vit, ...), then name, so related methods sit
together in legends and tables.

The first 20 looks have 20 distinct colours (tab20's dark shades, then its light shades with
dashed lines), each with a marker; further looks reuse the colours with other markers, and no
two of the first 180 share both colour and marker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# tab20: dark shade then light shade of each hue. Dark shades first (they are tab10, the colours
# people know), light ones second, so methods 1-10 get the most distinct colours.
_TAB20 = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
    "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)  # fmt: skip
COLOURS: tuple[str, ...] = _TAB20[0::2] + _TAB20[1::2]
# 9 markers: coprime with 20 colours, so (colour, marker) only repeats after 180 methods.
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")
HATCHES: tuple[str, ...] = ("", "//", "..", "xx")  # bars have no marker: past 20, a hatch tells them apart
NO_FAMILY = "~"  # sorts after every family name, so runs without one come last


@dataclass(frozen=True)
class Look:
    """How one method is drawn: colour, marker, line style and bar hatch."""

    colour: str
    marker: str
    linestyle: str
    hatch: str

    def line(self) -> dict[str, Any]:
        """Keyword arguments for ``Axes.plot``."""
        return {"color": self.colour, "marker": self.marker, "ls": self.linestyle}

    def bar(self) -> dict[str, Any]:
        """Keyword arguments for ``Axes.bar`` (an edge so light colours stay visible)."""
        return {"color": self.colour, "hatch": self.hatch or None, "edgecolor": "black", "linewidth": 0.4}


def look(index: int) -> Look:
    """The ``index``-th look of the cycle (0-based)."""
    return Look(
        colour=COLOURS[index % len(COLOURS)],
        marker=MARKERS[index % len(MARKERS)],
        linestyle=LINESTYLES[(index // 10) % len(LINESTYLES)],
        hatch=HATCHES[(index // len(COLOURS)) % len(HATCHES)],
    )


def family_of(record: Mapping[str, Any]) -> str:
    """A run's model family: the record's ``family``, else its method config's ``model``
    (cnn, deit, vit, mae, ...), else ``""``."""
    if record.get("family"):
        return str(record["family"])
    method = (record.get("config") or {}).get("method") or {}
    return str(method.get("model") or "")


def _natural(text: str) -> list:
    """Sort key that orders ``m2`` before ``m10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def sort_key(family: str, name: str) -> tuple:
    """The report's order: family (no family last), then name, naturally sorted."""
    return (_natural(family or NO_FAMILY), _natural(name), name)


def method_families(records: Iterable[Mapping[str, Any]], names: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{row name: family}`` of the records; ``names`` maps run id to row name (default: the method).
    A row whose runs disagree takes the first family in sorted order, so the result is stable."""
    seen: dict[str, set[str]] = {}
    for r in records:
        name = (names or {}).get(r.get("run_id"), r["method"])
        seen.setdefault(name, set()).add(family_of(r))
    return {name: sorted(fams, key=lambda f: _natural(f or NO_FAMILY))[0] for name, fams in seen.items()}


def method_order(records: Iterable[Mapping[str, Any]], names: Mapping[str, str] | None = None) -> list[str]:
    """Row names of ``records`` in the report's order (family, then name); for tables and figures.

    Args:
        records: run records as stored.
        names: run id -> table row name (``method`` of :func:`ltbench.reports.runs.runs_frame`);
            None: the records' ``method``.
    """
    families = method_families(records, names)
    return sorted(families, key=lambda m: sort_key(families[m], m))


class MethodStyle:
    """The looks and order of a report's methods; build one per report and pass it to every figure.

    Args:
        families: ``{method: family}`` of every method the report shows.
    """

    def __init__(self, families: Mapping[str, str]):
        self.families = dict(families)
        self.order: list[str] = sorted(self.families, key=lambda m: sort_key(self.families[m], m))
        self._index = {m: i for i, m in enumerate(self.order)}

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], names: Mapping[str, str] | None = None) -> MethodStyle:
        """The style of the methods (or row ``names``, run id -> name) of ``records``."""
        return cls(method_families(records, names))

    def __call__(self, method: str) -> Look:
        """The look of ``method``; a method the style was not built with gets a look after all known ones
        (the same one for the same unknown methods in the same order of asking)."""
        if method not in self._index:
            self._index[method] = len(self._index)
        return look(self._index[method])

    def sorted(self, methods: Iterable[str]) -> list[str]:
        """``methods`` (duplicates dropped) in the report's order; unknown ones last, by name."""
        unique = list(dict.fromkeys(methods))
        return sorted(unique, key=lambda m: (m not in self.families, *sort_key(self.families.get(m, ""), m)))

    def family(self, method: str) -> str:
        """The family of ``method`` (``""`` when unknown)."""
        return self.families.get(method, "")


def legend_outside(fig, handles: Sequence, labels: Sequence[str], title: str | None = None, ncols: int = 1, **kw):
    """A figure legend right of every axes (constrained layout makes room), so it never covers data."""
    if not handles:
        return None
    return fig.legend(
        list(handles),
        list(labels),
        loc="outside right upper",
        fontsize=8,
        title=title,
        title_fontsize=8,
        ncols=ncols,
        frameon=False,
        **kw,
    )
