"""``infer`` (files, folders and stacks of any size, streamed in bounded batches) and ``export`` (ONNX or
TorchScript that run at any multiple of the network's stride, optionally checked against the eager model).

``infer`` first lists and checks every input (a missing path or a file of the wrong type fails before any
work), then reads frames one at a time through the task (:meth:`~sparseconn.task.Task.iter_frames`: a
multi-page TIFF is a stack of frames), runs consecutive frames of one size in batches of at most
``batch_size`` frames and ``max_memory`` MB of float32 input, and hands each file's predictions, in
order, to :meth:`~sparseconn.task.Task.write_frames`, which writes one output file per input file,
atomically. No more than one batch of input frames is held on the host at a time, so memory does not grow
with the number of frames. On CUDA several batches run at once (``in_flight``, default 4, each on a CUDA
stream of its own: :meth:`~sparseconn.engine.fastpath.FastModel.map`); their inputs and outputs wait on the
device, and each output comes back to the host when its turn to be written comes.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import io
import logging
import math
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparseconn.engine import fastpath
from sparseconn.engine.inference import input_multiple, max_stride, pad_to_multiple
from sparseconn.engine.jobs import RunOptions
from sparseconn.engine.loading import load_model, make_task
from sparseconn.engine.progress import CountProgress
from sparseconn.errors import DataError, SparseconnError
from sparseconn.fileio import atomic_path, check_out_file, check_out_folder, missing_folders, remove_folders
from sparseconn.inputs import op_to_calibrate
from sparseconn.ops import pool_weights
from sparseconn.task import Task

MB = 2**20
"""Bytes in the MB of ``--max-memory``."""
DEFAULT_MAX_MEMORY_MB = 2048.0
FORMATS = ("onnx", "torchscript")
DEFAULT_IN_FLIGHT = 4
"""Batches ``infer`` keeps running at once on CUDA (each on a stream of its own: the demo child at 1024²,
batch 1, on an H200 ran 792-811 frames/s one at a time and 991-1059 with four in flight)."""
EXPORT_TOLERANCE = 1e-4
"""Largest |exported − eager fp32| that ``export --check`` accepts, in output units."""


# --- options ------------------------------------------------------------------------------------------

def _count(value: str | int, option: str, unit: str, alternative: str = "") -> int:
    """A whole number >= 1 of ``unit`` for ``option``; else the one-line error (naming ``alternative`` too)."""
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise SparseconnError(f"{option} must be a whole number of {unit} >= 1{alternative}, got {str(value)!r}")
    return n


def parse_batch_size(value: str | int) -> int:
    """``--batch-size``: a whole number of frames, at least 1."""
    return _count(value, "--batch-size", "frames")


def parse_in_flight(value: str | int | None, device: str) -> int:
    """``--in-flight``: a whole number of batches >= 1, or ``auto`` (None): 4 on CUDA, 1 elsewhere."""
    if value is None or str(value).strip() == "auto":
        return DEFAULT_IN_FLIGHT if device.startswith("cuda") else 1
    return _count(value, "--in-flight", "batches", " or auto")


def parse_max_memory(value: str | float) -> float:
    """``--max-memory``: a positive number of MB (2**20 bytes)."""
    try:
        mb = float(str(value).strip())
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and mb > 0):
        raise SparseconnError(f"--max-memory must be a positive number of MB, got {str(value)!r}")
    return mb


def parse_tolerance(value: str | float) -> float:
    """``--tolerance``: a positive number."""
    try:
        tol = float(str(value).strip())
    except ValueError:
        tol = math.nan
    if not (math.isfinite(tol) and tol > 0):
        raise SparseconnError(f"--tolerance must be a positive number, got {str(value)!r}")
    return tol


def check_engine(engine: str) -> str:
    """``--engine``: one of the fast path's engines."""
    return fastpath.check_engine(engine, "--engine")


# --- infer --------------------------------------------------------------------------------------------

