"""ltbench: a benchmark harness for long-tailed recognition.

Public API (each CLI command is one of these functions)::

    import ltbench
    ltbench.run(methods=["ce", "bal_bce"], data=["mnist_lt"], budget="quick")
    ltbench.report()                       # tables and plots from results/ltbench.db
    ltbench.list_recipes("methods")
"""

from ._version import __version__
from .api import describe, ingest, list_recipes, plan, report, reproduce, results, run, show, status

__all__ = [
    "__version__",
    "describe",
    "ingest",
    "list_recipes",
    "plan",
    "report",
    "reproduce",
    "results",
    "run",
    "show",
    "status",
]
