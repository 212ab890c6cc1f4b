"""``sparseconn profile``: parameters, MACs, connections (and latency) of a supernet or a child."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sparseconn.cli._common import app, handle_errors, resolve_device
from sparseconn.errors import SparseconnError


def profile_source(source: Path, size: tuple[int, int], batch: int = 1, latency: bool = False, runs: int = 10,
                   device: str = "cpu") -> dict:
    """Profile the supernet of a config file, or the child of an ``architecture.json``."""
    from sparseconn.architecture import Architecture
    from sparseconn.config import load_space_config
    from sparseconn.network import build_child, build_supernet
    from sparseconn.profiling import profile
    from sparseconn.space import SearchSpace

    if size[0] < 1 or size[1] < 1:
        raise SparseconnError(f"--size must be positive, got {size[0]} {size[1]}")
    if source.suffix == ".json":
        arch = Architecture.load(source)
        net, kind, in_ch = build_child(arch), "child", arch.space.in_channels
    else:
        cfg = load_space_config(source)
        net, kind, in_ch = build_supernet(SearchSpace(cfg)), "supernet", cfg.in_channels
    prof = profile(net, (batch, in_ch, *size), latency=latency, runs=runs, device=device)
    return {"source": str(source), "model": kind, **prof.as_dict()}


@app.command("profile")
@handle_errors
def profile_cmd(
    source: Path = typer.Argument(..., help="A config YAML (its supernet) or an architecture.json (its child)."),
    size: tuple[int, int] = typer.Option((1024, 1024), "--size", help="Input height and width."),
    batch: int = typer.Option(1, "--batch", min=1),
    latency: bool = typer.Option(False, "--latency", help="Also time forward passes (median)."),
    runs: int = typer.Option(10, "--runs", min=1),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Parameters, multiply-accumulates and connection count at an input size."""
    out = profile_source(source, size, batch, latency, runs, resolve_device(device))
    if as_json:
        typer.echo(json.dumps(out))
        return
    table = Table(title=f"{out['model']} of {source}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("input", " x ".join(map(str, out["input_shape"])))
    table.add_row("parameters", f"{out['params'] / 1e6:.3f} M")
    table.add_row("MACs", f"{out['macs'] / 1e9:.3f} G")
    table.add_row("connections", str(out["connections"]))
    if out["latency_ms"] is not None:
        table.add_row(f"latency ({out['device']})", f"{out['latency_ms']:.1f} ms")
    Console().print(table)
