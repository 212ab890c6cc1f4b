"""A new search space in one file: a small ResNet-style encoder, an attention-gated fusion and an edge
rule of your own, searched through the normal CLI.

    sparseconn search examples/custom_space.yaml --fast-dev-run --out runs/custom

(``examples/custom_space.yaml`` names this module under ``plugins:``; run from the repository root, so
that ``examples.custom_space`` imports.) Then ``sparseconn prune runs/custom`` and
``sparseconn train examples/custom_space.yaml --arch runs/custom/architecture.json`` as with any space;
``sparseconn list --config examples/custom_space.yaml`` shows the three names below.

- encoder ``resnet_small``: a 3x3 stem, then one ResNet basic block per feature (two 3x3 convs and a
  shortcut), each halving the resolution; ``widths`` sets the features' channels.
- fusion ``attention_gate``: each input is scaled by its own spatial attention map,
  ``T = sum_i sigmoid(conv1x1(x_i)) * x_i``, so a stage learns where each connection matters. The gates
  have parameters, so a child keeps those of its kept inputs (``inherit``).
- edge rule ``ladder``: decoder stage ``D_l`` takes the encoder features at its own depth and deeper,
  the ground feature and the next deeper stage ``D_{l+1}`` only (a U-Net's ladder, widened).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from sparseconn.edge_rules import EDGE_RULES, register_edge_rule
from sparseconn.encoders import ENCODERS, Encoder, FeatureInfo, register_encoder
from sparseconn.errors import ConfigError
from sparseconn.graph import NodeInfo
from sparseconn.ops import FUSIONS, Fusion, register_fusion


class BasicBlock(nn.Module):
    """(B, c_in, H, W) -> (B, c_out, H / stride, W / stride): conv-BN-ReLU, conv-BN, plus the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _widths(widths: Sequence[int]) -> list[int]:
    widths = list(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError(f"encoder 'resnet_small': widths is {widths!r}; expected a list of channel counts >= 1")
    return widths


class ResNetSmall(Encoder):
    """Features ``k = 0..n-1``: ``widths[k]`` channels at stride ``2^(k+1)``."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__(type(self).feature_info(in_channels, widths))
        chans = [in_channels, *self.out_channels]
        self.blocks = nn.ModuleList(BasicBlock(chans[k], chans[k + 1], stride=2) for k in range(len(chans) - 1))

    @classmethod
    def feature_info(cls, in_channels: int, widths: Sequence[int] = (16, 32, 64, 128)) -> list[FeatureInfo]:
        return [FeatureInfo(w, 2 ** (k + 1)) for k, w in enumerate(_widths(widths))]

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        last = len(self.blocks) - 1 if upto is None else upto
        feats = []
        for block in self.blocks[: last + 1]:
            x = block(x)
            feats.append(x)  # (B, widths[k], H / 2^(k+1), W / 2^(k+1))
        return feats

    def steps(self, upto: int | None = None) -> list[nn.Module]:
        """Optional: the encoder as a chain, block k from feature k - 1 to feature k (the CUDA fast path then
        starts each connection while the deeper blocks run)."""
        last = len(self.blocks) - 1 if upto is None else upto
        return list(self.blocks[: last + 1])


class AttentionGate(Fusion):
    """(B, C, h, w) x n -> (B, C, h, w): the sum of the inputs, each times its own attention map."""

    def __init__(self, n_inputs: int, channels: int) -> None:
        super().__init__(n_inputs, channels)
        self.attend = nn.ModuleList(nn.Conv2d(channels, 1, 1) for _ in range(n_inputs))

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0] * torch.sigmoid(self.attend[0](xs[0]))
        for x, attend in zip(xs[1:], self.attend[1:], strict=True):
            out = out + x * torch.sigmoid(attend(x))  # (B, C, h, w) * (B, 1, h, w)
        return out

    @torch.no_grad()
    def inherit(self, other: Fusion, kept: list[int]) -> None:
        """Keep the gates of the kept inputs: a pruned input (weight 0) added nothing, so the child is exact."""
        if not isinstance(other, AttentionGate):
            raise ConfigError(f"attention_gate inherits from an attention_gate, not {type(other).__name__}")
        for mine, i in zip(self.attend, kept, strict=True):
            mine.load_state_dict(other.attend[i].state_dict())


def ladder(nodes: Mapping[str, NodeInfo]) -> list[tuple[str, str]]:
    """D_l <- E_k for every k at D_l's depth or deeper, every ground node, and D_{l+1}."""
    enc = [n for n, a in nodes.items() if a.kind == "encoder"]
    dec = sorted((n for n, a in nodes.items() if a.kind == "decoder"), key=lambda n: nodes[n].stride)
    ground = [n for n, a in nodes.items() if a.kind == "ground"]
    pairs = []
    for i, d in enumerate(dec):
        pairs += [(e, d) for e in enc if nodes[e].stride >= nodes[d].stride]
        pairs += [(g, d) for g in ground]
        if i + 1 < len(dec):
            pairs.append((dec[i + 1], d))
    return pairs


# Registered once, also when the module is imported under a second name.
if "resnet_small" not in ENCODERS:
    register_encoder("resnet_small")(ResNetSmall)
if "attention_gate" not in FUSIONS:
    register_fusion("attention_gate")(AttentionGate)
if "ladder" not in EDGE_RULES:
    register_edge_rule("ladder")(ladder)
