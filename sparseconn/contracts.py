"""Plug-in contracts: registries that check what is registered, and one-line errors naming the plug-in.

Each network piece states its contract next to its registry, as a base class (or a ``Protocol`` for
factories), like :class:`~sparseconn.encoders.Encoder` and
:class:`~sparseconn.connections.Parameterisation`:

- :class:`sparseconn.ops.EdgeOp`, built from one :class:`sparseconn.ops.EdgeOpSpec`;
- :class:`sparseconn.ops.Fusion`;
- :class:`sparseconn.ops.StageOp` (a factory ``op(channels, kernel=k) -> nn.Module``);
- :class:`sparseconn.heads.Head`.

Their registries are :class:`CheckedRegistry` instances: registering something that does not follow the
contract raises :class:`PluginError` at once, with one line naming the plug-in and the mismatch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from sparseconn.errors import ConfigError, SparseconnError
from sparseconn.registry import Registry

T = TypeVar("T")


class PluginError(SparseconnError):
    """A plug-in (edge op, fusion, stage op, head, ...) does not follow its contract."""


class CheckedRegistry(Registry[T]):
    """A :class:`~sparseconn.registry.Registry` that runs ``check(name, obj)`` before adding ``obj``.

    ``check`` raises :class:`PluginError` naming the plug-in and what it lacks.
    """

    def __init__(self, kind: str, check: Callable[[str, Any], None]) -> None:
        super().__init__(kind)
        self._check = check

    def register(self, name: str, obj: T | None = None) -> Any:
        """Register ``obj`` under ``name`` after checking it; without ``obj``, return a decorator."""

        def add(item: T) -> T:
            self._check(name, item)
            return Registry.register(self, name, item)

        if obj is not None:
            return add(obj)
        return add

    def describe(self, obj: Any) -> str:
        """``kind 'name' (ClassName)`` for a registered class, function or instance; unregistered ones
        by their class or function name."""
        target = obj if isinstance(obj, type) or inspect.isroutine(obj) else type(obj)
        for name, item in self._items.items():
            if item is target:
                return f"{self.kind} {name!r} ({label(target)})"
        return f"{self.kind} {label(target)}"


def label(obj: Any) -> str:
    """A plug-in's name for messages: its qualified name, or its repr."""
    return getattr(obj, "__qualname__", None) or repr(obj)


def overrides(cls: type, base: type, attr: str) -> bool:
    """Whether ``cls`` defines ``attr`` itself or through a class between it and ``base``."""
    mine = inspect.getattr_static(cls, attr, None)
    theirs = inspect.getattr_static(base, attr, None)
    return mine is not theirs


def check_subclass(kind: str, name: str, obj: Any, base: type, built_as: str) -> None:
    """``obj`` must be a class derived from ``base``."""
    if not (isinstance(obj, type) and issubclass(obj, base)):
        what = f"class {label(obj)}" if isinstance(obj, type) else f"{type(obj).__name__} {label(obj)}"
        raise PluginError(f"{kind} {name!r}: {what} is not a subclass of {base.__module__}.{base.__qualname__} "
                          f"({kind}s are built as {built_as})")


def check_signature(kind: str, name: str, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    call: str) -> None:
    """``obj(*args, **kwargs)`` must bind; ``call`` spells the expected call for the message."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError:
        raise PluginError(f"{kind} {name!r}: {label(obj)}{sig} cannot be called as {call}") from None


def check_method(kind: str, name: str, cls: type, base: type, method: str, spelled: str) -> None:
    """``cls`` must define ``method`` (the base's is abstract)."""
    if not overrides(cls, base, method):
        raise PluginError(f"{kind} {name!r}: {label(cls)} does not define {spelled}")


def check_params(kind: str, name: str, obj: Any, params: dict[str, Any], skip: int = 0,
                 passed: Collection[str] = ()) -> None:
    """Reject config ``params`` that ``obj``'s signature does not take: one line naming the first bad key
    and the valid ones. ``skip``: leading parameters the builder passes by position (``in_channels`` of
    a head or an input op); ``passed``: parameters it passes by name (an encoder's ``in_channels``).
    Every plug-in registry (heads, input ops, encoders, models) checks its config params here.

    Config values arrive as plain keyword dicts; without this a typo surfaces as a bare ``TypeError``.
    """
    try:
        parameters = list(inspect.signature(obj).parameters.values())[skip:]
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return  # it takes **params: it checks its own
    valid = [p.name for p in parameters
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in passed]
    bad = [k for k in params if k not in valid]
    if bad:
        raise ConfigError(f"{kind} {name!r} has no parameter {bad[0]!r}; valid: {', '.join(valid) or 'none'}")
