"""Encoders: registered backbones that return features fine to coarse.

``build_encoder("mobilenet_v2", 1, width=1.0)`` builds one by its registry name;
``encoder_feature_info`` gives the same channels and strides without building anything. An encoder's
``pretrained`` weights are read at its first construction only: inside :func:`skip_pretrained` (a network
rebuilt to load a checkpoint into) they are not.
"""

from __future__ import annotations

from typing import Any

import torch

from sparseconn.contracts import PluginError, check_params
from sparseconn.encoders.base import (
    ENCODERS,
    Encoder,
    FeatureInfo,
    pretrained_skipped,
    register_encoder,
    skip_pretrained,
)
from sparseconn.encoders.mobilenetv2 import IMAGENET_URL, MobileNetV2, load_pretrained, pretrained_file
from sparseconn.encoders.tiny import TinyEncoder

__all__ = [
    "ENCODERS",
    "IMAGENET_URL",
    "Encoder",
    "FeatureInfo",
    "MobileNetV2",
    "TinyEncoder",
    "build_encoder",
    "encoder_feature_info",
    "load_pretrained",
    "pretrained_file",
    "pretrained_skipped",
    "register_encoder",
    "skip_pretrained",
]


def build_encoder(name: str, in_channels: int, **params: Any) -> Encoder:
    """Build the encoder registered as ``name`` (unknown names list the registered ones); checks that its
    ``out_channels`` and ``strides`` are what its ``feature_info`` says."""
    cls = ENCODERS.get(name)
    check_params("encoder", name, cls, params, passed=("in_channels",))
    encoder = cls(in_channels=in_channels, **params)
    info = cls.feature_info(in_channels, **params)
    channels, strides = [f.channels for f in info], [f.stride for f in info]
    built = (list(getattr(encoder, "out_channels", [])), list(getattr(encoder, "strides", [])))
    if built != (channels, strides):
        raise PluginError(f"{ENCODERS.describe(cls)} was built with channels {built[0]} and strides {built[1]}, "
                          f"but its feature_info gives {channels} and {strides}")
    check_outputs(encoder, ENCODERS.describe(cls), in_channels, info)
    return encoder


@torch.no_grad()
def check_outputs(encoder: Encoder, label: str, in_channels: int, info: list[FeatureInfo]) -> None:
    """Run ``encoder`` once on a small zero input (eval mode, then restored) and check that every feature
    has the channels and the stride its ``feature_info`` declares: a plug-in that breaks its contract
    fails when the network is built, before any training, in one line naming it and the mismatch."""
    side = 2 * max(f.stride for f in info)
    x = torch.zeros(1, in_channels, side, side)
    was_training = encoder.training
    encoder.eval()
    try:
        feats = encoder(x)
    finally:
        encoder.train(was_training)
    if len(feats) != len(info):
        raise PluginError(f"{label} declares {len(info)} features (feature_info) but its forward returns {len(feats)}")
    for k, (f, declared) in enumerate(zip(feats, info, strict=True)):
        got = (int(f.shape[1]), side // int(f.shape[-1]) if f.shape[-1] else None)
        if got != (declared.channels, declared.stride):
            raise PluginError(f"{label}: feature {k} declares {declared.channels} channels at stride "
                              f"{declared.stride} (feature_info) but its forward gives {got[0]} channels at "
                              f"stride {got[1]}")


def encoder_feature_info(name: str, in_channels: int, **params: Any) -> list[FeatureInfo]:
    """Channels and strides of encoder ``name``'s features, fine to coarse, without building it."""
    cls = ENCODERS.get(name)
    check_params("encoder", name, cls, params, passed=("in_channels",))
    return cls.feature_info(in_channels, **params)
