"""What a sweep shows while it runs: live bars in a terminal, plain lines anywhere else.

Both reporters take the same events (a run starts, an epoch ends, a run ends), whether the
runs train in this process or in worker processes (:mod:`ltbench.execution.pool`):

- :class:`LiveReporter` (stderr is a terminal): a rich progress bar per running run and,
  above them, the table of finished runs, which grows as runs end;
- :class:`PlainReporter` (a file, a pipe, ``nohup``, a SLURM log): one line per epoch and
  one per finished run, each naming its run, flushed at once::

      [ce on mnist_lt s0] epoch 12/80 loss 0.412 val 81.0% 0.6 s
      [ce on mnist_lt s0] done in 70 s: all 78.6% (many 96.5, medium 85.0, few 48.3), best-on-val 79.3%

The final table goes out at full width either way (:func:`print_summary`): as rich's table in
a terminal, as Markdown elsewhere, so no number is ever cut to fit 80 columns.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, Any, Protocol

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class Reporter(Protocol):
    """Receives a sweep's events; every method is called from the process that drives it."""

    def run_started(self, spec) -> None: ...

    def epoch(self, spec, epoch: int, total: int, row: dict[str, Any]) -> None: ...

    def run_finished(self, spec, record: dict[str, Any]) -> None: ...


def run_name(spec_or_record) -> str:
    """The short name a log line starts with: ``ce on mnist_lt s0`` (with the budget unless
    it is ``quick``)."""
    if isinstance(spec_or_record, dict):
        method, dataset = spec_or_record["method"], spec_or_record["dataset"]
        budget, seed = spec_or_record.get("budget"), spec_or_record["seed"]
    else:
        c = spec_or_record.config
        method, dataset, budget, seed = c.method.name, c.data.name, c.budget, c.seed
    tail = "" if budget in (None, "quick") else f" {budget}"
    return f"{method} on {dataset}{tail} s{seed}"


def epoch_line(name: str, epoch: int, total: int, row: dict[str, Any]) -> str:
    """One epoch as a log line: ``[NAME] epoch 12/80 loss 0.412 val 81.0% 0.6 s``."""
    val = "" if row.get("val_top1") is None else f" val {100 * row['val_top1']:.1f}%"
    secs = row.get("seconds")
    tail = "" if secs is None else f" {secs:.1f} s"
    return f"[{name}] epoch {epoch}/{total} loss {row['train_loss']:.3f}{val}{tail}"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def finished_line(name: str, record: dict[str, Any]) -> str:
    """A finished (or failed, or skipped) run as a log line with its headline numbers."""
    status = record.get("status")
    if status != "done":
        return f"[{name}] {status}: {record.get('error') or 'no error recorded'}"
    metrics = record.get("metrics") or {}
    last, best = metrics.get("last") or {}, metrics.get("best_val") or {}
    secs = (record.get("timings") or {}).get("total_seconds")
    head = "already done" if record.get("skipped") else f"done in {secs:.0f} s" if secs is not None else "done"
    if not last:  # a pretraining stage: no test accuracy
        return f"[{name}] {head} (a stage: no test accuracy)"
    groups = ", ".join(f"{g} {_pct(last.get(g))}" for g in ("many", "medium", "few"))
    best_text = f", best-on-val {_pct(best.get('top1'))}%" if best else ""
    return f"[{name}] {head}: all {_pct(last.get('top1'))}% ({groups}){best_text}"


class PlainReporter:
    """Plain lines, one per epoch and one per finished run, flushed as they are written."""

    def __init__(self, stream: IO[str] | None = None, every: int = 1):
        self.stream = stream or sys.stderr
        self.every = max(1, every)  # an epoch line every `every` epochs (the last one always)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def run_started(self, spec) -> None:
        self._write(f"[{run_name(spec)}] started: {spec.config.train.epochs} epochs, run {spec.run_id[:12]}")

    def epoch(self, spec, epoch: int, total: int, row: dict[str, Any]) -> None:
        if epoch % self.every == 0 or epoch == total:
            self._write(epoch_line(run_name(spec), epoch, total, row))

    def run_finished(self, spec, record: dict[str, Any]) -> None:
        self._write(finished_line(run_name(spec), record))

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc) -> None:
        pass


def bar_columns() -> tuple:
    """ltbench's progress bar: what, bar, done / total, elapsed, and a free ``info`` field."""
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )


class _ProgressWithResults(Progress):
    """rich's Progress with the table of finished runs drawn above the bars."""

    def get_renderables(self):
        done = getattr(self, "done_records", None)  # rich draws once before __init__ returns
        if done:
            yield Group(summary_table(done), self.make_tasks_table(self.tasks))
        else:
            yield self.make_tasks_table(self.tasks)


