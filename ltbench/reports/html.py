"""``report.html``: the whole report as one page that opens offline (from disk or an e-mail).

No network request and no server: styles, scripts and figures (PNG as data URIs) are inline.
The tables are plain HTML with real ``<th>`` headers, readable without JavaScript; the script
only adds sorting (a header is a button: click or Enter), filters (dataset, budget, model
family) and opening a row's details. Each row's details (a native ``<details>``, so they open
without scripts too) give its per-class accuracies against training counts with each class's
group, its seeds' runs with ids, lineage and provenance, and its validation curve (inline
SVG). Everything that comes from a record or a recipe is escaped (:func:`html.escape`).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation.groups import assign_groups
from .runs import CONVENTION_TEXT, METRICS, SELECTION_TEXT
from .tables import HEADERS

FIGURES = {
    "plot": "Per-class accuracy against training count, group boundaries drawn.",
    "groups": "Many / medium / few / all per method; error bars: std over seeds.",
    "curves": "Validation top-1 and learning rate per epoch; training loss by loss type.",
    "reliability": "Reliability diagrams, bins pooled over seeds; ECE in each title.",
    "heads": "DeiT-LT's CLS, DIST and averaged heads by group.",
    "shift_plot": "Accuracy under shifted test distributions, forward-50 to backward-50.",
}

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:75em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f3f3f3;position:sticky;top:0}
th button{font:inherit;font-weight:bold;background:none;border:0;cursor:pointer;padding:0}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
tr.published td{color:#555;font-style:italic}.best{font-weight:bold}
details{margin:.6em 0;border:1px solid #ddd;padding:.3em .8em}summary{cursor:pointer;font-weight:bold}
figure{margin:1em 0}figure img{max-width:100%}figcaption{color:#555}.note{color:#555}
code{font-size:.95em}label{margin-right:1em}.scroll{overflow-x:auto}td code{word-break:break-all}
"""

SCRIPT = """
(function(){
  function val(td){var v=td.getAttribute('data-value');return v===null?td.textContent.trim():v;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.querySelectorAll('thead th');
    heads.forEach(function(th,col){
      var b=th.querySelector('button'); if(!b) return;
      b.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        heads.forEach(function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){
          var x=val(a.cells[col]),y=val(b.cells[col]),nx=parseFloat(x),ny=parseFloat(y);
          var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));
          return asc?c:-c;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var selects=document.querySelectorAll('select[data-filter]');
  function filter(){
    document.querySelectorAll('#main tbody tr').forEach(function(tr){
      var show=true;
      selects.forEach(function(s){if(s.value&&tr.getAttribute('data-'+s.getAttribute('data-filter'))!==s.value)show=false;});
      tr.hidden=!show;});
  }
  selects.forEach(function(s){s.addEventListener('change',filter);});
  document.querySelectorAll('a.open').forEach(function(a){
    a.addEventListener('click',function(){
      var d=document.getElementById(a.getAttribute('href').slice(1)); if(d) d.open=true;});
  });
})();
"""


def plain(latex_text: str) -> str:
    """A caption phrase written for LaTeX (``$>$``, ``--``) as plain text."""
    for a, b in (("$>$", ">"), ("$<$", "<"), ("$\\geq$", "≥"), ("$\\leq$", "≤"), ("--", "–"), ("\\%", "%")):
        latex_text = latex_text.replace(a, b)
    return latex_text


def esc(value: Any) -> str:
    """Text for HTML: ``<``, ``>``, ``&`` and both quotes escaped."""
    return html.escape(str(value), quote=True)


