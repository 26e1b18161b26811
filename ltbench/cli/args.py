"""The ``ltbench`` command line's arguments: one parser per subcommand, with examples.

:func:`build_parser` is all of it; :func:`parse_seeds` reads ``--seeds`` lists and ranges.
"""

import argparse

from .._version import __version__

EPILOGS = {
    "run": """examples:
  ltbench run                                   # every method on mnist_lt, quick budget
  ltbench run --methods ce,bal_bce --data digits_lt --budget smoke
  ltbench run --methods la --seeds 0-2 --set tau=1.5 --set rho=100
  ltbench run --methods bal_bce,deit_lt --data cifar10_lt --root ~/data/cifar --seeds 0-4 \
      --executor slurm --partition gpu --gpus-per-job 1 --time-min 720
  ltbench run --methods la --seeds 0-1999 --executor slurm --max-parallel 64   # 2,000 runs: 2 arrays
  ltbench run --methods deit_lt --executor slurm --nodes 2 --gpus-per-job 4   # one job, 8 data-parallel GPUs
  ltbench run --jobs 1 --threads 2 --log tensorboard   # one run at a time; curves in TensorBoard
""",
    "status": """examples:
  ltbench status
  ltbench status --out results --json
""",
    "list": """examples:
  ltbench list
  ltbench list methods '*bce*'
  ltbench list datasets --json
""",
    "data": """examples:
  ltbench data describe mnist_lt
  ltbench data describe cifar100_lt --root ~/data/cifar --set rho=50
  ltbench data describe places_lt --root /data/places365 --json
  ltbench data download cifar10_lt --root ~/data/cifar     # needs a network
""",
    "bench": """examples:
  ltbench bench                                 # ce on mnist_lt, quick budget, 5 epochs
  ltbench bench --method cnn_ce --epochs 5 --json results/bench.json
  ltbench bench --report-runs 10000             # the report over 10,000 stored runs
""",
    "results": """examples:
  ltbench results
  ltbench results --json --store results/ltbench.db
""",
    "show": """examples:
  ltbench show 3fa9c2                           # a unique prefix of the run id
  ltbench show 3fa9c2 --json > run.json
""",
    "reproduce": """examples:
  ltbench reproduce 3fa9c2                      # into results/reproduce/<id>, then compare
  ltbench reproduce 3fa9c2 --out /tmp/again --device cpu
""",
    "ingest": """examples:
  ltbench ingest results/runs                   # every record.json below, into the store
  ltbench ingest /scratch/old_sweep --store results/ltbench.db
""",
    "report": """examples:
  ltbench report                                # results/report/table.tex, table.md, per_class.png
  ltbench report --convention oltr --selection best_val --out paper/tables
  ltbench report --data cifar100_lt --budget paper --baseline ce
  ltbench report --data cifar100_lt --metric error  # error rates (%), as CIFAR papers quote them
  ltbench report --shift                        # also shift.tex/.md/.csv/.png: forward/uniform/backward test sets
  ltbench report --shift --posthoc              # also posthoc.*: post-hoc LA; shift.* gain '+ known prior' rows
""",
    "analyze": """examples:
  ltbench analyze dc11e2 5256d8 c3be6f          # deit_lt, ce, cnn_ce side by side: results/analysis/
  ltbench analyze dc11e2 --images 0 --device cuda --out /tmp/analysis   # every test image
""",
}


