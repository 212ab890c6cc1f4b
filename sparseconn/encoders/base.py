"""The encoder contract and its registry."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sparseconn.registry import Registry, make_register


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
    - ``out_channels`` / ``strides`` mirror ``feature_info`` on the built module.
    """

    out_channels: list[int]
    strides: list[int]

    @classmethod
    def feature_info(cls, in_channels: int, **params) -> list[FeatureInfo]:
        raise NotImplementedError  # abstract: every registered encoder overrides it

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        raise NotImplementedError  # abstract


ENCODERS: Registry[type[Encoder]] = Registry("encoder")
register_encoder = make_register(ENCODERS)
