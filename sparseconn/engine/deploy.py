"""``infer`` (any input size, files or folders) and ``export`` (ONNX or TorchScript)."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch

from sparseconn.engine.inference import max_stride, pad_to_multiple, predict
from sparseconn.engine.runs import RunOptions, load_model, make_task
from sparseconn.errors import DataError, SparseconnError
from sparseconn.fileio import atomic_path


def _expand(inputs: list[Path], suffixes: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes and not q.name.startswith("."))
            if not found:
                raise DataError(f"{p} holds no {', '.join(suffixes)} files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"input {str(p)!r} does not exist")
    return files


def infer(model: Path, inputs: list[Path], out: Path, opts: RunOptions = RunOptions()) -> list[Path]:
    """Predict every input (files or folders) and write one output file each into ``out``."""
    lm = load_model(model)
    task = make_task(lm.cfg, lm.task_cfg)
    files = _expand(inputs, task.input_suffixes)  # check every input before any work
    arrays = [task.read_input(f) for f in files]
    net = lm.net.to(opts.device).eval()
    written = []
    for f, x in zip(files, arrays, strict=True):
        y = predict(net, torch.from_numpy(x)[None].to(opts.device))[0].cpu().numpy()
        written.append(task.write_output(y, Path(out) / f.name))  # the task swaps in its file type
    return written


def export(model: Path, fmt: str, out: Path, size: tuple[int, int] = (256, 256)) -> Path:
    """Export the model for inputs of ``size`` (padded to the network stride) as ONNX or TorchScript."""
    lm = load_model(model)
    net = lm.net.cpu().eval()
    x, _ = pad_to_multiple(torch.randn(1, lm.cfg.space.in_channels, *size), max_stride(net))
    out = Path(out)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace is deprecated but still the portable format
            traced = torch.jit.trace(net, x, check_trace=False)
        with atomic_path(out) as tmp:
            traced.save(str(tmp))
        return out
    if fmt == "onnx":
        if importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnx") is None:
            raise SparseconnError("ONNX export needs the 'onnx' and 'onnxscript' packages: "
                                  "pip install 'sparseconn[export]'")
        with atomic_path(out) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), str(tmp), input_names=["input"], output_names=["output"], dynamo=True,
                              external_data=False)
        return out
    raise SparseconnError(f"--format must be onnx or torchscript, got {fmt!r}")