def parse_seeds(text: str, limit: int | None = None) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (inclusive) or a mix: ``"0-2,7"``; seeds are >= 0.

    The ranges are counted before any list is made, so ``0-100000000`` fails at once: more
    than ``limit`` seeds (default :data:`ltbench.planning.sweep_files.MAX_SWEEP_RUNS`) is an error.
    """
    from ..planning.sweep_files import MAX_SWEEP_RUNS

    limit = MAX_SWEEP_RUNS if limit is None else limit
    ranges: list[tuple[int, int]] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, dash, hi = part.partition("-") if "-" in part[1:] else (part, "", part)
            if part.startswith("-") or (dash and hi.startswith("-")):
                raise argparse.ArgumentTypeError(f"bad seed list {text!r}: seeds are >= 0; use e.g. 0,1,2 or 0-4")
            ranges.append((int(lo), int(hi)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}; use e.g. 0,1,2 or 0-4") from None
    for lo, hi in ranges:
        if hi < lo:
            raise argparse.ArgumentTypeError(f"bad seed range {lo}-{hi} in {text!r}: it is empty; write {hi}-{lo}")
    count = sum(hi - lo + 1 for lo, hi in ranges)
    if not count:
        raise argparse.ArgumentTypeError("empty seed list; use e.g. 0,1,2 or 0-4")
    if count > limit:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r} is {count:,} seeds, more than {limit:,}; pass --allow-large-sweep if you mean it"
        )
    return [seed for lo, hi in ranges for seed in range(lo, hi + 1)]


def _at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}; give an integer >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give comma-separated names, or leave the option out")
    return names


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default="results/ltbench.db",
        metavar="PATH|URL",
        help="results store: a SQLite file's path, or a postgresql://USER@HOST/DB URL of a lab's server "
        "(needs pip install 'ltbench[postgres]') (default: %(default)s)",
    )


def _add_runs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runs",
        default=None,
        metavar="DIR",
        help="a run's --out: finished records the store lacks are ingested first (default: the store's folder)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltbench", description="Benchmark harness for long-tailed recognition.")
    parser.add_argument("--version", action="version", version=f"ltbench {__version__}")
    parser.add_argument(
        "--recipes",
        action="append",
        default=[],
        metavar="DIR",
        help="extra recipe folder with methods/ and datasets/ (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOGS[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add("run", "Train, evaluate and store methods x datasets x seeds.")
    p.add_argument("--methods", type=_names, default=None, help="comma-separated (default: all)")
    p.add_argument("--data", type=_names, default=None, help="comma-separated datasets (default: mnist_lt)")
    p.add_argument("--budget", default="quick", help="smoke | quick | paper (default: %(default)s)")
    # Parsed by _cmd_run, which knows --allow-large-sweep: 0-100000000 is refused before any list is made.
    p.add_argument("--seeds", default="0", help="training seeds: 0,1,2 or 0-4 (default: 0)")
    p.add_argument(
        "--allow-large-sweep", action="store_true", help="allow more than 10,000 runs in one sweep (seeds x methods)"
    )
    p.add_argument("--data-seed", type=_at_least(0), default=0, help="seed of the long-tail draw (default: 0)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. epochs=5, rho=100, tau=1.05 (repeatable)",
    )
    _add_store(p)
    p.add_argument("--out", default="results", help="folder for run folders (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--force", action="store_true", help="re-run runs that are already done")
    p.add_argument("--root", default=None, help="folder with the dataset's files (default: the recipe's)")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="accept data whose figures or checksums differ from the recipe (recorded as unverified)",
    )
    p.add_argument(
        "--executor",
        default="inline",
        choices=("inline", "local", "slurm"),
        help="inline: this process; local: submitit subprocesses; slurm: job arrays (default: %(default)s)",
    )
    p.add_argument(
        "--jobs",
        type=_at_least(1),
        default=None,
        help="inline: runs trained at once, each in a worker process (default: $LTBENCH_JOBS, else one per "
        "CPU core, one on a GPU)",
    )
    p.add_argument(
        "--threads",
        type=_at_least(1),
        default=None,
        help="intra-op threads per run on a CPU (default: 1, so numbers do not depend on the core count; "
        "not part of a run's identity)",
    )
    p.add_argument(
        "--log",
        type=_names,
        default=[],
        metavar="TRACKERS",
        help="also log curves and results to tensorboard and/or wandb (comma-separated; files under --out)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan (stages, dependencies, done) and run nothing")
    p.add_argument("--no-wait", action="store_true", help="local/slurm: exit once the jobs are submitted")
    g = p.add_argument_group("job resources (local and slurm executors; a profile's [slurm] table, then these)")
    g.add_argument(
        "--cluster-profile", default=None, metavar="TOML", help="file with a [slurm] table of the options below"
    )
    g.add_argument("--partition")
    g.add_argument(
        "--gpus-per-job",
        type=_at_least(0),
        help="GPUs per node of each job, one data-parallel task per GPU (with --nodes N: N times as many)",
    )
    g.add_argument("--cpus-per-job", type=_at_least(1), help="CPUs of each task, also its torch threads")
    g.add_argument("--mem-gb", type=_at_least(0))
    g.add_argument("--time-min", type=_at_least(1))
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--constraint")
    g.add_argument(
        "--max-parallel",
        "--array-parallelism",
        dest="array_parallelism",
        type=_at_least(1),
        metavar="N",
        help="slurm: jobs running at once over the whole sweep, SLURM's %%N (default: 64)",
    )
    g.add_argument(
        "--max-array-size",
        type=_at_least(2),
        metavar="N",
        help="slurm: the cluster's MaxArraySize; each wave is split into arrays of at most N-1 tasks "
        "(default: what `scontrol show config` says)",
    )
    g.add_argument("--nodes", type=_at_least(1), help="slurm: nodes per job; one process group spans them (default: 1)")
    g.add_argument(
        "--tasks-per-node",
        type=_at_least(1),
        help="CPU jobs: data-parallel tasks per node (default: 1; GPU jobs run one per GPU)",
    )

    p = add("status", "Show each stage of the latest sweep: queued, running, done, failed.")
    p.add_argument("--out", default="results", help="the run's --out folder (default: %(default)s)")
    p.add_argument("--json", action="store_true")

    p = add("list", "Show registered methods and datasets.")
    p.add_argument("kind", nargs="?", default="all", choices=("all", "methods", "datasets"))
    p.add_argument("pattern", nargs="?", default="*", help="shell wildcard on names")
    p.add_argument("--json", action="store_true")

    p = add("data", "Describe a dataset from its labels, or download one.")
    p.add_argument("action", choices=("describe", "download"))
    p.add_argument("name", help="a dataset name (see `ltbench list datasets`)")
    p.add_argument("--root", default=None, help="folder with the dataset's files (default: the recipe's)")
    p.add_argument("--data-seed", type=_at_least(0), default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")

    p = add("bench", "Measure training speed against the model's limit and a per-sample reference loop.")
    p.add_argument("--method", default="ce")
    p.add_argument("--data", default="mnist_lt")
    p.add_argument("--budget", default="quick")
    p.add_argument("--epochs", type=_at_least(1), default=5)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default=None)
    p.add_argument("--reference-workers", type=_at_least(0), default=2, help="DataLoader workers of the reference loop")
    p.add_argument("--root", default=None, help="folder with the dataset's files (streamed datasets)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    p.add_argument(
        "--report-runs",
        type=_at_least(0),
        default=0,
        metavar="N",
        help="instead: time ingesting N synthetic runs and writing their report",
    )

    p = add("results", "List stored runs with their metrics.")
    _add_store(p)
    _add_runs(p)
    p.add_argument("--json", action="store_true")

    p = add("show", "Show one run's full record: config, per-class results, provenance, lineage.")
    p.add_argument("run_id", help="a run id, or a unique prefix of one")
    _add_store(p)
    _add_runs(p)
    p.add_argument("--json", action="store_true", help="the whole record as JSON")

    p = add("reproduce", "Re-run a stored run from its record alone and compare the results.")
    p.add_argument("run_id", help="a run id, or a unique prefix of one")
    _add_store(p)
    p.add_argument(
        "--out", default=None, help="folder for the re-run and its store (default: reproduce/<id> by the store)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--json", action="store_true")

    p = add("ingest", "Add every record.json under a folder to the store (idempotent).")
    p.add_argument("folder", help="a folder holding run folders, e.g. results/runs")
    _add_store(p)

    p = add("report", "Write LaTeX and Markdown tables and plots from the store.")
    _add_store(p)
    p.add_argument("--out", default=None, help="output folder (default: report/ next to the store)")
    p.add_argument(
        "--convention",
        default="threshold",
        choices=("threshold", "oltr", "index"),
        help="many/medium/few convention (default: %(default)s)",
    )
    p.add_argument(
        "--selection",
        default="last",
        choices=("last", "best_val"),
        help="model selection: last epoch or best on validation (default: %(default)s)",
    )
    p.add_argument("--methods", type=_names, default=None, help="comma-separated (default: all stored)")
    p.add_argument("--data", type=_names, default=None, help="comma-separated datasets (default: all stored)")
    p.add_argument("--budget", default=None, help="one budget (default: all, in separate column blocks)")
    p.add_argument("--baseline", default=None, help="paired t-test of every method against this one")
    p.add_argument(
        "--metric",
        default="accuracy",
        choices=("accuracy", "error"),
        help="table cells: accuracy, or error = 100 - accuracy, lowest best, as CIFAR papers (default: %(default)s)",
    )
    p.add_argument(
        "--shift",
        action="store_true",
        help="also write accuracy under shifted test distributions (forward-r / uniform / backward-r): shift.*",
    )
    p.add_argument(
        "--posthoc",
        action="store_true",
        help="also write post-hoc logit adjustment from stored logits (tau chosen on validation): posthoc.*; "
        "with --shift, a '+ known prior' row per method in shift.*",
    )
    p.add_argument(
        "--html",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write report.html: every table and figure in one page that opens offline (default: on)",
    )
    p.add_argument(
        "--shift-counts",
        default="expected",
        choices=("expected", "sade", "subsets"),
        help="with --shift: weigh classes by continuous weights, or by SADE's integer per-class counts "
        "int(m * w), its protocol's exact expectation, or score actual subsets of those counts (seed 0) "
        "from the stored logits, as SADE does (default: %(default)s)",
    )
    _add_runs(p)

    p = add("analyze", "Attention distance per block and effective rank of CLS/DIST features, from a run's weights.")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="run ids, or unique prefixes of them")
    _add_store(p)
    p.add_argument("--out", default=None, help="output folder (default: analysis/ next to the store)")
    p.add_argument(
        "--images", type=int, default=500, metavar="N", help="test images per run, 0 for all (default: %(default)s)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--root", default=None, help="the dataset's files, if they moved since the run")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser
