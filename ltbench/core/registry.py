"""A small generic registry: named entries, ``"module:attr"`` targets, entry points, helpful errors.

One class serves methods, datasets, data sources, losses and any other kind of named code.
Idea borrowed from lm-eval's ``lm_eval/api/registry.py`` and timm's ``list_models``: unknown
names raise an error that lists what exists and suggests the closest match, and listing
takes wildcards.

A name can come from three places, looked up in this order:

1. an entry added with :meth:`Registry.add` / :meth:`Registry.register` (the built-ins);
2. an installed package's entry point in the registry's group (``Registry("loss",
   entry_points="ltbench.losses")``), discovered lazily through :mod:`importlib.metadata`
   the first time a name is missed or the names are listed, and imported on first use;
3. a ``"module:attr"`` name given directly (``"my_losses:FocalLoss"``): the module is imported
   from a plugin folder (:func:`add_import_dir`; ``--recipes DIR`` adds DIR) when it holds
   ``module.py`` or ``module/``, otherwise from the Python path. The folder is on
   ``sys.path`` only while importing; worker processes find it through ``LTBENCH_PLUGIN_PATH``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists valid names and a close match."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class PluginImportError(ImportError):
    """A ``module:attr`` name or an entry point whose code cannot be imported."""


# Folders whose modules ``module:attr`` names may import (plugin folders given with --recipes).
# Also kept in this environment variable (os.pathsep-separated), so that the worker
# processes a run is launched in (submitit local or SLURM, which inherit the environment)
# find the same code.
IMPORT_PATH_ENV = "LTBENCH_PLUGIN_PATH"
_IMPORT_DIRS: list[Path] = []


def add_import_dir(path: str | Path) -> None:
    """Let ``module:attr`` names import modules from ``path`` in this process and in the
    processes it starts (idempotent)."""
    p = Path(path).resolve()
    if p not in _IMPORT_DIRS:
        _IMPORT_DIRS.append(p)
    env = [e for e in os.environ.get(IMPORT_PATH_ENV, "").split(os.pathsep) if e]
    if str(p) not in env:
        os.environ[IMPORT_PATH_ENV] = os.pathsep.join([*env, str(p)])


def import_dirs() -> tuple[Path, ...]:
    """The plugin folders: those inherited through ``LTBENCH_PLUGIN_PATH``, then those
    :func:`add_import_dir` registered in this process."""
    env = [Path(e) for e in os.environ.get(IMPORT_PATH_ENV, "").split(os.pathsep) if e]
    return tuple(dict.fromkeys([*env, *_IMPORT_DIRS]))


def _dir_holding(module: str, dirs: tuple[Path, ...]) -> Path | None:
    top = module.split(".")[0]
    for d in reversed(dirs):  # a later folder wins, as for recipes
        if (d / f"{top}.py").is_file() or (d / top).is_dir():
            return d
    return None


def import_target(target: str, dirs: tuple[Path, ...] | None = None) -> Any:
    """The object a ``"package.module:attr"`` string names (``attr`` may be dotted).

    Raises:
        PluginImportError: the module does not import, or lacks the attribute; the message
            says where it looked.
    """
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise PluginImportError(f"{target!r} is not 'module:attr' (e.g. 'my_losses:FocalLoss')")
    dirs = import_dirs() if dirs is None else tuple(dirs)
    home = _dir_holding(module, dirs) if module.split(".")[0] not in sys.modules else None
    where = (
        f"{home} (a plugin folder)"
        if home
        else "the Python path" + (f" and the plugin folders {', '.join(map(str, dirs))}" if dirs else "")
    )
    try:
        if home is None:
            mod = importlib.import_module(module)
        else:
            sys.path.insert(0, str(home))
            importlib.invalidate_caches()  # the folder's files may be new
            try:
                mod = importlib.import_module(module)
            finally:
                sys.path.remove(str(home))
    except Exception as e:  # noqa: BLE001 - any failure of user code is reported the same way
        why = f"No module named {e.name!r}" if isinstance(e, ModuleNotFoundError) else f"{type(e).__name__}: {e}"
        raise PluginImportError(f"cannot import {module!r} for {target!r} from {where}: {why}") from e
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(mod) if not n.startswith("_"))
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise PluginImportError(
                f"module {module!r} ({getattr(mod, '__file__', '?')}) has no attribute {attr!r}.{hint}"
            )
        obj = getattr(obj, part)
    return obj


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=group))


class Registry(Generic[T]):
    """Maps names to entries; entries may be given lazily as ``"package.module:attr"``.

    Example:
        >>> sources = Registry("data source")
        >>> sources.add("digits", "ltbench.data.embedded:load_digits")
        >>> fn = sources.get("digits")  # imported on first use
        >>> losses = Registry("loss", entry_points="ltbench.losses")  # plus installed plugins
        >>> focal = losses.get("my_losses:FocalLoss")  # any importable module:attr
    """

    def __init__(self, kind: str, entry_points: str | None = None, targets: bool = True):
        self.kind = kind
        self.entry_point_group = entry_points
        self.targets = targets  # whether "module:attr" names resolve to importable code
        self._entries: dict[str, T | str] = {}
        self._plugins: dict[str, Any] | None = None  # name -> EntryPoint, then the loaded object

    def add(self, name: str, entry: T | str, *, replace: bool = False) -> None:
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    # ----------------------------------------------------------- entry points

    def _plugin_entries(self) -> dict[str, Any]:
        if self._plugins is None:
            self._plugins = {}
            if self.entry_point_group:
                for ep in _entry_points(self.entry_point_group):
                    if ep.name in self._entries:
                        warnings.warn(
                            f"entry point {ep.name!r} of group {self.entry_point_group!r} ({ep.value}) "
                            f"is left out: ltbench has a {self.kind} of that name",
                            stacklevel=3,
                        )
                    elif ep.name not in self._plugins:
                        self._plugins[ep.name] = ep
        return self._plugins

    def reload_entry_points(self) -> None:
        """Forget discovered entry points; the next lookup reads the installed packages again."""
        self._plugins = None

    # ----------------------------------------------------------------- lookup

    def get(self, name: str) -> T:
        """The entry ``name``: registered, an entry point, or a ``module:attr`` target.

        Raises:
            UnknownNameError: no such name (the message lists the valid ones).
            PluginImportError: an entry point or ``module:attr`` whose code does not import.
        """
        if name in self._entries:
            entry = self._entries[name]
            if isinstance(entry, str) and ":" in entry:
                entry = import_target(entry, ())
                self._entries[name] = entry
            return entry  # type: ignore[return-value]
        plugins = self._plugin_entries()
        if name in plugins:
            ep = plugins[name]
            if isinstance(ep, importlib.metadata.EntryPoint):
                try:
                    plugins[name] = ep.load()
                except Exception as e:  # noqa: BLE001
                    raise PluginImportError(
                        f"{self.kind} {name!r} from entry point group {self.entry_point_group!r} "
                        f"({ep.value}) does not load: {type(e).__name__}: {e}"
                    ) from e
            return plugins[name]
        if self.targets and ":" in name:
            return import_target(name)  # the module is cached in sys.modules
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        tail = ", or 'module:attr' naming importable code" if self.targets else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(names) or '(none)'}{tail}"

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard (``'*bce*'``), entry points included."""
        every = set(self._entries) | set(self._plugin_entries())
        return sorted(n for n in every if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        """Registered or entry-point names (``module:attr`` targets are not listed)."""
        return name in self._entries or name in self._plugin_entries()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
