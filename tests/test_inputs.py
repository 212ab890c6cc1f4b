"""Input ops: the registry, the channel contract, standardisation, and a space built with one."""

from __future__ import annotations

import pytest
import torch

from sparseconn import SearchSpace, build_supernet
from sparseconn.config import SpaceConfig
from sparseconn.errors import ConfigError
from sparseconn.inputs import INPUT_OPS, InputOp, build_input_op, input_channels, register_input_op


def test_builtin_ops_are_registered():
    assert {"identity", "standardise"} <= set(INPUT_OPS)


def test_standardise_is_exactly_gain_and_offset_invariant():
    x = torch.rand(2, 3, 16, 20)
    op = build_input_op("standardise", 3, {})
    y = op(x)
    assert y.shape == x.shape
    assert torch.allclose(y.mean(dim=(-2, -1)), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(y.std(dim=(-2, -1), unbiased=False), torch.ones(2, 3), atol=1e-4)
    for gain, offset in ((0.3, 0.0), (3.0, 0.0), (1.0, 0.25), (1000.0, -7.0)):
        assert torch.allclose(op(gain * x + offset), y, atol=1e-4)


def test_standardise_keeps_a_constant_image_finite():
    y = build_input_op("standardise", 1, {})(torch.full((1, 1, 8, 8), 0.5))
    assert torch.isfinite(y).all() and y.abs().max() == 0


def test_unknown_op_and_bad_params_are_one_line_errors():
    with pytest.raises(KeyError, match="standardise"):  # the registry lists the valid names
        input_channels("standardize_typo", 1, {})
    with pytest.raises(ConfigError, match="no parameter 'scale'.*valid: eps"):
        build_input_op("standardise", 1, {"scale": 2})


def test_a_user_op_changes_the_encoder_input_channels(tiny_cfg):
    @register_input_op("test_stack_squares")
    class StackSquares(InputOp):
        @classmethod
        def channels(cls, in_channels: int, **params) -> int:
            return 2 * in_channels

        def forward(self, x):
            return torch.cat([x, x * x], dim=1)

    try:
        data = tiny_cfg.model_dump()
        data["input"] = {"name": "test_stack_squares"}
        cfg = SpaceConfig.model_validate(data)
        net = build_supernet(SearchSpace(cfg)).eval()
        assert net.input_op.out_channels == 2 * cfg.in_channels
        x = torch.rand(2, cfg.in_channels, 32, 32)
        assert net(x).shape[0] == 2
    finally:
        INPUT_OPS.unregister("test_stack_squares")


def test_default_is_identity_so_old_configs_build_the_same(tiny_cfg):
    assert tiny_cfg.input.name == "identity"
    net = build_supernet(SearchSpace(tiny_cfg))
    assert type(net.input_op).__name__ == "Identity"
    assert not list(net.input_op.parameters()) and not net.input_op.state_dict()
