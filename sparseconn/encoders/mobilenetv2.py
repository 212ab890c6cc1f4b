"""MobileNetV2 encoder with torchvision's module layout, so ImageNet checkpoints load key for key.

The nine features are the first conv, the last block of each of the 7 bottleneck groups and the last
1×1 conv (docs/reference.md §1–2): at width 1.0 they have 32, 16, 24, 32, 64, 96, 160, 320, 1280 channels at
strides 2, 2, 4, 8, 16, 16, 32, 32, 32.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import sys
import urllib.error
import urllib.parse
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.hub
from torch import nn

from sparseconn.encoders.base import Encoder, FeatureInfo, pretrained_skipped, register_encoder
from sparseconn.errors import CheckpointError, SparseconnError

# (expand ratio t, channels c, repeats n, first stride s), as in the paper's Table 2 and torchvision.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
DEFAULT_WIDTH = 1.0
"""Width multiplier when the config gives none (torchvision's ``mobilenet_v2()``)."""
_STEM_CHANNELS = 32
_STEM_STRIDE = 2
_LAST_CHANNELS = 1280
_FIRST_CONV_KEY = "features.0.0.weight"
IMAGENET_URL = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"
"""torchvision's MobileNetV2 ImageNet weights (``MobileNet_V2_Weights.IMAGENET1K_V1``): ``pretrained: imagenet``."""
PRETRAINED_ALIASES = {"imagenet": IMAGENET_URL}
URL_SCHEMES = ("https", "file")
PRETRAINED_FORMS = "'imagenet', a local file path, or an https:// or file:// URL"


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's rounding: nearest multiple of ``divisor``, never more than 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def check_in_channels(in_channels: Any, owner: str) -> int:
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise SparseconnError(f"{owner} in_channels must be an integer >= 1, got {in_channels!r}")
    return in_channels


def check_upto(upto: int | None, n_features: int) -> int:
    """Index of the last feature to compute; ``None`` means all of them."""
    if upto is None:
        return n_features - 1
    if isinstance(upto, bool) or not isinstance(upto, int) or not 0 <= upto < n_features:
        raise SparseconnError(f"upto must be an integer in [0, {n_features - 1}] or None, got {upto!r}")
    return upto


def check_pretrained(value: Any) -> None:
    """A ``pretrained`` value of a valid form (``None``, ``imagenet``, a path, an https:// or file:// URL);
    nothing is read or downloaded here."""
    if value is None or isinstance(value, os.PathLike):
        return
    if not isinstance(value, str) or not value.strip():
        raise SparseconnError(f"mobilenet_v2 pretrained is {value!r}; expected {PRETRAINED_FORMS}")
    if "://" in value:
        parts = urllib.parse.urlparse(value)
        if parts.scheme not in URL_SCHEMES:
            raise SparseconnError(f"mobilenet_v2 pretrained {value!r} has scheme {parts.scheme!r}; expected "
                                  f"{PRETRAINED_FORMS}")
        if not Path(parts.path).name:
            raise SparseconnError(f"mobilenet_v2 pretrained {value!r} names no file; expected a URL ending in a "
                                  "file name, e.g. " + IMAGENET_URL)


def pretrained_file(value: str | os.PathLike[str]) -> Path:
    """The local file of a ``pretrained`` value: a path as it is; ``imagenet`` and URLs downloaded once into
    torch.hub's cache (``torch.hub.get_dir()/checkpoints``, under ``TORCH_HOME``), hash-checked when the
    file name carries a ``-<hex>`` SHA-256 prefix as torchvision's do."""
    check_pretrained(value)
    text = os.fspath(value)
    url = PRETRAINED_ALIASES.get(text, text)
    if "://" not in url:
        path = Path(url).expanduser()
        if not path.is_file():
            raise CheckpointError(f"mobilenet_v2 pretrained {text!r} is not a file; expected {PRETRAINED_FORMS}")
        return path
    name = Path(urllib.parse.urlparse(url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    match = torch.hub.HASH_REGEX.search(name)
    prefix = match.group(1) if match and match.group(1) else None
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        part = cached.with_name(f"{name}.{os.getpid()}.part")
        try:
            torch.hub.download_url_to_file(url, str(part), progress=sys.stderr.isatty())
        except (OSError, urllib.error.URLError, ValueError) as exc:
            part.unlink(missing_ok=True)
            reason = str(getattr(exc, "reason", exc)).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"mobilenet_v2 pretrained {text!r}: cannot download {url} ({reason}); expected "
                                  f"a reachable URL, or give a local file path") from None
        try:
            _check_hash(part, prefix, text)
        except CheckpointError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, cached)  # atomic: the cache never holds a partial or unchecked file
    else:
        _check_hash(cached, prefix, text)
    return cached


def _check_hash(path: Path, prefix: str | None, value: str) -> None:
    """The file's SHA-256 starts with ``prefix`` (the ``-<hex>`` of its name), else a one-line error."""
    if prefix is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    got = digest.hexdigest()
    if not got.startswith(prefix):
        where = "downloaded" if path.suffix == ".part" else f"cached at {path} (delete it to download again)"
        raise CheckpointError(f"mobilenet_v2 pretrained {value!r}: the file {where} has SHA-256 "
                              f"{got[:len(prefix)]}..., "
                              f"expected {prefix}... as its name says (a corrupt or tampered file?)")


class ConvBNReLU6(nn.Sequential):
    """conv (no bias) → BN → ReLU6; keys ``0.weight``, ``1.*``, like torchvision's Conv2dNormActivation."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        padding = (kernel_size - 1) // 2  # "same" for odd kernels: output = ceil(input / stride)
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand 1×1 → depthwise 3×3 → linear 1×1 projection, with a skip when the shape is unchanged."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:  # t = 1 has no expansion conv, which shifts the key indices (torchvision)
            layers.append(ConvBNReLU6(in_ch, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),  # linear bottleneck: no activation after it
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def _plan(width: float) -> tuple[int, list[tuple[int, int, int, int]], int, list[int], list[int]]:
    """Pure arithmetic: stem channels, blocks (in, out, stride, t), last channels, tap indices, strides.

    ``feature_info`` and ``__init__`` both read this, so the two cannot disagree.
    """
    if (
        isinstance(width, bool)
        or not isinstance(width, (int, float))
        or not (math.isfinite(width) and width > 0)
    ):
        raise SparseconnError(f"mobilenet_v2 width must be a positive number, got {width!r}")
    stem = _make_divisible(_STEM_CHANNELS * width)
    blocks: list[tuple[int, int, int, int]] = []
    taps, strides = [0], [_STEM_STRIDE]  # feature 0 = the stem conv at features.0
    ch, stride = stem, _STEM_STRIDE
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        out = _make_divisible(c * width)
        for i in range(n):
            blocks.append((ch, out, s if i == 0 else 1, t))
            ch = out
        stride *= s
        taps.append(len(blocks))  # features[k] is block k-1, so the group's last block sits at len(blocks)
        strides.append(stride)
    last = _make_divisible(_LAST_CHANNELS * max(1.0, width))  # never narrower than 1280 (torchvision)
    taps.append(len(blocks) + 1)
    strides.append(stride)
    return stem, blocks, last, taps, strides


@register_encoder("mobilenet_v2")
class MobileNetV2(Encoder):
    """torchvision MobileNetV2 ``features`` (no classifier), tapped at 9 points, fine to coarse.

    Shape: ``(B, in_channels, H, W)`` → 9 tensors ``(B, out_channels[i], ⌈H/strides[i]⌉, ⌈W/strides[i]⌉)``.

    Example::

        enc = MobileNetV2(in_channels=1, pretrained="imagenet")  # or a local file, or an https:// URL
        feats = enc(torch.randn(2, 1, 256, 256), upto=3)  # 4 features, strides 2, 2, 4, 8
    """

    def __init__(self, in_channels: int = 3, width: float = DEFAULT_WIDTH, pretrained: str | None = None) -> None:
        super().__init__(type(self).feature_info(in_channels, width, pretrained))  # checks all three
        stem, blocks, last, taps, _ = _plan(width)
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, stem, stride=_STEM_STRIDE)]
        layers += [InvertedResidual(i, o, s, t) for i, o, s, t in blocks]
        layers.append(ConvBNReLU6(blocks[-1][1], last, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.taps = taps
        self.in_channels = in_channels
        self._init_weights()
        if pretrained is not None and not pretrained_skipped():  # skipped: a checkpoint's weights come next
            path = pretrained_file(pretrained)
            try:
                missing, _ = load_pretrained(self, path)
            except CheckpointError as exc:
                raise CheckpointError(f"mobilenet_v2 pretrained {os.fspath(pretrained)!r}: {exc}; expected "
                                      "torchvision MobileNetV2 weights") from None
            if missing:  # strict=False keeps going, but a half-loaded encoder should not pass silently
                warnings.warn(
                    f"{len(missing)} encoder tensors were not in {pretrained!r}, e.g. {missing[0]!r}",
                    stacklevel=2,
                )

    @classmethod
    def feature_info(
        cls, in_channels: int, width: float = DEFAULT_WIDTH, pretrained: str | None = None
    ) -> list[FeatureInfo]:
        check_in_channels(in_channels, "mobilenet_v2")  # the input only feeds the stem conv
        check_pretrained(pretrained)  # its form only: the file is read when the encoder is first built
        stem, blocks, last, taps, strides = _plan(width)
        # taps[1:-1] index features.N; features.N for 1 <= N <= 17 is block N-1, whose output is [1]
        channels = [stem] + [blocks[tap - 1][1] for tap in taps[1:-1]] + [last]
        return [FeatureInfo(c, s) for c, s in zip(channels, strides, strict=True)]

    def _init_weights(self) -> None:
        # Same as torchvision, so a randomly initialised encoder trains like theirs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        last = check_upto(upto, len(self.taps))
        feats: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.taps[len(feats)]:
                feats.append(x)  # (B, out_channels[k], H / strides[k], W / strides[k])
                if len(feats) > last:
                    break  # a child that uses only shallow features skips the deep, costly blocks
        return feats

    def steps(self, upto: int | None = None) -> list[nn.Module]:
        """``features`` cut after each tap: step k maps feature k - 1 (the input for k = 0) to feature k."""
        last = check_upto(upto, len(self.taps))
        bounds = [-1, *self.taps[: last + 1]]
        return [self.features[a + 1:b + 1] for a, b in itertools.pairwise(bounds)]


def _load_error_reason(exc: Exception) -> str:
    """One line out of torch.load's multi-paragraph errors: the unpickler's own complaint if any."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # the useful part follows a paragraph about weights_only
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return f"{type(exc).__name__} (empty or truncated file?)"
    reason = lines[0].split(". ")[0][:200]
    if "Unsupported global" in reason:
        reason += " (a pickled object rather than a state dict? save model.state_dict())"
    return reason


def _read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a local checkpoint as ``{key: tensor}``: raw, or under "state_dict"/"model"; strip "module."."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist or is not a file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises RuntimeError, UnpicklingError, EOFError, ... by format
        reason = _load_error_reason(exc)
        raise CheckpointError(f"checkpoint {str(p)!r} is not a readable torch file: {reason}") from exc
    for wrapper in ("state_dict", "model"):  # Lightning / training-script checkpoints nest the weights
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"checkpoint {str(p)!r} holds {type(obj).__name__}, expected a state dict")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint {str(p)!r} is not a state dict: entry {key!r} is {type(value).__name__}, "
                "expected a tensor"
            )
    # A plain dict drops torch's per-module version metadata; BatchNorm then accepts a missing
    # num_batches_tracked (old torchvision checkpoints have none) instead of reporting it.
    return {k.removeprefix("module."): v for k, v in obj.items()}


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a first-conv weight ``(O, I, k, k)`` to ``in_channels`` inputs, as timm's ``adapt_input_conv``.

    One channel: sum over the I inputs (a grey image seen as R = G = B gives the same response).
    Other counts: tile the I input filters and scale by I / in_channels to keep the activation scale.
    """
    dtype, w = weight.dtype, weight.float()
    n_in = w.shape[1]
    if in_channels == n_in:
        return weight
    if in_channels == 1:
        w = w.sum(dim=1, keepdim=True)  # (O, 1, k, k)
    else:
        w = w.repeat(1, math.ceil(in_channels / n_in), 1, 1)[:, :in_channels] * (n_in / in_channels)
    return w.to(dtype)


def load_pretrained(encoder: nn.Module, path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Load a torchvision/ImageNet MobileNetV2 checkpoint from a local file into ``encoder``.

    ``classifier.*`` is dropped, the first conv is adapted to the encoder's input channels, and the
    rest loads with ``strict=False``. Returns ``(missing_keys, unexpected_keys)``.
    """
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("classifier.")}
    own = encoder.state_dict()
    if not own.keys() & state.keys():
        example = next(iter(state), "(none)")
        raise CheckpointError(
            f"checkpoint {str(path)!r} has no key of a torchvision MobileNetV2 ('features.N...'); "
            f"found e.g. {example!r}"
        )
    for key, value in state.items():
        if key not in own or own[key].shape == value.shape:
            continue
        want = own[key].shape
        if (
            key == _FIRST_CONV_KEY
            and value.ndim == 4
            and value.shape[:1] + value.shape[2:] == want[:1] + want[2:]
        ):
            state[key] = adapt_input_conv(value, want[1])
            continue
        raise CheckpointError(
            f"checkpoint {str(path)!r}: {key!r} has shape {tuple(value.shape)}, the encoder expects "
            f"{tuple(want)} (another width?)"
        )
    result = encoder.load_state_dict(state, strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)
