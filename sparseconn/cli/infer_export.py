"""``sparseconn infer`` and ``sparseconn export``: a trained model run on files, or written as ONNX or
TorchScript (the work: :mod:`sparseconn.engine.infer` and :mod:`sparseconn.engine.export`)."""

from __future__ import annotations

from pathlib import Path

import typer

from sparseconn.cli._runopts import DEVICE, QUIET, run_options
from sparseconn.cli.common import app, handle_errors


@app.command("infer")
@handle_errors
def infer_cmd(model: Path = typer.Argument(..., help="A run folder or checkpoint."),
              inputs: list[Path] = typer.Argument(..., help="Input files or folders (a multi-page TIFF is a stack)."),
              out: Path = typer.Option(..., "--out", "-o", help="Output folder."), device: str = DEVICE,
              batch_size: str = typer.Option("1", "--batch-size", metavar="N",
                                             help="Frames run at once (consecutive frames of one size)."),
              max_memory: str = typer.Option("2048", "--max-memory", metavar="MB",
                                             help="Float32 input frames held at once, in MB: the batch shrinks "
                                                  "to fit."),
              engine: str = typer.Option("auto", "--engine",
                                         help="auto, reference, eager, compiled or onnxruntime (checked against "
                                              "eager fp32)."),
              in_flight: str = typer.Option("auto", "--in-flight", metavar="N",
                                            help="Batches running at once on CUDA, each on a stream of its own "
                                                 "(auto: 4 on CUDA, 1 on the CPU)."),
              precision: str = typer.Option("auto", "--precision",
                                            help="auto (bf16 where the hardware has it: CUDA, CPUs with AVX-512 "
                                                 "BF16 or AMX), fp32 or bf16."),
              calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                             help="Fit the input op to the first frames (the phase task: which "
                                                  "sideband holds +φ on this microscope); off: keep what it "
                                                  "learned in training."),
              force: bool = typer.Option(False, "--force",
                                         help="Overwrite output files that already exist in --out (never an "
                                              "input file)."),
              quiet: bool = QUIET) -> None:
    """Run a trained model on inputs of any size, streamed; one output file per input, in the task's format
    (phase maps: float32 TIFF in radians; segmentation: palette PNG label maps). An output that would
    replace an input is refused, and so is one that exists already unless --force."""
    from sparseconn.engine.fastpath import parse_precision
    from sparseconn.engine.infer import check_engine, infer, parse_batch_size, parse_in_flight, parse_max_memory

    n, mb, engine = parse_batch_size(batch_size), parse_max_memory(max_memory), check_engine(engine)
    parse_precision(precision, "--precision")
    opts = run_options(device, False, quiet)
    written = infer(model, inputs, out, opts, batch_size=n, max_memory=mb, engine=engine,
                    in_flight=parse_in_flight(in_flight, opts.device), precision=precision, calibrate=calibrate,
                    log=typer.echo, force=force)
    typer.echo(f"wrote {len(written)} file(s) to {out}")


@app.command("export")
@handle_errors
def export_cmd(model: Path = typer.Argument(..., help="A run folder or checkpoint."),
               fmt: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
               out: Path = typer.Option(None, "--out", "-o",
                                        help="Output file (default: model.onnx or model.torchscript.pt in the run "
                                             "folder, or beside the checkpoint file given)."),
               size: tuple[int, int] = typer.Option((256, 256), "--size",
                                                    help="Input size (H W) to trace at; the file runs at any "
                                                         "multiple of the stride."),
               check: bool = typer.Option(False, "--check",
                                          help="Run the file at two sizes and compare with the eager model."),
               tolerance: str = typer.Option("1e-4", "--tolerance", metavar="TOL",
                                             help="Largest max abs error --check accepts."),
               fixed_size: bool = typer.Option(False, "--fixed-size",
                                               help="ONNX for one frame of --size only (much quicker to "
                                                    "export; runtimes such as TensorRT prefer it); the frame "
                                                    "goes in unpadded, at any --size."),
               force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
               ) -> None:
    """Export a trained model as ONNX or TorchScript for any input size."""
    from sparseconn.engine.export import check_format, export, parse_tolerance

    check_format(fmt)
    tol = parse_tolerance(tolerance)
    base = model if model.is_dir() else model.parent
    target = out or base / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    written = export(model, fmt, target, size, check=check, tolerance=tol, log=typer.echo, fixed_size=fixed_size,
                     force=force)
    typer.echo(f"wrote {written}")
