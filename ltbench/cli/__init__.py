"""The ``ltbench`` command line: a thin layer over :mod:`ltbench.api`.

Each subcommand parses its arguments (:mod:`ltbench.cli.args`) and calls one documented
library function (:mod:`ltbench.cli.commands`). Bad input (an unknown name, a malformed recipe or
override) exits with status 2 and a message that names the input and the fix; a run that
fails exits with status 1; Ctrl-C with 130.
"""

import errno
import sqlite3
import sys
from collections.abc import Sequence

from .args import build_parser, parse_seeds
from .commands import COMMANDS

__all__ = ["build_parser", "main", "parse_seeds"]


def _raised_by_ltbench(e: BaseException) -> bool:
    """Whether ``e`` was raised by ltbench's own code (a message meant for the user), not by a
    library it calls (a bug in how ltbench called it, which keeps its traceback)."""
    from pathlib import Path

    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    package = Path(__file__).resolve().parents[1]  # ltbench/, above cli/
    return package in Path(tb.tb_frame.f_code.co_filename).resolve().parents


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ltbench`` console script; returns the exit status."""
    from rich.console import Console

    from ..config.specs import RecipeError
    from ..core.errors import DataError, RunSetupError, UserError
    from ..core.registry import UnknownNameError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    console = Console(stderr=args.command == "run")
    err = Console(stderr=True)

    def say(e: BaseException) -> None:  # one line, never wrapped, brackets shown as they are
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(' '.join(str(e).split()))}", highlight=False, soft_wrap=True)

    try:
        return COMMANDS[args.command](args, console)
    except (UserError, UnknownNameError, RecipeError, DataError, FileNotFoundError) as e:
        say(e)
        return 2
    except ValueError as e:
        if not _raised_by_ltbench(e):  # e.g. NumPy's or json's: a bug, shown with its traceback
            raise
        say(e)
        return 2
    except RunSetupError as e:
        say(e)
        return 1
    except sqlite3.DatabaseError as e:
        if type(e) is not sqlite3.DatabaseError:  # OperationalError and co.: ltbench's bug, or a lock
            raise
        say(
            f"the results store {getattr(args, 'store', '')} is damaged ({e}); restore it from a copy, or "
            "`ltbench ingest` the run folders into a new store"
        )
        return 2
    except OSError as e:
        where = e.filename or getattr(args, "out", None) or "a file"
        if e.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder goes
            say(f"cannot make the folder {where}: a file is in the way ({e.strerror}); pass --out DIR")
            return 2
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
            raise
        say(f"cannot write {where} ({e.strerror}); pass a folder on a writable disk with room (--out / --store)")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: finished runs are stored; the same command resumes from the last epoch")
        return 130


if __name__ == "__main__":
    sys.exit(main())
