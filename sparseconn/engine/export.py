"""``export``: a trained model as ONNX or TorchScript that runs at any multiple of the network's stride (or,
``fixed_size``, at one size), optionally run and checked against the eager fp32 model before the file is
written (atomically).

``infer`` (streamed inference on files and folders) is :mod:`sparseconn.engine.infer`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparseconn.engine._values import positive_number
from sparseconn.engine.inference import input_multiple, max_stride
from sparseconn.engine.loading import load_model, make_task
from sparseconn.errors import SparseconnError
from sparseconn.fileio import atomic_path, check_out_file
from sparseconn.ops import pool_weights

FORMATS = ("onnx", "torchscript")
EXPORT_TOLERANCE = 1e-4
"""Largest |exported − eager fp32| that ``export --check`` accepts, in output units."""


def check_format(fmt: str) -> str:
    """``--format``: one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise SparseconnError(f"--format must be {' or '.join(FORMATS)}, got {fmt!r}")
    return fmt


def parse_tolerance(value: str | float) -> float:
    """``--tolerance``: a positive number."""
    return positive_number(value, "--tolerance")


def _require(*packages: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise SparseconnError(f"this needs the {', '.join(missing)} package(s): pip install 'sparseconn[export]' "
                              "onnxruntime")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters' progress lines, warnings and log messages kept off the user's terminal."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # torch.jit.trace is deprecated but still the portable format
            yield
    finally:
        logger.setLevel(level)


def _adaptive_avg_pool2d(x: torch.Tensor, output_size: list[int]) -> torch.Tensor:
    """Adaptive average pooling as two products with bin-averaging matrices, for an export with free sizes:
    torch's own decomposition fixes the bins' longest length at the traced size (a 3x3 ground pool of a
    16-px feature map then averages the wrong pixels)."""
    oh, ow = output_size
    rows = pool_weights(x.shape[-2], oh, x)
    cols = pool_weights(x.shape[-1], ow, x)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


_FREE_SIZE_DECOMPOSITIONS = {torch.ops.aten.adaptive_avg_pool2d.default: _adaptive_avg_pool2d,
                             torch.ops.aten._adaptive_avg_pool2d.default: _adaptive_avg_pool2d}


def _export_onnx(net: nn.Module, x: torch.Tensor, stride: int, path: Path, free: bool = True) -> None:
    """ONNX with a free batch size and free height and width in multiples of ``stride`` (``free``), or for
    the shape of ``x`` only: symbolic sizes make the export 5-10 times slower (minutes for a MobileNetV2
    child on 2 CPU cores)."""
    import onnx
    from torch.export import Dim

    dims = ({0: Dim("batch"), 2: stride * Dim("height"), 3: stride * Dim("width")},) if free else None
    try:
        with _quiet_exporter():
            program = torch.export.export(net, (x,), dynamic_shapes=dims)
            program = program.run_decompositions(_FREE_SIZE_DECOMPOSITIONS)
            program = torch.onnx.export(program, (x,), input_names=["input"], output_names=["output"],
                                        dynamo=True, verbose=False)
    except Exception as exc:  # the exporters raise many types; the first line says what failed
        raise SparseconnError(f"the model cannot be exported to ONNX with free sizes: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}") from exc
    proto = program.model_proto
    # The exporter annotates some intermediate shapes wrongly under free sizes (a one-sided DFT's output
    # keeps its input's width); onnxruntime plans buffers by them and fails. They are optional: drop them.
    del proto.graph.value_info[:]
    onnx.save_model(proto, str(path))


def _export_torchscript(net: nn.Module, x: torch.Tensor, path: Path) -> None:
    """TorchScript by ``torch.jit.trace``: sizes are recorded as operations on the input's shape, so the
    file runs at other sizes (``export --check`` verifies one); ``torch.jit.script`` cannot compile the
    registry-built networks."""
    try:
        with _quiet_exporter():
            traced = torch.jit.trace(net, x, check_trace=False)
    except Exception as exc:
        raise SparseconnError(f"the model cannot be traced to TorchScript: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}") from exc
    traced.save(str(path))


def _runner(fmt: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The exported file at ``path`` as a function of a (B, C, H, W) float32 array."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda a: session.run(None, {"input": a})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated like trace, and still reads the files
        module = torch.jit.load(str(path))

    def run(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(a)).numpy()

    return run


def check_sizes(size: tuple[int, int], stride: int) -> list[tuple[int, int]]:
    """The sizes ``export --check`` runs: the traced one, and about 1.5 times it rounded to the stride."""
    h, w = size
    grow = (max(stride, round(1.5 * h / stride) * stride), max(stride, round(1.5 * w / stride) * stride))
    return [size, grow if grow != size else (h + stride, w + stride)]


def export(model: Path, fmt: str, out: Path, size: tuple[int, int] = (256, 256), *, check: bool = False,
           tolerance: float = EXPORT_TOLERANCE, log: Callable[[str], None] | None = None,
           fixed_size: bool = False, force: bool = False) -> Path:
    """Export the model as ONNX or TorchScript for inputs of any height and width that are multiples of the
    network's stride (and any batch size in ONNX), traced at ``size`` padded to the stride (at least two
    strides a side).

    With ``check``, the file is run (onnxruntime on the CPU, or ``torch.jit.load``) on the task's example
    inputs at the traced size and about 1.5 times it, and compared with the eager fp32 model; the largest
    absolute difference at each size goes to ``log``, and one above ``tolerance`` is an error (the file is
    then not written).

    With ``fixed_size`` an ONNX file takes one frame of ``size`` only, and is written in a fraction of the
    time; ``check`` then runs that size. A model that runs at any size (``any_size``: every GraphNet and the
    U-Net) is traced at ``size`` itself, its padding after the input op inside the file, so frames of any
    ``size`` go in unpadded; other models at ``size`` padded to the stride.

    ``out`` is checked before the export: an existing file is replaced only with ``force``, and never
    when it is the checkpoint the model is read from.
    """
    check_format(fmt)
    if len(size) != 2 or min(size) < 1:
        raise SparseconnError(f"--size must be two positive integers (H W), got {' '.join(map(str, size))}")
    tolerance = parse_tolerance(tolerance)
    if fmt == "onnx":
        _require("onnx", "onnxscript", *(("onnxruntime",) if check else ()))
    out = check_out_file(out, force=force)
    lm = load_model(model)
    if out.resolve() == Path(lm.path).resolve():
        raise SparseconnError(f"--out {str(out)!r} is the checkpoint the model is read from; choose another --out")
    net = lm.net.cpu().eval()
    stride = max_stride(net)
    fixed = fixed_size and fmt == "onnx"
    if fixed and input_multiple(net) == 1:
        traced = tuple(size)  # the model pads after its input op: the file takes the raw frame as it comes
    else:
        traced = tuple(max(2 * stride, n + (-n) % stride) for n in size)
    # two frames: the batch size stays free
    x = torch.randn(1 if fixed else 2, lm.cfg.space.in_channels, *traced)
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            _export_onnx(net, x, stride, tmp, free=not fixed)
        else:
            _export_torchscript(net, x, tmp)
        if check:
            task = make_task(lm.cfg)
            run = _runner(fmt, tmp)
            cases = [(traced, 1)] if fixed else list(zip(check_sizes(traced, stride), (1, 2), strict=True))
            for (h, w), b in cases:
                batch = np.stack([task.example_input((h, w), seed=s) for s in range(b)]).astype(np.float32)
                with torch.no_grad():
                    ref = net(torch.from_numpy(batch)).float().numpy()
                got = run(batch)
                if got.shape != ref.shape:
                    raise SparseconnError(f"export check failed: the {fmt} model gives shape {got.shape} at "
                                          f"{h}x{w}, the eager model {ref.shape}; nothing written")
                err = float(np.abs(got - ref).max())
                if not err <= tolerance:  # also catches NaN
                    raise SparseconnError(f"export check failed: the {fmt} model differs from eager fp32 by "
                                          f"{err:.2e} at {h}x{w}, above --tolerance {tolerance:g}; nothing written")
                if log is not None:
                    log(f"check {h}x{w} (batch {b}): max abs error {err:.1e} against eager fp32")
    return out