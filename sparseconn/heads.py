"""Heads: the task-specific output layer on the output decoder stage.

Tasks register their heads (``regression`` for phase retrieval, ``segmentation`` for SparseMask);
the core only defines the contract::

    @register_head("my_head")
    class MyHead(Head):
        channels_param = "out_channels"   # the constructor parameter that sets the output channels

        def __init__(self, in_channels: int, out_channels: int = 1, **params):
            super().__init__(in_channels, out_channels)
            ...

        def forward(self, x: Tensor, input_size: tuple[int, int]) -> Tensor: ...
            # (B, in_channels, h, w) -> (B, out_channels, *input_size)

A head declares its output channels before it is built (the search space's head node has them):
by default :meth:`Head.output_channels` reads the constructor parameter named by
:attr:`Head.channels_param` (its default when the config does not set it); a head whose channels follow
otherwise overrides ``output_channels``. Registering a head that is not a :class:`Head`, or whose
output channels cannot be found, fails at once with one line naming it.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from sparseconn.contracts import (
    CheckedRegistry,
    PluginError,
    check_method,
    check_params,
    check_subclass,
    label,
    overrides,
)
from sparseconn.errors import ConfigError
from sparseconn.registry import make_register


class Head(nn.Module):
    """Contract for heads (see the module docstring).

    - ``__init__(in_channels, **params)``: ``params`` are the config's ``head.params``; call
      ``super().__init__(in_channels, out_channels)``, which keeps both.
    - ``forward(x, input_size)``: ``(B, in_channels, h, w)`` -> ``(B, out_channels, *input_size)``.
    - ``output_channels(**params)`` (classmethod): the output channels for ``params``, without building.
    """

    channels_param: ClassVar[str] = "out_channels"
    """The constructor parameter that sets the output channels (read by the default :meth:`output_channels`)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels

    @classmethod
    def output_channels(cls, **params: Any) -> int:
        """Channels of the head's output for its config ``params``: by default the value of the
        constructor parameter :attr:`channels_param`, or its default."""
        if cls.channels_param in params:
            return params[cls.channels_param]
        p = inspect.signature(cls).parameters.get(cls.channels_param)
        if p is None:
            raise PluginError(f"{HEADS.describe(cls)} has no constructor parameter {cls.channels_param!r}; set "
                              "channels_param to the one that sets its output channels, or override output_channels")
        if p.default is p.empty:
            raise ConfigError(f"{HEADS.describe(cls)} needs parameter {cls.channels_param!r} (its output "
                              "channels) in head.params")
        return p.default

    def forward(self, x: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError  # abstract: registration checks that every head defines it


def _check_head(name: str, obj: Any) -> None:
    check_subclass("head", name, obj, Head, "Head(in_channels, **params)")
    try:
        inspect.signature(obj).bind_partial(1)
    except TypeError:
        raise PluginError(f"head {name!r}: {label(obj)}{inspect.signature(obj)} cannot take in_channels as its "
                          "first argument") from None
    check_method("head", name, obj, Head, "forward", "forward(x, input_size)")
    if not isinstance(obj.channels_param, str):
        raise PluginError(f"head {name!r}: channels_param must be a parameter name, got {obj.channels_param!r}")
    if not overrides(obj, Head, "output_channels") and obj.channels_param not in inspect.signature(obj).parameters:
        raise PluginError(f"head {name!r}: {label(obj)} does not declare its output channels: its constructor has "
                          f"no parameter {obj.channels_param!r}; set channels_param or override output_channels")


HEADS: CheckedRegistry[type[Head]] = CheckedRegistry("head", _check_head)
register_head = make_register(HEADS)


def head_channels(name: str, params: dict[str, Any]) -> int:
    """Output channels of head ``name`` with config ``params``, without building it (params are checked)."""
    cls = HEADS.get(name)
    check_params("head", name, cls, params, skip=1)
    channels = cls.output_channels(**params)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"{HEADS.describe(cls)} gives {channels!r} output channels for {params}; expected an "
                          "integer >= 1")
    return channels


def build_head(name: str, in_channels: int, params: dict[str, Any]) -> Head:
    """The head registered as ``name`` on a stage of ``in_channels`` channels; checks that it has the output
    channels it declares."""
    declared = head_channels(name, params)
    head = HEADS.get(name)(in_channels, **params)
    built = getattr(head, "out_channels", None)
    if built != declared:
        raise PluginError(f"{HEADS.describe(head)} declares {declared} output channels but was built with {built!r} "
                          "(call super().__init__(in_channels, out_channels))")
    return head
