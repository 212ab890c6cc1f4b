"""The written plug-in contracts (sparseconn.ops, sparseconn.heads, sparseconn.encoders): what does not
follow them is refused at registration or at build with one line naming the plug-in and the mismatch,
and their default hooks are right where they claim to be."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from sparseconn.config import EdgeConfig
from sparseconn.contracts import PluginError
from sparseconn.encoders import ENCODERS, Encoder, FeatureInfo, build_encoder
from sparseconn.engine.fastpath import count_batchnorm, fold_batchnorm
from sparseconn.errors import ArchitectureError, ConfigError, SparseconnError
from sparseconn.heads import HEADS, Head, build_head, head_channels
from sparseconn.network import build_supernet
from sparseconn.ops import (
    EDGE_OPS,
    FUSIONS,
    RESIZE_POLICIES,
    STAGE_OPS,
    Concat,
    EdgeOp,
    EdgeOpSpec,
    Fusion,
    ResizeConv,
    WeightedSum,
    build_edge_op,
    build_stage_op,
    resize,
)
from sparseconn.registry import Registry
from sparseconn.space import SearchSpace
from tests.conftest import inherited_pair, randomize_norms, tiny_config
from tests.user_plugins import DepthwiseSeparable


@pytest.fixture
def registered() -> Iterator[list[tuple[Registry, str]]]:
    """Names a test registers, removed again afterwards."""
    names: list[tuple[Registry, str]] = []
    yield names
    for registry, name in names:
        registry.unregister(name)


def one_line(exc: pytest.ExceptionInfo, *names: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for name in names:
        assert name in message, (name, message)
    return message


def assert_child_equals_supernet(cfg, **kwargs) -> None:
    """The child of :func:`inherited_pair` computes what its gated supernet does."""
    sup, child = inherited_pair(cfg, **kwargs)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(child(x), sup(x), rtol=1e-5, atol=1e-5)


# -- edge ops ------------------------------------------------------------------------------------------


class PlainEdge(nn.Module):
    def forward(self, x, size):
        return x


class OldStyleEdge(EdgeOp):
    def __init__(self, in_channels: int, out_channels: int, *, order: str) -> None:
        super().__init__(EdgeOpSpec(in_channels, out_channels, order))

    def forward(self, x, size):
        return x


class NoForwardEdge(EdgeOp):
    pass


class NormFreeEdge(EdgeOp):
    """1x1 conv then resize, no per-edge norm: the default fold_from is right once it names its conv."""

    output_layer = "conv"

    def __init__(self, spec: EdgeOpSpec) -> None:
        super().__init__(spec)
        self.conv = nn.Conv2d(spec.in_channels, spec.out_channels, 1, bias=spec.bias)

    def forward(self, x, size):
        return resize(self.conv(x), size, False)


class UnnamedOutputEdge(NormFreeEdge):
    output_layer = None


class NormEdge(NormFreeEdge):
    """A per-edge BN without its own fold_from: the default must refuse to inherit."""

    def __init__(self, spec: EdgeOpSpec) -> None:
        super().__init__(spec)
        self.bn = nn.BatchNorm2d(spec.out_channels) if spec.norm else None

    def forward(self, x, size):
        y = super().forward(x, size)
        return self.bn(y) if self.bn is not None else y


class ForgetfulEdge(EdgeOp):
    def __init__(self, spec: EdgeOpSpec) -> None:
        nn.Module.__init__(self)

    def forward(self, x, size):
        return x


def test_an_edge_op_that_skips_the_base_init_is_refused_at_build(registered):
    EDGE_OPS.register("forgetful", ForgetfulEdge)
    registered.append((EDGE_OPS, "forgetful"))
    with pytest.raises(PluginError) as exc:
        build_edge_op("forgetful", EdgeOpSpec(8, 8, "conv_first"))
    one_line(exc, "forgetful", "super().__init__(spec)")


def test_an_edge_spec_and_a_resize_policy_with_a_bad_order(registered):
    with pytest.raises(SparseconnError) as exc:
        EdgeOpSpec(8, 8, "sideways", key="E1->D1")
    one_line(exc, "E1->D1", "'sideways'", "conv_first")
    with pytest.raises(SparseconnError) as exc:
        EdgeOpSpec(0, 8, "conv_first")
    one_line(exc, "in_channels", "0")
    RESIZE_POLICIES.register("sideways_policy", lambda src, dst: "diagonal")
    registered.append((RESIZE_POLICIES, "sideways_policy"))
    with pytest.raises(PluginError) as exc:
        build_supernet(SearchSpace(tiny_config(edges={"resize": "sideways_policy"})))
    one_line(exc, "resize policy 'sideways_policy'", "'diagonal'", "resize_first")


def test_resize_conv_keeps_its_keyword_form_and_its_state_dict_keys():
    old = ResizeConv(4, 6, order="conv_first", kernel=1, norm=True, bias=True)
    new = ResizeConv(EdgeOpSpec(4, 6, "conv_first", EdgeConfig(kernel=1), norm=True, bias=True))
    assert list(old.state_dict()) == list(new.state_dict()) == [
        "conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
        "bn.num_batches_tracked"]
    assert old.conv.kernel_size == (1, 1) and old.order == new.order == "conv_first"
    with pytest.raises(SparseconnError, match="order must be"):
        ResizeConv(4, 6, order="up")
    with pytest.raises(SparseconnError) as exc:
        ResizeConv(4, 6)
    one_line(exc, "EdgeOpSpec", "order=None")


@pytest.mark.parametrize("op, fusion", [("dwsep", "weighted_sum"), ("dwsep", "gate_sum"), ("norm_free", "concat")])
def test_an_inherited_child_of_user_ops_equals_its_supernet(op, fusion, registered):
    if op == "norm_free":
        EDGE_OPS.register("norm_free", NormFreeEdge)
        registered.append((EDGE_OPS, "norm_free"))
    cfg = tiny_config(edges={"op": op}, decoder={"fusion": fusion}, plugins=["tests.user_plugins"])
    assert_child_equals_supernet(cfg, weight=0.7)  # folds a weight that is not 1


@pytest.mark.parametrize("cls, names", [
    (UnnamedOutputEdge, ("unnamed", "UnnamedOutputEdge", "output_layer", "fold_from(other, weight)")),
    (NormEdge, ("norm_edge", "NormEdge", "'bn.weight'", "fold_from(other, weight)")),
])
def test_the_default_fold_from_refuses_what_it_cannot_fold(cls, names, registered):
    EDGE_OPS.register(names[0], cls)
    registered.append((EDGE_OPS, names[0]))
    with pytest.raises(ArchitectureError) as exc:
        inherited_pair(tiny_config(edges={"op": names[0]}))
    one_line(exc, *names[1:])


def test_fold_norm_is_used_when_an_edge_op_has_one_and_harmless_when_not(registered):
    EDGE_OPS.register("norm_edge", NormEdge)
    registered.append((EDGE_OPS, "norm_edge"))
    x = torch.randn(2, 1, 32, 32)
    for op, left in (("dwsep", 0), ("norm_edge", 7)):  # NormEdge keeps its 7 edge BNs: exact, only slower
        sup = build_supernet(SearchSpace(tiny_config(edges={"op": op}, plugins=["tests.user_plugins"])))
        randomize_norms(sup)
        sup.eval()
        folded, _ = fold_batchnorm(sup)
        assert count_batchnorm(folded) == left
        with torch.no_grad():
            torch.testing.assert_close(folded(x), sup(x), rtol=1e-4, atol=1e-5)
    assert DepthwiseSeparable(EdgeOpSpec(4, 4, "conv_first")).fold_norm_() is False


# -- fusions -------------------------------------------------------------------------------------------


class NoFuse(Fusion):
    pass


class OneArgFusion(Fusion):
    def __init__(self, channels: int) -> None:
        super().__init__(1, channels)

    def fuse(self, xs):
        return xs[0]


class ScaledSum(WeightedSum):
    """Parameters, but no inherit: the default must refuse to guess."""

    def __init__(self, n_inputs: int, channels: int) -> None:
        super().__init__(n_inputs, channels)
        self.scale = nn.Parameter(torch.ones(channels))

    def fuse(self, xs):
        return super().fuse(xs) * self.scale.view(1, -1, 1, 1)


class ReluSum(Fusion):
    """Parameter-free, and a zero input adds nothing (a mean would not be: a child averages fewer inputs)."""

    def fuse(self, xs):
        return torch.stack(xs).relu().sum(0)


def test_a_fusion_with_parameters_must_implement_inherit(registered):
    FUSIONS.register("scaled_sum", ScaledSum)
    registered.append((FUSIONS, "scaled_sum"))
    with pytest.raises(ArchitectureError) as exc:
        inherited_pair(tiny_config(decoder={"fusion": "scaled_sum"}))
    one_line(exc, "fusion 'scaled_sum' (ScaledSum)", "'scale'", "inherit(other, kept)")


def test_a_parameter_free_fusion_inherits_by_default(registered):
    FUSIONS.register("relu_sum", ReluSum)
    registered.append((FUSIONS, "relu_sum"))
    assert_child_equals_supernet(tiny_config(decoder={"fusion": "relu_sum"}))


def test_the_registry_docstring_example_is_true(registered):
    """sparseconn.registry's example registers a Fusion subclass and shows the unknown-name error verbatim."""
    import sparseconn.registry

    doc = sparseconn.registry.__doc__ or ""
    lines = list(itertools.takewhile(lambda line: not line or line.startswith("    "),
                                     doc.split("::\n\n", 1)[1].splitlines()))
    *code, lookup, unknown = [line[4:] for line in lines if line]
    registered.append((FUSIONS, "plain_sum"))
    namespace: dict[str, Any] = {"torch": torch}
    exec("\n".join(code), namespace)  # the import and the registration
    assert issubclass(namespace["PlainSum"], Fusion) and eval(lookup.split("#")[0], namespace) is namespace["PlainSum"]
    fusion = FUSIONS.get("plain_sum")(2, 3)
    assert torch.equal(fusion([torch.ones(1, 3, 2, 2), torch.ones(1, 3, 2, 2)]), torch.full((1, 3, 2, 2), 2.0))
    call, expected = unknown.split("  # RegistryError: ")
    with pytest.raises(SparseconnError) as info:
        eval(call, namespace)
    shown = [n for n in FUSIONS.names() if not FUSIONS.get(n).__module__.startswith("tests.")]  # not test plug-ins
    assert str(info.value).startswith("unknown fusion 'wsum'; available: ")
    assert expected == f"unknown fusion 'wsum'; available: {', '.join(shown)}"


