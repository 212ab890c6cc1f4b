"""Encoders: feature_info matches the built module, early stop, torchvision layout, checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from sparseconn.encoders import (
    ENCODERS,
    FeatureInfo,
    MobileNetV2,
    TinyEncoder,
    build_encoder,
    encoder_feature_info,
    load_pretrained,
)
from sparseconn.errors import CheckpointError, ConfigError, SparseconnError

FIRST_CONV = "features.0.0.weight"


@pytest.fixture(scope="module")
def rgb_state() -> dict[str, torch.Tensor]:
    """A 3-channel width-1.0 state dict with non-trivial BN statistics and a classifier, like ImageNet's."""
    torch.manual_seed(0)
    state = MobileNetV2(in_channels=3).state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.randn_like(value).abs()  # positive, so running_var stays valid
    state["classifier.1.weight"] = torch.randn(10, 1280)  # torchvision's head (1000 classes, cut down)
    state["classifier.1.bias"] = torch.randn(10)
    return state


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("width", [1.0, 0.5])
def test_feature_info_matches_forward(width: float, in_channels: int) -> None:
    info = MobileNetV2.feature_info(in_channels, width=width)
    enc = MobileNetV2(in_channels=in_channels, width=width).eval()
    assert enc.out_channels == [f.channels for f in info]
    assert enc.strides == [f.stride for f in info]
    with torch.no_grad():
        feats = enc(torch.randn(1, in_channels, 64, 64))
    assert len(feats) == 9
    for f, fi in zip(feats, info, strict=True):
        assert f.shape == (1, fi.channels, 64 // fi.stride, 64 // fi.stride)


def test_feature_info_numbers() -> None:
    info = encoder_feature_info("mobilenet_v2", 1)
    assert info == [
        FeatureInfo(c, s)
        for c, s in zip(
            [32, 16, 24, 32, 64, 96, 160, 320, 1280], [2, 2, 4, 8, 16, 16, 32, 32, 32], strict=True
        )
    ]
    # torchvision's rounding: 24 * 0.5 = 12 rounds up to 16; the last conv never goes below 1280.
    half = [f.channels for f in MobileNetV2.feature_info(3, width=0.5)]
    assert half == [16, 8, 16, 16, 32, 48, 80, 160, 1280]
    assert MobileNetV2.feature_info(3, width=1.4)[-1].channels == 1792
    for width in (0.35, 0.75, 1.4):  # widths with other roundings: the module agrees with the arithmetic
        assert MobileNetV2(3, width).out_channels == [f.channels for f in MobileNetV2.feature_info(3, width)]


def test_upto_stops_early() -> None:
    enc = MobileNetV2(in_channels=1).eval()
    ran: list[int] = []
    for i, layer in enumerate(enc.features):
        layer.register_forward_hook(lambda *_, i=i: ran.append(i))
    with torch.no_grad():
        feats = enc(torch.randn(1, 1, 64, 64), upto=2)
    assert [f.shape[1] for f in feats] == [32, 16, 24]
    assert ran == [0, 1, 2, 3]  # feature 2 is features.3; nothing deeper ran
    with torch.no_grad():
        assert len(enc(torch.randn(1, 1, 64, 64), upto=8)) == 9
    for bad in (9, -1, 1.5):
        with pytest.raises(SparseconnError, match="upto"):
            enc(torch.randn(1, 1, 64, 64), upto=bad)


def test_torchvision_layout_and_param_count() -> None:
    enc = MobileNetV2(in_channels=3)
    keys = set(enc.state_dict())
    for key in (
        "features.0.0.weight",
        "features.0.1.running_var",
        "features.1.conv.0.0.weight",  # t = 1: depthwise ConvBNReLU6 first
        "features.1.conv.1.weight",  # t = 1: pw-linear conv
        "features.1.conv.2.bias",
        "features.2.conv.0.0.weight",  # t = 6: expand 1×1 first
        "features.2.conv.1.0.weight",
        "features.2.conv.3.running_mean",
        "features.17.conv.3.num_batches_tracked",
        "features.18.0.weight",
        "features.18.1.bias",
    ):
        assert key in keys, key
    assert not any(k.startswith("features.19") or k.startswith("classifier") for k in keys)
    assert enc.state_dict()["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert enc.state_dict()["features.2.conv.1.0.weight"].shape == (96, 1, 3, 3)  # depthwise on 16 * 6
    # torchvision mobilenet_v2: 3,504,872 params, of which Linear(1280, 1000) is 1,281,000.
    assert sum(p.numel() for p in enc.parameters()) == 3_504_872 - (1280 * 1000 + 1000) == 2_223_872
    assert sum(b.use_res_connect for b in enc.features[1:18]) == 10
    bn = enc.features[0][1]
    assert (bn.eps, bn.momentum) == (1e-5, 0.1)


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model_module"])
def test_load_pretrained_one_channel(tmp_path, rgb_state, wrap: str) -> None:
    saved: object = rgb_state
    if wrap == "state_dict":
        saved = {"state_dict": rgb_state, "epoch": 3}
    elif wrap == "model_module":  # DataParallel checkpoints prefix every key with "module."
        saved = {"model": {f"module.{k}": v for k, v in rgb_state.items()}}
    path = tmp_path / "mnv2.pth"
    torch.save(saved, path)
    enc = MobileNetV2(in_channels=1)
    missing, unexpected = load_pretrained(enc, path)
    assert missing == [] and unexpected == []  # classifier.* was dropped, not reported
    got = enc.state_dict()
    torch.testing.assert_close(got[FIRST_CONV], rgb_state[FIRST_CONV].sum(dim=1, keepdim=True))
    for key, value in got.items():
        if key != FIRST_CONV:
            assert torch.equal(value, rgb_state[key]), key


def test_load_pretrained_other_channel_counts(tmp_path, rgb_state) -> None:
    path = tmp_path / "mnv2.pth"
    torch.save(rgb_state, path)
    enc = MobileNetV2(in_channels=4, pretrained=str(path))  # constructor path
    w = rgb_state[FIRST_CONV]  # (32, 3, 3, 3) -> (32, 4, 3, 3): R, G, B, R, scaled by 3/4
    torch.testing.assert_close(enc.state_dict()[FIRST_CONV], torch.cat([w, w[:, :1]], dim=1) * 0.75)
    enc3 = MobileNetV2(in_channels=3)
    load_pretrained(enc3, path)
    assert torch.equal(enc3.state_dict()[FIRST_CONV], w)


def test_pretrained_with_missing_keys_warns(tmp_path, rgb_state) -> None:
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in rgb_state.items() if not k.startswith("features.18.")}, path)
    with pytest.warns(UserWarning, match="features.18"):
        MobileNetV2(in_channels=3, pretrained=str(path))
    missing, _ = load_pretrained(MobileNetV2(in_channels=3), path)
    # BatchNorm fills a missing num_batches_tracked itself (no version metadata), so it is not listed.
    expected = [k for k in rgb_state if k.startswith("features.18.") and "num_batches" not in k]
    assert sorted(missing) == sorted(expected)


