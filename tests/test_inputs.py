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


# -- any-size inference: the input op runs on the raw input, its output is padded --------------------------

@pytest.fixture
def recorded_sizes():
    """A registered input op ``test_record_size`` (identity) that records the (H, W) of every input it sees."""
    seen: list[tuple[int, int]] = []

    @register_input_op("test_record_size")
    class RecordSize(InputOp):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return x

    yield seen
    INPUT_OPS.unregister("test_record_size")


@pytest.mark.parametrize("model", ["graph", "unet"])
def test_the_input_op_sees_the_raw_size_and_the_output_is_cropped_back(recorded_sizes, model):
    """An odd-sized input reaches the input op unpadded (an FFT layer demodulating a reflected hologram sees
    a mirrored carrier in the pad); the op's output is padded to the stride, and the output cropped back."""
    from sparseconn.inputs import pad_to_multiple
    from sparseconn.models import build_model
    from tests.conftest import tiny_config
    from tests.test_models import TOY_HEAD

    space = tiny_config(input={"name": "test_record_size"}, head=TOY_HEAD.model_dump())
    torch.manual_seed(0)
    net = (build_supernet(SearchSpace(space)) if model == "graph" else build_model("unet", {"width": 4}, space)).eval()
    x = torch.rand(2, 1, 37, 29)
    with torch.no_grad():
        y = net(x)
        assert recorded_sizes == [(37, 29)] and y.shape == (2, 1, 37, 29)
        # The same as padding the op's output by hand (reflection, bottom/right) and cropping the full output.
        padded, _ = pad_to_multiple(x, net.stride)
        assert torch.equal(y, net(padded)[..., :37, :29])


def test_predict_pads_the_raw_input_only_for_a_model_that_does_not_pad_itself(recorded_sizes, tiny_cfg):
    from torch import nn

    from sparseconn.engine.inference import input_multiple, predict

    data = tiny_cfg.model_dump()
    data["input"] = {"name": "test_record_size"}
    net = build_supernet(SearchSpace(SpaceConfig.model_validate(data))).eval()
    assert net.any_size and input_multiple(net) == 1 and net.stride == 4
    predict(net, torch.rand(1, 1, 30, 30))
    assert recorded_sizes == [(30, 30)]

    class Plain(nn.Module):  # a user's module: no any_size, so its raw input is padded to its stride
        stride = 8

        def forward(self, x):
            recorded_sizes.append(tuple(x.shape[-2:]))
            return x

    assert input_multiple(Plain()) == 8
    assert predict(Plain(), torch.rand(1, 1, 30, 30)).shape == (1, 1, 30, 30)
    assert recorded_sizes[-1] == (32, 32)


def test_exporting_is_true_under_export_and_tracing_only(monkeypatch):
    """``exporting()`` is False in eager and compiled runs and True while ``torch.export`` or TorchScript
    traces; it reads the flag ``torch.export`` sets, because dynamo before PyTorch 2.13 answered
    ``torch.compiler.is_exporting()`` with True under every ``torch.compile`` (imitated here by patching
    the call), which sent compiled CUDA models down the export forms."""
    import torch

    from sparseconn.inputs import export_tracing, exporting

    class Probe(torch.nn.Module):
        def forward(self, t):
            return t + float(exporting()) + 2.0 * float(export_tracing())

    t = torch.zeros(2)
    assert Probe()(t).tolist() == [0.0, 0.0]
    assert torch.compile(Probe())(t).tolist() == [0.0, 0.0]
    assert torch.export.export(Probe(), (t,)).module()(t).tolist() == [3.0, 3.0]
    assert torch.jit.trace(Probe(), (t,), check_trace=False)(t).tolist() == [1.0, 1.0]
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert not exporting() and not export_tracing()