def test_built_in_fusions_keep_their_arithmetic():
    xs = [torch.randn(1, 4, 3, 3) for _ in range(3)]
    w = torch.tensor([0.2, 0.5, 0.9])
    assert torch.equal(WeightedSum(3, 4)(xs, w), xs[0] * w[0] + xs[1] * w[1] + xs[2] * w[2])
    cat = Concat(3, 4)
    assert list(cat.state_dict()) == ["proj.weight"]
    torch.testing.assert_close(cat(xs, w), cat.proj(torch.cat([x * wi for x, wi in zip(xs, w, strict=True)], 1)))


# -- stage ops -----------------------------------------------------------------------------------------


def test_a_stage_op_that_returns_no_module_is_refused_at_build(registered):
    def tensor_stage(channels: int, kernel: int = 3) -> Any:
        return torch.zeros(channels)

    STAGE_OPS.register("tensor_stage", tensor_stage)
    registered.append((STAGE_OPS, "tensor_stage"))
    with pytest.raises(PluginError) as exc:
        build_stage_op("tensor_stage", 8, kernel=3)
    one_line(exc, "stage op 'tensor_stage'", "Tensor", "nn.Module")


def test_a_stage_op_may_be_a_class(registered):
    class Scale(nn.Module):
        def __init__(self, channels: int, kernel: int = 3) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.ones(1, channels, 1, 1))

        def forward(self, x):
            return x * self.s

    STAGE_OPS.register("scale", Scale)
    registered.append((STAGE_OPS, "scale"))
    assert_child_equals_supernet(tiny_config(decoder={"stage_op": "scale"}))


