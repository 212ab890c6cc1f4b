"""Full-size inference at any input size: pad to the network's stride, run, crop back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def amp_dtype(mode: str, device: str) -> torch.dtype | None:
    """The autocast dtype for an ``amp`` setting on a device (None: full precision)."""
    if mode == "off" or (mode == "auto" and not device.startswith("cuda")):
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or (device.startswith("cuda") and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def max_stride(net: nn.Module) -> int:
    """The padding multiple: the module's own int ``stride`` (every model of :mod:`sparseconn.models`
    has one), else the coarsest stride among its graph nodes, else 32."""
    stride = getattr(net, "stride", None)
    if isinstance(stride, int) and not isinstance(stride, bool):
        return stride
    graph = getattr(net, "graph", None)
    if graph is None:
        return 32
    return max((a["stride"] for _, a in graph.nodes(data=True) if a.get("stride")), default=1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) on the bottom/right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    # Reflection keeps fringe statistics near the border; it needs the pad to be smaller than the side.
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, multiple: int | None = None, amp: torch.dtype | None = None
            ) -> torch.Tensor:
    """Run ``net`` on (B, C, H, W) of any size; the output is cropped back to (H, W)."""
    with autocast(str(x.device), amp):
        return predict_with(net, x, multiple or max_stride(net))


@torch.no_grad()
def predict_with(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Run ``fn`` (a network, or a prepared copy such as a :class:`~sparseconn.engine.fastpath.FastModel`)
    on (B, C, H, W) of any size: padded to multiples of ``multiple``, the output cropped back to (H, W)."""
    padded, (h, w) = pad_to_multiple(x, multiple)
    return fn(padded)[..., :h, :w].float()
