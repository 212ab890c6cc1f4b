"""Input ops: the fixed, parameter-free first layer that turns a raw input into the encoder's input.

An input op belongs to the network, so training, evaluation, ``infer``, latency figures and exported
models all see the same transform (a normalisation done in a data loader is easy to forget at
inference time). The contract::

    @register_input_op("my_input")
    class MyInput(InputOp):
        @classmethod
        def channels(cls, in_channels: int, **params) -> int: ...   # the encoder's input channels
        def __init__(self, in_channels: int, **params): ...
        def forward(self, x): ...                                   # (B, C_in, H, W) -> (B, C_out, H, W)
        compilable = False          # optional: the CPU fast path's torch.compile leaves the op eager ...
        def compile_parts(self): ...  # ... and lets it compile what of it pays (see InputOp)
        calibrated: bool            # optional: False until calibrate(x) has fitted the op to the data
        def calibrate(self, x): ...  # optional: e.g. which sideband holds +φ for this microscope
        def finish(self, y, z): ...  # optional, eval mode: the head's output y made final with z = forward(x)
        def set_target_scale(self, scale): ...  # optional: the task's unit of the head's output, for finish

``channels`` is a classmethod so a search space can size its encoder before any module exists (as
:meth:`sparseconn.encoders.Encoder.feature_info` does). Tasks register their own input ops (the phase
task's FFT sideband demodulation); the core ships ``identity`` and ``standardise``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparseconn.contracts import check_params
from sparseconn.registry import Registry, make_register


class InputOp(nn.Module):
    """Base class of input ops: same spatial size out as in; no learnable parameters by convention."""

    compilable: bool = True
    """False: the fast path's ``compiled`` engine runs this op eagerly on the CPU (e.g. FFT layers that
    inductor compiles into slower code than eager there); on CUDA every op compiles."""

    def compile_parts(self) -> str | None:
        """For an op that is not :attr:`compilable`: compile the parts of it that do pay, for inference.

        The fast path's ``compiled`` engine calls this on its own copy of the model, on the CPU, before the
        first call. Return a few words for the engine's description, or None (the default: nothing is
        compiled). The op must still give the same output, within float32 rounding (the engine checks).
        """
        return None

    @property
    def calibrated(self) -> bool:
        """Whether the op has what it takes from the data (default: an op takes nothing, so True). Training
        calls :meth:`calibrate` on the first training items of an op that is not, before the first step."""
        return True

    def calibrate(self, x: torch.Tensor) -> str | None:
        """Fit what the op takes from the data itself to raw inputs (B, C, H, W), e.g. the phase task's
        sideband op learns which of the two orders holds +φ on this microscope. What it fits must be module
        state (buffers) so checkpoints and exports keep it. Called by training on an op that is not
        :attr:`calibrated` (its first training items) and by ``infer`` on each call's first frames (unless
        ``--no-calibrate``); see :func:`op_to_calibrate`. Return a few words on what was found, or None (the
        default: nothing to fit)."""
        return None

    @classmethod
    def channels(cls, in_channels: int, **params: Any) -> int:
        """Channels of the op's output for ``in_channels`` raw channels (default: unchanged)."""
        return in_channels

    def finish(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The prediction made final: the head's output ``y`` (B, K, H, W) with the op's own output ``z``
        (B, C, H, W) on the same input, both at the input's size. Called by the network in eval mode only
        (:func:`finished_output`): training learns the head's output itself, since a finish that puts a
        measurement in its place leaves it no gradient. For an op that measures the target up to an
        ambiguity, e.g. the phase task's sideband op, whose wrapped phase the prediction then only has to
        unwrap. Default: ``y`` unchanged."""
        return y

    def set_target_scale(self, scale: float) -> None:
        """Keep the task's :attr:`~sparseconn.task.Task.target_scale` (what the head's output 1 stands for)
        where :meth:`finish` needs it, as module state (a buffer), so checkpoints and exports keep it.
        Called by training before its first step. Default: nothing."""

    @property
    def finishes(self) -> bool:
        """Whether :meth:`finish` does anything (False: the network skips the call)."""
        return type(self).finish is not InputOp.finish

    def __init__(self, in_channels: int, **params: Any) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = type(self).channels(in_channels, **params)


INPUT_OPS: Registry[type[InputOp]] = Registry("input op")
register_input_op = make_register(INPUT_OPS)


def export_tracing() -> bool:
    """Whether ``torch.export`` (which the ONNX exporter runs) is tracing, and not ``torch.compile``.

    Read from the flag that ``torch.export`` sets, not from ``torch.compiler.is_exporting()``: before
    PyTorch 2.13, dynamo answered that call with True under every ``torch.compile``, so compiled models
    took the export forms (the CUDA fast path on PyTorch 2.11 ran the sideband layer's DFTs in float64 and
    the detrend's solves as products with one-hot matrices: about 950 kernels a frame where eager launched
    657)."""
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    return torch.compiler.is_exporting() if flag is None else bool(flag)


def exporting() -> bool:
    """Whether an op is being traced for an export (``torch.export``, which the ONNX exporter runs, or
    TorchScript): sizes are then symbols, so an op builds size-dependent constants in the graph instead
    of caching them, and may take export-friendly forms of a few ops; eager and compiled runs keep theirs
    (:func:`export_tracing`)."""
    return export_tracing() or torch.jit.is_tracing()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) on the bottom/right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    # Reflection keeps image statistics near the border; it needs the pad to be smaller than the side.
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def padded_input(op: InputOp, x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The encoder's input: ``op`` on the raw input (B, C, H, W) at its own size, then padded to multiples of
    ``multiple`` (the network's stride); returns it and the original (H, W).

    The op sees the input unpadded: a reflected border is not a reflected signal after every transform.
    An FFT demodulation of a hologram padded by reflection gets the mirrored carrier in the pad, and the
    phase-retrieval child trained on multiples of 32 then put 2-5 rad ridges along a 300x420 frame's padded
    borders (1.0 rad RMSE against 0.13 for the same fields run whole at 320x448 and cropped)."""
    return pad_to_multiple(op(x), multiple)


