"""Full-size inference at any input size: pad to the network's stride (a model that pads itself: not at
all), run, crop back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from sparseconn.inputs import pad_to_multiple

__all__ = ["amp_dtype", "autocast", "input_multiple", "max_stride", "pad_to_multiple", "predict", "predict_with"]


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
    """The network's coarsest stride: the module's own int ``stride`` (every model of :mod:`sparseconn.models`
    has one), else the coarsest stride among its graph nodes, else 32. Exported files take multiples of it;
    raw inputs are padded to it for a model that does not pad itself (:func:`input_multiple`)."""
    stride = getattr(net, "stride", None)
    if isinstance(stride, int) and not isinstance(stride, bool):
        return stride
    graph = getattr(net, "graph", None)
    if graph is None:
        return 32
    return max((a["stride"] for _, a in graph.nodes(data=True) if a.get("stride")), default=1)


def input_multiple(net: nn.Module) -> int:
    """What raw inputs are padded to before ``net`` runs: 1 for a model that runs at any size itself
    (``any_size = True``, as every :class:`~sparseconn.network.GraphNet` and the U-Net: they pad the input
    op's output, not the raw input, see :func:`~sparseconn.inputs.padded_input`), else :func:`max_stride`."""
    return 1 if getattr(net, "any_size", False) is True else max_stride(net)


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, multiple: int | None = None, amp: torch.dtype | None = None
            ) -> torch.Tensor:
    """Run ``net`` on (B, C, H, W) of any size; the output is cropped back to (H, W)."""
    with autocast(str(x.device), amp):
        return predict_with(net, x, multiple or input_multiple(net))


@torch.no_grad()
def predict_with(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Run ``fn`` (a network, or a prepared copy such as a :class:`~sparseconn.engine.fastpath.FastModel`)
    on (B, C, H, W) of any size: padded to multiples of ``multiple``, the output cropped back to (H, W)."""
    padded, (h, w) = pad_to_multiple(x, multiple)
    return fn(padded)[..., :h, :w].float()