class LiveReporter:
    """A bar for the sweep and one per running run, under a table of the runs finished so far."""

    def __init__(self, console: Console, total: int):
        self.progress = _ProgressWithResults(*bar_columns(), console=console, transient=True)
        self.progress.done_records = []
        self.sweep = self.progress.add_task("runs", total=total, info="")
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> LiveReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def run_started(self, spec) -> None:
        self.tasks[spec.run_id] = self.progress.add_task(f"  {run_name(spec)}", total=spec.config.train.epochs, info="")

    def epoch(self, spec, epoch: int, total: int, row: dict[str, Any]) -> None:
        task = self.tasks.get(spec.run_id)
        if task is None:
            self.run_started(spec)
            task = self.tasks[spec.run_id]
        val = "" if row.get("val_top1") is None else f"  val {100 * row['val_top1']:.1f}%"
        self.progress.update(task, completed=epoch, info=f"loss {row['train_loss']:.3f}{val}")

    def run_finished(self, spec, record: dict[str, Any]) -> None:
        task = self.tasks.pop(spec.run_id, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.done_records.append(record)
        self.progress.advance(self.sweep)


class Fanout:
    """One reporter that passes each event to each of several reporters (the progress shown, trackers)."""

    def __init__(self, *targets):
        self.targets = [t for t in targets if t is not None]

    def run_started(self, spec) -> None:
        for t in self.targets:
            t.run_started(spec)

    def epoch(self, spec, epoch: int, total: int, row: dict[str, Any]) -> None:
        for t in self.targets:
            t.epoch(spec, epoch, total, row)

    def run_finished(self, spec, record: dict[str, Any]) -> None:
        for t in self.targets:
            t.run_finished(spec, record)


def make_reporter(console: Console, total: int):
    """Live bars when ``console`` is a terminal, plain lines on its stream otherwise."""
    if console.is_terminal and not console.quiet:
        return LiveReporter(console, total)
    if console.quiet:
        return PlainReporter(_Discard())
    return PlainReporter(console.file)


class _Discard:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def print_summary(console: Console, records: Sequence[dict[str, Any]]) -> None:
    """The sweep's table at full width: rich's table in a terminal, Markdown elsewhere."""
    if console.quiet:
        return
    if console.is_terminal:
        console.print(summary_table(records))
        return
    title, header, rows, caption = summary_rows(records)
    lines = [f"{title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", caption]
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


__all__ = [
    "Fanout",
    "LiveReporter",
    "PlainReporter",
    "Reporter",
    "epoch_line",
    "finished_line",
    "make_reporter",
    "print_summary",
    "run_name",
]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def summary_rows(records: Sequence[dict[str, Any]]) -> tuple[str, list[str], list[list[str]], str]:
    """The summary of runs as plain cells: ``(title, header, rows, caption)``; test accuracy by
    group (last epoch), best-on-val, ECE, time."""
    datasets = sorted({r["dataset"] for r in records})
    budgets = sorted({r["budget"] for r in records})
    title = f"test top-1 % on {', '.join(datasets)} ({', '.join(budgets)} budget)"
    caption = "groups: >100 / 20-100 / <20 training images; last epoch unless noted"
    header = [
        "method",
        *(["dataset"] if len(datasets) > 1 else []),
        *(["budget"] if len(budgets) > 1 else []),
        "seed",
        "many",
        "med",
        "few",
        "all",
        "all@val",
        "ECE",
        "train s",
        "status",
    ]
    rows = []
    for r in records:
        m = r.get("metrics") or {}
        last, best = m.get("last") or {}, m.get("best_val") or {}
        secs = (r.get("timings") or {}).get("train_seconds")
        status = "skipped" if r.get("skipped") else r["status"]
        rows.append(
            [
                r["method"],
                *([r["dataset"]] if len(datasets) > 1 else []),
                *([r["budget"]] if len(budgets) > 1 else []),
                str(r["seed"]),
                _pct(last.get("many")),
                _pct(last.get("medium")),
                _pct(last.get("few")),
                _pct(last.get("top1")),
                _pct(best.get("top1")),
                _pct(last.get("ece")),
                "–" if secs is None else f"{secs:.0f}",
                status,
            ]
        )
    return title, header, rows, caption


def summary_table(records: Sequence[dict[str, Any]]) -> Table:
    """A rich table of runs (the cells of :func:`summary_rows`)."""
    title, header, rows, caption = summary_rows(records)
    table = Table(title=title, caption=caption)
    for col in header:
        left = col in ("method", "dataset", "budget", "status")
        table.add_column(col, justify="left" if left else "right", no_wrap=left)
    for row in rows:
        table.add_row(*row)
    return table


def progress_bar(console: Console) -> Progress:
    from .progress import bar_columns

    return Progress(*bar_columns(), console=console, transient=False)