# -- heads ---------------------------------------------------------------------------------------------


class PlainHead(nn.Module):
    def forward(self, x, input_size):
        return x


class NoChannelsHead(Head):
    def __init__(self, in_channels: int, classes: int = 3) -> None:
        super().__init__(in_channels, classes)

    def forward(self, x, input_size):
        return x


class ClassesHead(NoChannelsHead):
    channels_param = "classes"


class LyingHead(ClassesHead):
    def __init__(self, in_channels: int, classes: int = 3) -> None:
        super().__init__(in_channels, classes + 1)


class RequiredHead(Head):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels)

    def forward(self, x, input_size):
        return x


def test_a_head_declares_its_output_channels(registered):
    for name, cls in (("classes_head", ClassesHead), ("lying_head", LyingHead), ("required_head", RequiredHead)):
        HEADS.register(name, cls)
        registered.append((HEADS, name))
    assert head_channels("classes_head", {}) == 3 and head_channels("classes_head", {"classes": 5}) == 5
    space = SearchSpace(tiny_config(head={"name": "classes_head", "params": {"classes": 5}}))
    assert space.graph.nodes["H"]["channels"] == 5
    assert build_supernet(space)(torch.randn(1, 1, 32, 32)).shape == (1, 8, 16, 16)  # this head passes x on
    with pytest.raises(PluginError) as exc:
        build_head("lying_head", 8, {})
    one_line(exc, "head 'lying_head' (LyingHead)", "declares 3", "built with 4")
    with pytest.raises(ConfigError) as exc:
        head_channels("required_head", {})
    one_line(exc, "required_head", "'out_channels'")
    with pytest.raises(ConfigError) as exc:
        SearchSpace(tiny_config(head={"name": "classes_head", "params": {"clases": 5}}))
    one_line(exc, "classes_head", "'clases'", "classes")
    with pytest.raises(ConfigError) as exc:
        head_channels("classes_head", {"classes": 0})
    one_line(exc, "classes_head", "0", ">= 1")


