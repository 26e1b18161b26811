"""Errors that cross module boundaries; importing this module loads no heavy library."""


class RunSetupError(RuntimeError):
    """A run that could not start (its data or model could not be built); nothing is stored."""


class DataError(ValueError):
    """Data that cannot be used as the recipe says; the message names the file and the fix."""


class DataMissingError(DataError, FileNotFoundError):
    """Expected files are not where they should be; the message says what goes where."""


class DataFormatError(DataError):
    """A file that does not parse (with its path and line), or a label out of range."""


class DataIntegrityError(DataError):
    """Found figures or checksums disagree with the recipe's expected ones."""


class UserError(ValueError):
    """A mistake in what the user gave (a value, a file, a folder), not a bug in ltbench.

    The command line prints its message as one line and exits with status 2; the message
    names the input, the file it came from and the fix. A subclass of ValueError so that
    library callers that catch ValueError keep working.
    """


class StoreError(UserError):
    """A results store that cannot be used: not an ltbench store, unreadable or not writable."""


class RunLockedError(UserError):
    """Another process is running the same run (its lock file names the process and host)."""
