"""A user-defined encoder, edge rule and fusion, registered in a few lines."""

import torch
from torch import nn

from sparseconn import SearchSpace, build_supernet
from sparseconn.edge_rules import register_edge_rule
from sparseconn.encoders import Encoder, FeatureInfo, register_encoder
from sparseconn.ops import Fusion, register_fusion
from tests.conftest import tiny_config


@register_encoder("user_pool")
class PoolEncoder(Encoder):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_channels, self.strides = [in_channels] * 2, [2, 4]

    @classmethod
    def feature_info(cls, in_channels, **params):
        return [FeatureInfo(in_channels, 2), FeatureInfo(in_channels, 4)]

    def forward(self, x, upto=None):
        a = nn.functional.avg_pool2d(x, 2)
        return [a, nn.functional.avg_pool2d(a, 2)][: (upto or 1) + 1]


register_edge_rule("skip_only")(lambda nodes: [("E1", "D1"), ("E2", "D2"), ("D2", "D1")])
register_fusion("user_max")(type("UserMax", (Fusion,), {"fuse": lambda self, xs: torch.stack(xs).amax(0)}))


def test_user_plugins_build_and_run():
    cfg = tiny_config(encoder={"name": "user_pool"}, edges={"rule": "skip_only"}, decoder={"fusion": "user_max"})
    net = build_supernet(SearchSpace(cfg))
    assert net.keys == ["E2->D2", "E1->D1", "D2->D1"]
    assert net(torch.randn(1, 1, 16, 16)).shape == (1, 8, 8, 8)
