"""The encoder contract and its registry."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sparseconn.contracts import CheckedRegistry, check_method, check_subclass
from sparseconn.registry import make_register


@dataclass(frozen=True)
class FeatureInfo:
    """One encoder feature: its channel count and its stride against the input."""

    channels: int
    stride: int


class Encoder(nn.Module):
    """Contract for every encoder.

    - ``feature_info(in_channels, **params)`` (classmethod) gives the features' channels and strides
      *without building any tensor*, so a search space can be checked before the network exists.
    - ``forward(x, upto=None)`` returns the features fine to coarse, ``features[0..upto]``; a child
      network that uses only shallow features stops early.
    - ``out_channels`` / ``strides`` mirror ``feature_info`` on the built module: pass the features to
      ``super().__init__(features)`` (or set both lists); :func:`~sparseconn.encoders.build_encoder`
      checks that they agree with ``feature_info``.
    """

    out_channels: list[int]
    strides: list[int]

    def __init__(self, features: Sequence[FeatureInfo] = ()) -> None:
        super().__init__()
        self.out_channels = [f.channels for f in features]
        self.strides = [f.stride for f in features]

    @classmethod
    def feature_info(cls, in_channels: int, **params) -> list[FeatureInfo]:
        raise NotImplementedError  # abstract: every registered encoder overrides it

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        raise NotImplementedError  # abstract

    def steps(self, upto: int | None = None) -> list[nn.Module] | None:
        """The encoder as a chain of modules, for a scheduler that starts work on a feature while deeper
        ones are computed (the CUDA fast path runs a network's connections beside its encoder): ``steps[0]``
        maps the input to feature 0, ``steps[k]`` feature k - 1 to feature k, for k <= ``upto`` (None: all).
        Optional: None (the default) means the encoder runs whole."""
        return None


def _check_encoder(name: str, obj: Any) -> None:
    check_subclass("encoder", name, obj, Encoder, "Encoder(in_channels, **params)")
    check_method("encoder", name, obj, Encoder, "feature_info", "the classmethod feature_info(in_channels, **params)")
    check_method("encoder", name, obj, Encoder, "forward", "forward(x, upto=None)")


ENCODERS: CheckedRegistry[type[Encoder]] = CheckedRegistry("encoder", _check_encoder)
register_encoder = make_register(ENCODERS)


_SKIP_PRETRAINED: ContextVar[bool] = ContextVar("sparseconn_skip_pretrained", default=False)


@contextmanager
def skip_pretrained() -> Iterator[None]:
    """Build encoders without reading their ``pretrained`` weights, for a network whose state dict is loaded
    next (a checkpoint, a supernet to inherit from): the weights serve the first construction only, so
    rebuilding a trained model needs neither the file nor the network.

    Example::

        with skip_pretrained():
            net = build_supernet(space)  # encoder randomly initialised, its ``pretrained`` not read
        net.load_state_dict(checkpoint["model"])
    """
    token = _SKIP_PRETRAINED.set(True)
    try:
        yield
    finally:
        _SKIP_PRETRAINED.reset(token)


def pretrained_skipped() -> bool:
    """True inside :func:`skip_pretrained`: an encoder must not load its ``pretrained`` weights now."""
    return _SKIP_PRETRAINED.get()
