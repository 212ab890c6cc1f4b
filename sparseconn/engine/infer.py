"""``infer``: a trained model run on files, folders and stacks of any size, streamed in bounded batches.

``infer`` first lists and checks every input (a missing path or a file of the wrong type fails before any
work), then reads frames one at a time through the task (:meth:`~sparseconn.task.Task.iter_frames`: a
multi-page TIFF is a stack of frames), runs consecutive frames of one size in batches of at most
``batch_size`` frames and ``max_memory`` MB of float32 input, and hands each file's predictions, in
order, to :meth:`~sparseconn.task.Task.write_frames`, which writes one output file per input file,
atomically. No more than one batch of input frames is held on the host at a time, so memory does not grow
with the number of frames. On CUDA several batches run at once (``in_flight``, default 4, each on a CUDA
stream of its own: :meth:`~sparseconn.engine.fastpath.FastModel.map`); their inputs and outputs wait on the
device, and each output comes back to the host when its turn to be written comes. Before the stream, the
model's input op is fitted to the first frames (:func:`_calibrate`).

``export`` (ONNX, TorchScript) is :mod:`sparseconn.engine.export`; padding to the stride and cropping back
are :mod:`sparseconn.engine.inference`'s.
"""

from __future__ import annotations

import glob
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparseconn.engine import fastpath
from sparseconn.engine._values import positive_number, whole_number
from sparseconn.engine.inference import input_multiple, pad_to_multiple
from sparseconn.engine.jobs import RunOptions
from sparseconn.engine.loading import load_model, make_task
from sparseconn.engine.progress import CountProgress
from sparseconn.errors import DataError
from sparseconn.fileio import check_out_folder, missing_folders, remove_folders
from sparseconn.inputs import op_to_calibrate
from sparseconn.task import Task

MB = 2**20
"""Bytes in the MB of ``--max-memory``."""
DEFAULT_MAX_MEMORY_MB = 2048.0
DEFAULT_IN_FLIGHT = 4
"""Batches ``infer`` keeps running at once on CUDA (each on a stream of its own: the demo child at 1024²,
batch 1, on an H200 ran 792-811 frames/s one at a time and 991-1059 with four in flight)."""


# --- options ------------------------------------------------------------------------------------------

def parse_batch_size(value: str | int) -> int:
    """``--batch-size``: a whole number of frames, at least 1."""
    return whole_number(value, "--batch-size", "frames")


def parse_in_flight(value: str | int | None, device: str) -> int:
    """``--in-flight``: a whole number of batches >= 1, or ``auto`` (None): 4 on CUDA, 1 elsewhere."""
    if value is None or str(value).strip() == "auto":
        return DEFAULT_IN_FLIGHT if device.startswith("cuda") else 1
    return whole_number(value, "--in-flight", "batches", " or auto")


def parse_max_memory(value: str | float) -> float:
    """``--max-memory``: a positive number of MB (2**20 bytes)."""
    return positive_number(value, "--max-memory", "MB")


def check_engine(engine: str) -> str:
    """``--engine``: one of the fast path's engines."""
    return fastpath.check_engine(engine, "--engine")


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
