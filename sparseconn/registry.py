"""Name -> object registries: register where you define, look up by name from configs.

Example (a plug-in subclasses its contract's base class, here :class:`sparseconn.ops.Fusion`)::

    from sparseconn.ops import FUSIONS, Fusion, register_fusion

    @register_fusion("plain_sum")
    class PlainSum(Fusion):
        def fuse(self, xs):
            return torch.stack(xs).sum(0)

    FUSIONS.get("plain_sum")  # PlainSum
    FUSIONS.get("wsum")  # RegistryError: unknown fusion 'wsum'; available: concat, plain_sum, weighted_sum

The plug-in registries (``FUSIONS``, ``HEADS``, ``ENCODERS``, ...) are
:class:`~sparseconn.contracts.CheckedRegistry` instances: registering something off the contract (a
plain ``nn.Module`` fusion, say) fails at once with one line naming it. A plain :class:`Registry` checks
nothing (e.g. :data:`CLI_EXTENSIONS`).

Registries that tasks and user code extend (heads, tasks, encoders, ...) try the installed plugins
(entry-point group ``sparseconn.plugins``) once before reporting an unknown name, so the core never
imports a task by name.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from sparseconn.errors import SparseconnError

T = TypeVar("T")

PLUGIN_GROUP = "sparseconn.plugins"
_plugins_loaded = False
_user_plugins: list[str] = []  # modules imported through import_modules (a config's `plugins:`), in order


class RegistryError(SparseconnError, KeyError):
    """Unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


def load_plugins() -> list[str]:
    """Import every module registered under the ``sparseconn.plugins`` entry-point group once."""
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True
    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            importlib.import_module(ep.value.split(":")[0])
            loaded.append(ep.name)
        except ImportError as exc:  # a broken plugin must not hide the built-in names
            raise SparseconnError(f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
    return loaded


def _import_module(name: str) -> None:
    """``importlib.import_module``, then, if the top package is not found, once more with the working
    directory at the end of ``sys.path`` (where ``python -m`` would find it; the ``sparseconn`` script
    does not look there)."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != name.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        importlib.import_module(name)


def import_modules(modules: list[str]) -> None:
    """Import user modules named in a config (``plugins: [my_pkg.my_space]``) so they can register; they
    are looked up on ``sys.path`` and then in the working directory."""
    for name in modules:
        try:
            _import_module(name)
            if name not in _user_plugins:
                _user_plugins.append(name)
        except ImportError as exc:
            hint = ""
            if name.split(".")[0] == "tasks" and importlib.util.find_spec("sparseconn_tasks") is not None:
                hint = f"; the bundled tasks are imported as {'sparseconn_' + name!r} since sparseconn 0.2"
            raise SparseconnError(f"plugin module {name!r} could not be imported: {exc}{hint}") from exc


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def origin_of(module: str) -> str:
    """Where a registration made in ``module`` comes from: ``built in`` (sparseconn itself), the installed
    plug-in (the ``sparseconn.plugins`` entry point's module, e.g. ``sparseconn_tasks.phase_retrieval``),
    ``config plug-in MODULE`` (imported by :func:`import_modules`, i.e. a config's ``plugins:`` list), or
    else the module's own name (something imported it directly)."""
    if _under(module, "sparseconn"):
        return "built in"
    for name in _user_plugins:
        if _under(module, name):
            return f"config plug-in {name}"
    packages = [ep.value.split(":")[0] for ep in entry_points(group=PLUGIN_GROUP)]
    for package in packages:
        if _under(module, package):
            return package
    for package in packages:  # a module of the plug-in's distribution outside the entry point's package
        if _under(module, package.split(".")[0]):
            return package.split(".")[0]
    return module


_REGISTERING = frozenset({__name__, "sparseconn.contracts"})  # frames to skip when finding who registers


def _registering_module(item: Any) -> str:
    """The module whose code called ``register`` (outside the registry machinery), else ``item``'s own."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in _REGISTERING:
        frame = frame.f_back
    name = frame.f_globals.get("__name__") if frame is not None else None
    return name or getattr(item, "__module__", None) or type(item).__module__


class Registry(Generic[T]):
    """A named collection of factories. Duplicate names are an error. Each name remembers the module that
    registered it (:meth:`module_of`)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._modules: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            if name not in self._items:
                self._modules[name] = _registering_module(item)
            self._items[name] = item
            return item

        if obj is not None:
            return add(obj)
        return add

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error if it is absent). Nothing in sparseconn calls it: registrations are
        global, so a test or notebook that registers a throwaway name uses it to leave the registry as
        it found it."""
        self._items.pop(name, None)
        self._modules.pop(name, None)

    def module_of(self, name: str) -> str:
        """The module that registered ``name`` (e.g. ``sparseconn.ops``, ``sparseconn_tasks.segmentation.heads``);
        :func:`origin_of` turns it into ``built in``, a plug-in or a config plug-in."""
        self.get(name)  # unknown names fail as in get
        return self._modules[name]

    def get(self, name: str) -> T:
        if name not in self._items:
            load_plugins()
        if name not in self._items:
            available = ", ".join(sorted(self._items)) or "(none)"
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RegistryError(f"unknown {self.kind} {name!r}{hint}; available: {available}")
        return self._items[name]

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"


def make_register(registry: Registry[T]) -> Callable[[str], Callable[[T], T]]:
    """``register_fusion = make_register(FUSIONS)`` gives the ``@register_fusion("name")`` decorator."""

    def register(name: str) -> Callable[[T], T]:
        return registry.register(name)

    return register


CLI_EXTENSIONS: Registry[Callable[[Any], None]] = Registry("CLI extension")
"""Plugins add command groups to the ``sparseconn`` CLI: ``CLI_EXTENSIONS.register("data", fn)`` where
``fn(app)`` attaches a typer sub-app. The CLI calls every extension after loading the plugins."""