def test_load_pretrained_shape_mismatch(tmp_path) -> None:
    path = tmp_path / "half.pth"
    torch.save(MobileNetV2(in_channels=3, width=0.5).state_dict(), path)
    with pytest.raises(
        CheckpointError, match=r"'features\.0\.0\.weight' has shape \(16, 3, 3, 3\).*\(32, 1, 3, 3\)"
    ):
        load_pretrained(MobileNetV2(in_channels=1), path)


def test_load_pretrained_bad_files(tmp_path, rgb_state) -> None:
    enc = MobileNetV2(in_channels=1)
    good = tmp_path / "good.pth"
    torch.save(rgb_state, good)
    cases = {
        "garbage.pth": b"this is not a checkpoint",
        "truncated.pth": good.read_bytes()[: good.stat().st_size // 2],
        "empty.pth": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "notensor.pth")
    torch.save({"conv_stem.weight": torch.zeros(1)}, tmp_path / "timm.pth")  # tensors, wrong layout
    for name in [*cases, "notensor.pth", "timm.pth", "missing.pth"]:
        with pytest.raises(CheckpointError, match=name) as err:
            load_pretrained(enc, tmp_path / name)
        assert "\n" not in str(err.value), name


def test_registry_and_params() -> None:
    assert {"mobilenet_v2", "tiny"} <= set(ENCODERS.names())
    enc = build_encoder("tiny", 2, channels=[4, 6, 8], strides=[2, 2, 8])
    assert isinstance(enc, TinyEncoder) and enc.in_channels == 2
    with pytest.raises(ConfigError) as err:
        encoder_feature_info("mobilenet_v2", 1, depth=3)
    assert str(err.value) == "encoder 'mobilenet_v2' has no parameter 'depth'; valid: width, pretrained"
    with pytest.raises(ConfigError, match=r"^encoder 'tiny' has no parameter 'width'; valid: channels, strides$"):
        build_encoder("tiny", 1, width=2.0)
    with pytest.raises(SparseconnError, match="unknown encoder 'mobilnet_v2'"):
        build_encoder("mobilnet_v2", 1)
    for bad in (0, 1.5, True):
        with pytest.raises(SparseconnError, match="in_channels"):
            MobileNetV2.feature_info(bad)
    with pytest.raises(SparseconnError, match="width"):
        MobileNetV2(3, width=0)


def test_tiny_encoder() -> None:
    info = encoder_feature_info("tiny", 1, channels=(4, 6, 8), strides=(2, 2, 8))
    assert info == [FeatureInfo(4, 2), FeatureInfo(6, 2), FeatureInfo(8, 8)]
    enc = build_encoder("tiny", 1, channels=(4, 6, 8), strides=(2, 2, 8))
    feats = enc(torch.randn(2, 1, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 4, 16, 16), (2, 6, 16, 16), (2, 8, 4, 4)]
    assert len(enc(torch.randn(2, 1, 32, 32), upto=0)) == 1
    assert (enc.out_channels, enc.strides) == ([4, 6, 8], [2, 2, 8])
    for strides in ((2, 3), (4, 2), (0, 2)):
        with pytest.raises(SparseconnError, match=f"stride {strides[1] if strides[0] else 0}"):
            TinyEncoder(1, channels=(8, 8), strides=strides)
    with pytest.raises(SparseconnError, match="as many channels as strides"):
        TinyEncoder.feature_info(1, channels=(8,), strides=(2, 4))