def _expand(inputs: list[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Every input file, in order: files as given, folders' files of ``suffixes`` sorted by name. Checks that
    each exists and is of a type the task reads, and that no two would write the same output file."""
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir()
                           if q.is_file() and q.suffix.lower() in suffixes and not q.name.startswith("."))
            if not found:
                raise DataError(f"{p} holds no {', '.join(suffixes)} files")
            files += found
        elif p.is_file():
            if p.suffix.lower() not in suffixes:
                raise DataError(f"input {str(p)!r} is a {p.suffix or 'suffix-less'} file; expected one of "
                                f"{', '.join(suffixes)}")
            files.append(p)
        else:
            raise DataError(f"input {str(p)!r} does not exist")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise DataError(f"inputs {seen[f.stem]} and {f} would both be written as {f.stem}.* in the output "
                            "folder; infer them into separate --out folders")
        seen[f.stem] = f
    return files


def _outputs(task: Task, files: list[Path], out: Path, force: bool) -> None:
    """Refuse, before any work, outputs that would replace an input file (compared as resolved paths, even
    with ``force``) or, without ``force``, any file already in ``out``.

    A task that names its output type (:attr:`~sparseconn.task.Task.output_suffix`) writes
    ``out/STEM.SUFFIX`` for an input ``STEM.*``; for one that does not, every file ``out/STEM.*`` may be
    the one written."""
    inputs = {f.resolve() for f in files}
    targets: list[tuple[Path, Path]] = []
    for f in files:
        if task.output_suffix is not None:
            found = [out / f"{f.stem}{task.output_suffix}"]
        else:
            found = sorted(q for q in out.glob(f"{glob.escape(f.stem)}.*") if q.stem == f.stem) if out.is_dir() else []
        targets += [(f, t) for t in found]
    for f, t in targets:
        if t.resolve() in inputs:
            raise DataError(f"the output of {f} would be written over the input {t}; choose another --out folder")
    if not force:
        for _, t in targets:
            if t.exists():
                raise DataError(f"{t} already exists; choose another --out folder or pass --force to overwrite it")


def _frames(task: Task, files: list[Path], counts: list[int | None], in_channels: int, max_memory: float
            ) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(file index, frame)`` for every frame of every file in order, then ``(file index, None)`` when the
    file's frames are done; each frame is checked (shape, and size against ``max_memory`` MB) as it is read."""
    cap = int(max_memory * MB)
    for i, f in enumerate(files):
        n = 0
        for frame in task.iter_frames(f):
            n += 1
            x = np.asarray(frame, dtype=np.float32)
            del frame
            where = str(f) if counts[i] == 1 else f"{f} (frame {n})"
            if x.ndim != 3 or x.shape[0] != in_channels or x.size == 0:
                raise DataError(f"{where}: read as an array of shape {x.shape}; the model takes ({in_channels}, H, W) "
                                "with H, W >= 1")
            if x.nbytes > cap:
                c, h, w = x.shape
                raise DataError(f"{where}: one {h}x{w} frame ({c} channel{'s' if c > 1 else ''}, float32) takes "
                                f"{x.nbytes / MB:.3g} MB, above --max-memory {max_memory:g} MB; raise --max-memory")
            yield i, x
            del x
        if n == 0:
            raise DataError(f"{f}: holds no frames")
        yield i, None


Marks = list[tuple[int, bool]]
"""(file index, is a frame) of a batch's frames and of the end marks among them, in order."""


def _batches(frames: Iterator[tuple[int, np.ndarray | None]], batch_size: int, cap: int
             ) -> Iterator[tuple[Marks, np.ndarray | None]]:
    """The stream of :func:`_frames` in batches: ``(marks, stacked frames)``, or ``(marks, None)`` for end
    marks with no frames before them.

    Consecutive frames of one shape go together, at most ``batch_size`` of them and ``cap`` bytes; a batch
    goes as soon as it is full (before the next frame is read), or when a frame of another shape comes. A
    file's end mark waits behind the frames before it, and goes at once when none are waiting.
    """
    batch: list[np.ndarray] = []
    marks: Marks = []

    def flush() -> tuple[Marks, np.ndarray]:
        stacked = np.stack(batch)
        batch.clear()
        out = marks.copy()
        marks.clear()
        return out, stacked

    for i, x in frames:
        if x is None:
            if batch:
                marks.append((i, False))
            else:
                yield [(i, False)], None
            continue
        if batch and x.shape != batch[0].shape:
            yield flush()
        batch.append(x)
        marks.append((i, True))
        del x
        if len(batch) >= min(batch_size, cap // batch[0].nbytes):
            yield flush()
    if batch:
        yield flush()


CALIBRATION_FRAMES = 8
"""The most frames ``infer`` calibrates the input op on (:func:`_calibrate`)."""


def _calibrate(net: nn.Module, frames: Iterator[tuple[int, np.ndarray | None]], max_memory: float, device: str
               ) -> str | None:
    """Fit ``net``'s input op to the first frames of ``frames`` (up to :data:`CALIBRATION_FRAMES` of the first
    frame's size, as many as ``max_memory`` MB holds), before the fast path copies the model: the phase
    task's sideband op learns which order holds +φ on this microscope, which need not be the training
    data's. One setup a call: what it finds holds for every frame. Nothing is read for an op that has
    nothing to fit. What it found, or None."""
    op = op_to_calibrate(net, force=True)
    if op is None:
        return None
    kept: list[np.ndarray] = []
    for _, x in frames:
        if x is None or (kept and x.shape != kept[0].shape):
            continue
        kept.append(x)
        if len(kept) >= min(CALIBRATION_FRAMES, max(1, int(max_memory * MB // x.nbytes))):
            break
    if not kept:
        return None
    with torch.no_grad():
        return op.calibrate(torch.from_numpy(np.stack(kept)).to(device))


class _Runner:
    """Runs batches (B, C, H, W) on the device through the fast model, built from the first batch."""

    def __init__(self, net: nn.Module, device: str, engine: str, frames: int | None,
                 log: Callable[[str], None] | None, progress: CountProgress, bf16: bool | None = None) -> None:
        self.net, self.device, self.engine, self.frames, self.bf16 = net, device, engine, frames, bf16
        self.log, self.progress = log, progress
        self.fast: fastpath.FastModel | None = None
        self.stride = input_multiple(net)

    def _prepare(self, x: torch.Tensor) -> None:
        example, _ = pad_to_multiple(x, self.stride)
        fast = fastpath.optimize(self.net, device=self.device, engine=self.engine, example=example,
                                 frames=self.frames, bf16=self.bf16)
        self.fast, self.stride = fast, fast.stride
        if self.log is not None:
            self.log(f"engine: {fast.description}")

    def predict(self, batches: Iterator[tuple[Marks, np.ndarray | None]], in_flight: int = 1
                ) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(file index, prediction)`` for every frame of ``batches`` and ``(file index, None)`` for every end
        mark, in order, with up to ``in_flight`` batches running at once (:class:`fastpath.InFlight`). Each
        output passes as soon as it and everything before it are done (with one batch in flight: before the
        next batch is read)."""
        waiting: deque[tuple[Marks, tuple[int, int] | None]] = deque()  # marks, and the size of a batch's frames
        pipe: fastpath.InFlight | None = None

        def passed(y: torch.Tensor | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
            """The end marks at the head of the queue, then (given ``y``) the oldest batch's predictions."""
            while waiting and waiting[0][1] is None:
                for i, _ in waiting.popleft()[0]:
                    yield i, None
            if y is None:
                return
            marks, (h, w) = waiting.popleft()
            preds = deque(y[..., :h, :w].cpu().numpy())
            del y
            self.progress.advance(len(preds))
            for i, is_frame in marks:
                yield i, (preds.popleft() if is_frame else None)
            yield from passed()

        for marks, stacked in batches:
            if stacked is None:
                waiting.append((marks, None))
                yield from passed()
                continue
            x = torch.from_numpy(stacked).to(self.device)
            del stacked  # the host holds one batch of frames at a time
            if self.fast is None:
                self._prepare(x)
            if pipe is None:
                pipe = fastpath.InFlight(self.fast, in_flight)
            padded, size = pad_to_multiple(x, self.stride)
            del x
            waiting.append((marks, size))
            y = pipe.put(padded)
            if y is not None:
                yield from passed(y)
        for y in pipe.drain() if pipe is not None else ():
            yield from passed(y)
        yield from passed()


def _predictions_of(stream: Iterator[tuple[int, np.ndarray | None]], index: int, source: Path, frames: int | None
                    ) -> Iterator[np.ndarray]:
    """The predictions of file ``index`` (``source``, of ``frames`` frames) from the shared stream, up to its
    end mark. A prediction with NaN or inf stops the file before it is written: an input the task's checks
    let through but the model cannot handle must not end as a map of NaN and exit code 0."""
    n = 0
    for i, pred in stream:
        if i != index:
            raise RuntimeError(f"infer: a prediction of input {i} came while writing input {index}")
        if pred is None:
            return
        n += 1
        bad = int(pred.size - np.isfinite(pred).sum())
        if bad:
            where = str(source) if frames == 1 else f"{source} (frame {n})"
            raise DataError(f"{where}: the model's prediction holds {bad} NaN or inf values (is the input "
                            "degenerate?); nothing written for this file")
        yield pred


def infer(model: Path, inputs: list[Path], out: Path, opts: RunOptions = RunOptions(), *, batch_size: int = 1,
          max_memory: float = DEFAULT_MAX_MEMORY_MB, engine: str = "auto", in_flight: int | str | None = None,
          precision: str = "auto", calibrate: bool = True, log: Callable[[str], None] | None = None,
          force: bool = False) -> list[Path]:
    """Predict every frame of every input (files or folders) and write one output file per input file.

    Before any frame is read, every input is checked, and so is every output: none may replace an input
    file, and without ``force`` none may replace a file already in ``out``.

    Args:
        batch_size: frames run at once (consecutive frames of one size).
        max_memory: MB of float32 input frames a batch may hold; the batch shrinks to fit, and a frame
            that alone is larger is an error.
        engine: the inference path (:data:`sparseconn.engine.fastpath.ENGINES`), chosen and checked once.
        in_flight: batches running at once on CUDA (``auto``/None: :data:`DEFAULT_IN_FLIGHT`; 1 on the CPU).
        precision: ``auto`` (bf16 where the hardware has it natively), ``fp32`` or ``bf16``
            (:data:`sparseconn.engine.fastpath.PRECISIONS`); the description says which ran, and how far
            from eager fp32.
        calibrate: fit the model's input op to the first batch before any frame runs
            (:meth:`~sparseconn.inputs.InputOp.calibrate`; the phase task's sideband op: which order holds
            +φ on these holograms); False keeps what the op learned in training.
        log: called with the engine's one-line description (and the calibration's, where there is one).
        force: overwrite output files that already exist (never an input file).
    """
    if not inputs:
        raise DataError("no inputs given: expected input files or folders")
    batch_size = parse_batch_size(batch_size)
    max_memory = parse_max_memory(max_memory)
    check_engine(engine)
    in_flight = parse_in_flight(in_flight, opts.device)
    bf16 = fastpath.parse_precision(precision, "--precision")
    fastpath.check_bf16(bf16, engine, opts.device, "--precision bf16")  # before any model is read
    lm = load_model(model)
    task = make_task(lm.cfg)
    files = _expand(inputs, task.input_suffixes)  # check every input before any work
    out = check_out_folder(out)
    _outputs(task, files, out, force)
    counts = [task.frame_count(f) for f in files]
    total = sum(c for c in counts if c is not None) if None not in counts else None
    net = lm.net.to(opts.device).eval()
    progress = CountProgress("infer frames", total, enabled=opts.progress)
    made = missing_folders(out)  # removed again if nothing gets written
    try:
        if calibrate:  # a first pass over the first frames, then the stream from the start
            note = _calibrate(net, _frames(task, files, counts, lm.cfg.space.in_channels, max_memory), max_memory,
                              opts.device)
            if note is not None and log is not None:
                log(f"input op calibrated on the first frames: {note}")
        runner = _Runner(net, opts.device, engine, total, log, progress, bf16)
        frames = _frames(task, files, counts, lm.cfg.space.in_channels, max_memory)
        stream = runner.predict(_batches(frames, batch_size, int(max_memory * MB)), in_flight)
        written = []
        for i, f in enumerate(files):
            preds = _predictions_of(stream, i, f, counts[i])
            written.append(task.write_frames(preds, out / f.name))  # the task swaps in its file type
            left = sum(1 for _ in preds)
            if left:
                raise RuntimeError(f"{type(task).__name__}.write_frames wrote {written[-1]} without taking its "
                                   f"last {left} frame(s)")
    except BaseException:
        remove_folders(made)  # the folders this call made, if it left them empty
        raise
    finally:
        progress.close()
    return written


# --- export -------------------------------------------------------------------------------------------

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
    if fmt not in FORMATS:
        raise SparseconnError(f"--format must be onnx or torchscript, got {fmt!r}")
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