def _pct(mean: float, std: float, n: int) -> str:
    if mean is None or np.isnan(mean):
        return "–"
    return f"{100 * mean:.1f}" if n < 2 or np.isnan(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _td(mean: float, std: float, n: int, best: bool = False) -> str:
    value = "" if mean is None or np.isnan(mean) else f' data-value="{100 * mean:.4f}"'
    cls = ' class="best"' if best else ""
    return f"<td{value}{cls}>{esc(_pct(mean, std, n))}</td>"


def _table(head: Sequence[str], rows: Sequence[str], table_id: str = "", caption: str = "") -> str:
    ident = f' id="{table_id}"' if table_id else ""
    ths = "".join(f'<th scope="col"><button type="button">{esc(h)}</button></th>' for h in head)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    table = f'<table class="sortable"{ident}>{cap}<thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def _slug(*parts: Any) -> str:
    return "d-" + "-".join("".join(c if c.isalnum() else "_" for c in str(p)) for p in parts)


def _curve_svg(records: Sequence[dict[str, Any]]) -> str:
    """Validation top-1 per epoch, one line per seed (inline SVG, 320 x 120)."""
    lines = []
    histories = [[h for h in r.get("history") or [] if h.get("val_top1") is not None] for r in records]
    epochs = max((h[-1]["epoch"] for h in histories if h), default=0)
    if not epochs:
        return '<p class="note">no validation curve stored</p>'
    for hist in histories:
        pts = " ".join(
            f"{10 + 300 * (h['epoch'] - 1) / max(epochs - 1, 1):.1f},{110 - 100 * h['val_top1']:.1f}" for h in hist
        )
        lines.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>')
    axes = (
        '<line x1="10" y1="110" x2="310" y2="110" stroke="#999"/><line x1="10" y1="10" x2="10" y2="110" stroke="#999"/>'
    )
    label = f'<text x="12" y="20" font-size="10">val top-1 (0-100 %), epochs 1-{epochs}</text>'
    svg = '<svg role="img" aria-label="validation top-1 per epoch" width="320" height="120">'
    return f"{svg}{axes}{''.join(lines)}{label}</svg>"


def _details(row, runs: Sequence[dict[str, Any]], selection: str, convention: str) -> str:
    first = runs[0]
    counts = np.asarray(first["train_counts"], dtype=np.float64)
    groups = [""] * len(counts)
    for name, members in assign_groups(counts, convention, first.get("index_sizes")).items():
        for i in np.asarray(members, dtype=int).ravel():
            groups[int(i)] = name
    acc = []
    for r in runs:
        res = r["results"][selection]
        correct, total = np.asarray(res["correct"], float), np.asarray(res["total"], float)
        acc.append(np.where(total > 0, correct / np.maximum(total, 1), np.nan))
    mean = np.nanmean(np.vstack(acc), axis=0) if acc else np.array([])
    names = first.get("class_names") or [str(i) for i in range(len(counts))]
    per_class = [
        f'<tr><td>{esc(names[i])}</td><td>{esc(groups[i])}</td><td data-value="{counts[i]:g}">{counts[i]:g}</td>'
        + (f'<td data-value="{100 * mean[i]:.4f}">{100 * mean[i]:.1f}</td>' if not np.isnan(mean[i]) else "<td>–</td>")
        + "</tr>"
        for i in range(len(counts))
    ]
    run_rows = []
    for r in runs:
        prov = r.get("provenance") or {}
        keep = {k: v for k, v in prov.items() if not isinstance(v, (dict, list))}
        lineage = ", ".join(f"{role}: {rid[:10]}" for role, rid in sorted((r.get("needs") or {}).items())) or "–"
        run_rows.append(
            f"<tr><td>{esc(r.get('seed'))}</td><td><code>{esc(r['run_id'][:12])}</code></td><td>{esc(lineage)}</td>"
            f"<td><code>{esc(str(r.get('config_hash', ''))[:12])}</code></td><td>{esc(r.get('run_dir', ''))}</td>"
            f"<td><code>{esc(json.dumps(keep, sort_keys=True))}</code></td></tr>"
        )
    title = (first.get("config") or {}).get("method", {}).get("title") or ""
    ident = _slug(row.dataset, row.budget, row.method)
    return (
        f'<details id="{ident}"><summary>{esc(row.method)} on {esc(row.dataset)} ({esc(row.budget)})'
        + (f" – {esc(title)}" if title else "")
        + "</summary>"
        + "<h3>Per-class accuracy (%, mean over seeds)</h3>"
        + _table(["class", "group", "train images", "accuracy"], per_class, caption=f"{row.method}: per class")
        + "<h3>Runs</h3>"
        + _table(["seed", "run id", "lineage", "config hash", "run folder", "provenance"], run_rows)
        + "<h3>Validation curve</h3>"
        + _curve_svg(runs)
        + "</details>"
    )


def _main_rows(agg: pd.DataFrame, frame: pd.DataFrame, family: dict, details_ok: set) -> list[str]:
    best = {}
    for m in METRICS:
        best[m] = agg.groupby(["dataset", "budget"])[f"{m}_mean"].transform("max")
    ece = frame.groupby(["dataset", "budget", "method"])["ece"].agg(["mean", "std"])
    rows = []
    for i, row in enumerate(agg.itertuples(index=False)):
        key = (row.dataset, row.budget, row.method)
        fam = family.get(key, "")
        ident = _slug(*key)
        link = f' <a class="open" href="#{ident}">details</a>' if ident in details_ok else ""
        cells = [
            f'<td data-value="{esc(row.method)}">{esc(row.method)}{link}</td>',
            f"<td>{esc(row.dataset)}</td>",
            f"<td>{esc(row.budget)}</td>",
            f"<td>{esc(fam)}</td>",
            f'<td data-value="{int(row.n)}">{int(row.n)}</td>',
        ]
        for m in METRICS:
            mean, std = getattr(row, f"{m}_mean"), getattr(row, f"{m}_std")
            cells.append(_td(mean, std, int(row.n), bool(np.isclose(mean, best[m].iloc[i]))))
        e = ece.loc[key] if key in ece.index else None
        cells.append(_td(e["mean"], e["std"], int(row.n)) if e is not None else "<td>–</td>")
        rows.append(
            f'<tr data-dataset="{esc(row.dataset)}" data-budget="{esc(row.budget)}" data-family="{esc(fam)}">'
            + "".join(cells)
            + "</tr>"
        )
    return rows


def _select(name: str, values: Sequence[str]) -> str:
    opts = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
    return f'<label>{esc(name)} <select data-filter="{esc(name)}"><option value="">all</option>{opts}</select></label>'


def _csv_table(path: Path, title: str) -> str:
    frame = pd.read_csv(path)
    if {"distribution", "top1_mean"} <= set(frame.columns):  # the shifted table, long form: pivot it
        wide = frame.pivot_table(
            index=["method", "dataset", "budget"], columns="distribution", values="top1_mean", sort=False
        )
        frame = wide.reset_index()
    head = [str(c) for c in frame.columns]
    rows = []
    for rec in frame.itertuples(index=False):
        cells = []
        for v in rec:
            if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool):
                cells.append("<td>–</td>" if np.isnan(v) else f'<td data-value="{float(v):.4f}">{float(v):.1f}</td>')
            else:
                cells.append(f"<td>{esc(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<h2>{esc(title)}</h2>" + _table(head, rows)


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    img = f'<img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


def html_page(
    agg: pd.DataFrame,
    frame: pd.DataFrame,
    records: Sequence[dict[str, Any]],
    paths: dict[str, Path],
    selection: str = "last",
    convention: str = "threshold",
    references: Sequence | None = None,
    caption: str | None = None,
) -> str:
    """The report as one HTML document (a string); ``paths`` are the report's other files,
    whose figures and shifted / post-hoc tables it embeds."""
    from .tables import _Grid

    if caption is None:
        caption = (
            "Test top-1 accuracy (%), mean ± std over seeds (n); "
            f"model selection: {SELECTION_TEXT.get(selection, selection)}; "
            f"groups: {plain(CONVENTION_TEXT.get(convention, convention))}; the best mean of a column in bold. "
            "Click a header to sort, a row's details link for its classes, runs and curve."
        )
    by_id = {r["run_id"]: r for r in records}
    info = agg.attrs.get("rows") or {}
    family = {key: row.get("architecture", "") for key, row in info.items()}
    details, details_ok = [], set()
    for row in agg.itertuples(index=False):
        ids = frame[
            (frame["dataset"] == row.dataset) & (frame["budget"] == row.budget) & (frame["method"] == row.method)
        ]
        runs = [by_id[i] for i in ids["run_id"] if i in by_id]
        if runs:
            details.append(_details(row, runs, selection, convention))
            details_ok.add(_slug(row.dataset, row.budget, row.method))
    head = ["method", "dataset", "budget", "family", "n", *(HEADERS[m] for m in METRICS), "ECE"]
    main = _table(head, _main_rows(agg, frame, family, details_ok), "main")
    grid = _Grid(agg)
    published = grid.reference_rows(references, "–")
    pub_html = ""
    if published:
        pub_head = ["published row", *(f"{grid.title(b)} {HEADERS[m]}" for b in grid.blocks for m in grid.metrics)]
        pub_rows = [
            f'<tr class="published"><td>{esc(name)}{"" if ok else " (not comparable)"}</td>'
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + "</tr>"
            for name, cells, ok in published
        ]
        pub_html = "<h2>Published numbers</h2>" + _table(pub_head, pub_rows, "published")
    filters = (
        _select("dataset", list(dict.fromkeys(agg["dataset"])))
        + _select("budget", list(dict.fromkeys(agg["budget"])))
        + _select("family", sorted({f for f in family.values() if f}))
    )
    extra = ""
    if "shift_csv" in paths:
        extra += _csv_table(paths["shift_csv"], "Shifted test distributions (top-1 %)")
    if "posthoc_csv" in paths:
        extra += _csv_table(paths["posthoc_csv"], "Post-hoc logit adjustment")
    figures = "".join(_figure(paths[k], text) for k, text in FIGURES.items() if k in paths and Path(paths[k]).is_file())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>ltbench report</title><style>{STYLE}</style></head><body>"
        "<h1>ltbench report</h1>"
        f'<p class="note">{esc(caption)}</p>'
        f"<p>{filters}</p>{main}{pub_html}{extra}"
        f"<h2>Details per row</h2>{''.join(details)}"
        f"<h2>Figures</h2>{figures}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_html(path: Path, *args, **kwargs) -> Path:
    """Write :func:`html_page` to ``path`` atomically."""
    from ..core.atomic import write_text_atomic

    write_text_atomic(path, html_page(*args, **kwargs))
    return path
