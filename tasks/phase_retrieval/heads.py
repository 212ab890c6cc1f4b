"""The paper's regression head (§II-A): conv to one channel, resize to the input, ReLU6 / 6."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparseconn.heads import Head, register_head


@register_head("regression")
class RegressionHead(Head):
    """(B, C, h, w) -> (B, out_channels, H, W) in [0, 1]: phase / phase range.

    ReLU6(x) / 6 bounds the output like the normalised target, so the network cannot predict a
    phase outside the training range.
    """

    def __init__(self, in_channels: int, out_channels: int = 1, kernel: int = 1, align_corners: bool = False) -> None:
        super().__init__(in_channels, out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        y = self.conv(x)  # (B, out_channels, h, w), h = H / 2 for the paper's D_1
        y = F.interpolate(y, size=input_size, mode="bilinear", align_corners=self.align_corners)
        return F.relu6(y) / 6.0