def crop_output(y: torch.Tensor, size: tuple[int, int], padded: tuple[int, ...]) -> torch.Tensor:
    """A network's output (B, C, h, w), computed at the ``padded`` size, cropped to what the input's ``size``
    (H, W) covers: (H, W) for a full-resolution output (a head's), ``⌈H / s⌉ x ⌈W / s⌉`` for one at stride
    ``s`` (a headless network's feature), as an unpadded stride-``s`` encoder would give."""
    if tuple(padded) == tuple(size):
        return y
    keep = []
    for n, p, got in zip(size, padded, y.shape[-2:], strict=True):
        s = p // got if got and p % got == 0 else None
        keep.append(got if s is None else -(-n // s))  # ⌈n / s⌉
    return y[..., : keep[0], : keep[1]]


def finished_output(op: InputOp, y: torch.Tensor, z: torch.Tensor, size: tuple[int, int],
                    training: bool) -> torch.Tensor:
    """A head's output (B, K, H', W'), computed on the op's padded output ``z`` (B, C, H', W'), cropped to
    the input's ``size`` (H, W) and, in eval mode, made final by :meth:`InputOp.finish` with ``z`` cropped
    alike (the pad is at the bottom and right, :func:`pad_to_multiple`)."""
    y = crop_output(y, size, z.shape[-2:])
    if training or not op.finishes:
        return y
    return op.finish(y, z[..., : size[0], : size[1]])


def op_to_calibrate(net: nn.Module, force: bool = False) -> InputOp | None:
    """``net.input_op`` where it takes a setting from the data (it overrides :meth:`InputOp.calibrate`) and is to
    be fitted now: always with ``force`` (``infer``), else only while not yet :attr:`InputOp.calibrated`
    (training). None otherwise, so callers read no data for an op that fits nothing."""
    op = getattr(net, "input_op", None)
    if not isinstance(op, InputOp) or type(op).calibrate is InputOp.calibrate:
        return None
    return op if force or not op.calibrated else None


def input_channels(name: str, in_channels: int, params: dict[str, Any]) -> int:
    """The encoder's input channels behind input op ``name`` (no module is built)."""
    cls = INPUT_OPS.get(name)
    check_params("input op", name, cls, params, skip=1)
    return cls.channels(in_channels, **params)


def resolved_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of input op ``name`` with its defaults filled in: two settings that build the same op
    compare equal (``{}`` and ``{"detrend": 1}`` for the sideband layer)."""
    signature = inspect.signature(INPUT_OPS.get(name).__init__)
    defaults = {k: p.default for k, p in signature.parameters.items()
                if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD}
    return {**defaults, **params}


def build_input_op(name: str, in_channels: int, params: dict[str, Any]) -> InputOp:
    cls = INPUT_OPS.get(name)
    check_params("input op", name, cls, params, skip=1)
    return cls(in_channels, **params)


@register_input_op("identity")
class Identity(InputOp):
    """The raw input, unchanged (the default; what every run before input ops used)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_input_op("standardise")
class Standardise(InputOp):
    """Per-image, per-channel standardisation ``(x − mean) / std`` over H, W.

    Exactly invariant to a gain and an offset of the input (an 8-bit and a 16-bit frame of one scene,
    a brighter lamp, floats in any unit), so a network cannot tie itself to one camera's exposure.
    ``eps`` (relative to the mean absolute value) keeps a constant image finite.
    """

    def __init__(self, in_channels: int, eps: float = 1e-6) -> None:
        super().__init__(in_channels)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        mean = x.mean(dim=(-2, -1), keepdim=True)  # (B, C, 1, 1)
        centred = x - mean
        std = centred.square().mean(dim=(-2, -1), keepdim=True).sqrt()  # (B, C, 1, 1)
        floor = self.eps * (mean.abs() + 1.0)
        return centred / torch.maximum(std, floor)
