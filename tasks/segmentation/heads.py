"""SparseMask's segmentation head: ReLU6 -> 1x1 conv to class logits -> bilinear up-sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparseconn.heads import Head, register_head


@register_head("segmentation")
class SegmentationHead(Head):
    """(B, C, h, w) -> (B, num_classes, H, W) logits."""

    channels_param = "num_classes"

    def __init__(self, in_channels: int, num_classes: int = 21, align_corners: bool = True) -> None:
        super().__init__(in_channels, num_classes)
        self.conv = nn.Conv2d(in_channels, num_classes, 1)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        y = self.conv(F.relu6(x))  # (B, K, h, w)
        return F.interpolate(y, size=input_size, mode="bilinear", align_corners=self.align_corners)
