"""Errors that cross module boundaries; importing this module loads no heavy library."""


class RunSetupError(RuntimeError):
    """A run that could not start (its data or model could not be built); nothing is stored."""
