"""``infer``, ``export`` and ``draw``."""

from __future__ import annotations

from pathlib import Path

import typer

from sparseconn.cli._common import app, handle_errors
from sparseconn.cli._runopts import DEVICE, run_options


@app.command("infer")
@handle_errors
def infer_cmd(model: Path = typer.Argument(..., help="A run folder or checkpoint."),
              inputs: list[Path] = typer.Argument(..., help="Input files or folders."),
              out: Path = typer.Option(..., "--out", "-o", help="Output folder."), device: str = DEVICE) -> None:
    """Run a trained model on inputs of any size (phase maps: float32 TIFF in radians)."""
    from sparseconn.engine.deploy import infer

    written = infer(model, inputs, out, run_options(device, False, True))
    typer.echo(f"wrote {len(written)} file(s) to {out}")


@app.command("export")
@handle_errors
def export_cmd(model: Path = typer.Argument(..., help="A run folder or checkpoint."),
               fmt: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
               out: Path = typer.Option(None, "--out", "-o", help="Output file (default: model.onnx / model.pt)."),
               size: tuple[int, int] = typer.Option((256, 256), "--size", help="Input size (H W) to trace at."),
               ) -> None:
    """Export a trained model as ONNX or TorchScript."""
    from sparseconn.engine.deploy import export

    if fmt not in ("onnx", "torchscript"):
        from sparseconn.errors import SparseconnError

        raise SparseconnError(f"--format must be onnx or torchscript, got {fmt!r}")
    base = model if model.is_dir() else model.parent
    target = out or base / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    typer.echo(f"wrote {export(model, fmt, target, size)}")


@app.command("draw")
@handle_errors
def draw_cmd(source: Path = typer.Argument(..., help="A config YAML, an architecture.json or a run folder."),
             out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: beside the source)."),
             formats: str = typer.Option("png,svg,dot,graphml", "--formats", help="Comma-separated formats.")) -> None:
    """Draw the connection graph (Fig. 3 style), weight trajectories, DOT and GraphML."""
    from sparseconn.engine.report import draw_source

    base = out or (source / "figures" if source.is_dir() else source.parent / f"{source.stem}-figures")
    written = draw_source(source, base, tuple(f.strip() for f in formats.split(",") if f.strip()))
    for p in written:
        typer.echo(str(p))