def test_the_task_heads_declare_their_channels():
    assert head_channels("regression", {}) == 1 and head_channels("regression", {"out_channels": 2}) == 2
    assert head_channels("segmentation", {}) == 21 and head_channels("segmentation", {"num_classes": 6}) == 6
    space = SearchSpace(tiny_config(head={"name": "segmentation", "params": {"num_classes": 6}}))
    assert space.graph.nodes["H"]["channels"] == 6  # read as params["out_channels"] before: None


# -- encoders ------------------------------------------------------------------------------------------


class MisreportingEncoder(Encoder):
    def __init__(self, in_channels: int) -> None:
        super().__init__([FeatureInfo(in_channels, 2), FeatureInfo(in_channels, 8)])

    @classmethod
    def feature_info(cls, in_channels, **params):
        return [FeatureInfo(in_channels, 2), FeatureInfo(in_channels, 4)]

    def forward(self, x, upto=None):
        return [x]


class NoInfoEncoder(Encoder):
    def forward(self, x, upto=None):
        return [x]


def test_an_encoder_is_built_as_its_feature_info_says(registered):
    ENCODERS.register("misreporting", MisreportingEncoder)
    registered.append((ENCODERS, "misreporting"))
    with pytest.raises(PluginError) as exc:
        build_encoder("misreporting", 3)
    one_line(exc, "encoder 'misreporting'", "[2, 8]", "[2, 4]")


# -- every plug-in kind --------------------------------------------------------------------------------


@pytest.mark.parametrize("registry, obj, names", [
    pytest.param(EDGE_OPS, PlainEdge, ("PlainEdge", "sparseconn.ops.EdgeOp"), id="edge-plain-module"),
    pytest.param(EDGE_OPS, OldStyleEdge, ("OldStyleEdge", "(spec)"), id="edge-old-signature"),
    pytest.param(EDGE_OPS, NoForwardEdge, ("NoForwardEdge", "forward(x, size)"), id="edge-no-forward"),
    pytest.param(EDGE_OPS, lambda spec: None, ("EdgeOp",), id="edge-function"),
    pytest.param(FUSIONS, nn.Identity, ("Identity", "sparseconn.ops.Fusion"), id="fusion-plain-module"),
    pytest.param(FUSIONS, NoFuse, ("NoFuse", "fuse(xs)"), id="fusion-no-fuse"),
    pytest.param(FUSIONS, OneArgFusion, ("OneArgFusion", "(n_inputs, channels)"), id="fusion-one-arg"),
    pytest.param(STAGE_OPS, 3, ("not callable",), id="stage-not-callable"),
    pytest.param(STAGE_OPS, lambda channels: nn.Identity(), ("(channels, kernel=k)",), id="stage-no-kernel"),
    pytest.param(HEADS, PlainHead, ("PlainHead", "sparseconn.heads.Head"), id="head-plain-module"),
    pytest.param(HEADS, NoChannelsHead, ("NoChannelsHead", "'out_channels'", "channels_param"),
                 id="head-no-channels"),
    pytest.param(ENCODERS, NoInfoEncoder, ("NoInfoEncoder", "feature_info"), id="encoder-no-feature-info"),
    pytest.param(ENCODERS, PlainEdge, ("sparseconn.encoders.base.Encoder",), id="encoder-plain-module"),
])
def test_a_plugin_off_its_contract_is_refused_at_registration(registry, obj, names):
    name = "bad_" + registry.kind.replace(" ", "_")
    with pytest.raises(PluginError) as exc:
        registry.register(name, obj)
    one_line(exc, name, *names)
    assert name not in registry
