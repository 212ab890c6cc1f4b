"""A tiny encoder for tests: one conv-BN-ReLU6 stage per feature, any channels and strides."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparseconn.encoders.base import Encoder, FeatureInfo, register_encoder
from sparseconn.encoders.mobilenetv2 import ConvBNReLU6, check_in_channels, check_upto
from sparseconn.errors import SparseconnError

DEFAULT_CHANNELS = (8, 8)
DEFAULT_STRIDES = (2, 4)
"""The features of ``tiny`` when its config gives none: two stages of 8 channels at strides 2 and 4."""


def _stage_ratios(channels: Sequence[int], strides: Sequence[int]) -> list[int]:
    """Validate the spec; return each stage's own stride (previous stride → this one)."""
    channels, strides = list(channels), list(strides)
    if not channels or len(channels) != len(strides):
        raise SparseconnError(
            f"tiny encoder needs as many channels as strides (at least one), got channels={channels} "
            f"and strides={strides}"
        )
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise SparseconnError(f"tiny encoder channel count {c!r} must be an integer >= 1")
    ratios, prev = [], 1
    for s in strides:
        if isinstance(s, bool) or not isinstance(s, int) or s < prev or s % prev:
            raise SparseconnError(
                f"tiny encoder stride {s!r} must be an integer multiple (x1 or more) of the previous "
                f"stride {prev}"
            )
        ratios.append(s // prev)
        prev = s
    return ratios


@register_encoder("tiny")
class TinyEncoder(Encoder):
    """Stage k: 3×3 conv with stride ``strides[k] / strides[k-1]`` → BN → ReLU6.

    Shape: ``(B, in_channels, H, W)`` → ``(B, channels[k], ⌈H/strides[k]⌉, ⌈W/strides[k]⌉)`` for each k.
    """

    def __init__(
        self, in_channels: int = 1, channels: Sequence[int] = DEFAULT_CHANNELS, strides: Sequence[int] = DEFAULT_STRIDES
    ) -> None:
        super().__init__(type(self).feature_info(in_channels, channels, strides))  # checks the spec
        ratios = _stage_ratios(self.out_channels, self.strides)
        chans = [in_channels, *self.out_channels]
        # A 3×3 kernel with a stride above 3 skips pixels; fine for a test model.
        self.stages = nn.ModuleList(
            ConvBNReLU6(chans[k], chans[k + 1], stride=r) for k, r in enumerate(ratios)
        )
        self.in_channels = in_channels

    @classmethod
    def feature_info(
        cls, in_channels: int, channels: Sequence[int] = DEFAULT_CHANNELS, strides: Sequence[int] = DEFAULT_STRIDES
    ) -> list[FeatureInfo]:
        check_in_channels(in_channels, "tiny encoder")
        _stage_ratios(channels, strides)
        return [FeatureInfo(c, s) for c, s in zip(channels, strides, strict=True)]

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        last = check_upto(upto, len(self.stages))
        feats: list[torch.Tensor] = []
        for stage in self.stages[: last + 1]:
            x = stage(x)
            feats.append(x)  # (B, channels[k], H / strides[k], W / strides[k])
        return feats

    def steps(self, upto: int | None = None) -> list[nn.Module]:
        """One step per stage (see :meth:`Encoder.steps`)."""
        return list(self.stages[: check_upto(upto, len(self.stages)) + 1])
