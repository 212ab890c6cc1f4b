"""``sparseconn profile``: parameters, MACs, connections (and latency) of a supernet, a child or a fixed
model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sparseconn.cli.common import app, handle_errors
from sparseconn.engine.config import resolve_config
from sparseconn.engine.devices import resolve_device
from sparseconn.errors import SparseconnError


def profile_source(source: Path, size: tuple[int, int], batch: int = 1, latency: bool = False, runs: int = 10,
                   device: str = "cpu") -> dict:
    """Profile the supernet of a config file (its fixed model when it sets ``model:``), or the child of an
    ``architecture.json``."""
    from sparseconn.architecture import Architecture
    from sparseconn.config import load_space_config, read_yaml
    from sparseconn.encoders import skip_pretrained
    from sparseconn.network import build_child, build_supernet
    from sparseconn.profiling import count_params, measure_latency, profile
    from sparseconn.space import SearchSpace

    if size[0] < 1 or size[1] < 1:
        raise SparseconnError(f"--size must be positive, got {size[0]} {size[1]}")
    if source.is_file() and source.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise SparseconnError(f"{source} is a {source.suffix or 'suffix-less'} file; profile takes a config YAML, "
                              "a bundled config's name or an architecture.json")
    with skip_pretrained():  # counting and timing need no pretrained weights (nor their download)
        if source.suffix == ".json":
            arch = Architecture.load(source)
            net, kind, in_ch = build_child(arch), "child", arch.space.in_channels
        elif read_yaml(source).get("model") is not None:  # a fixed model's run config
            from sparseconn.engine.config import load_run_config
            from sparseconn.engine.loading import make_task
            from sparseconn.models import build_model

            cfg = load_run_config(source)
            assert cfg.model is not None  # the file sets it
            net = build_model(cfg.model.name, cfg.model.params, cfg.space, make_task(cfg))
            kind, in_ch = cfg.model.name, cfg.space.in_channels
        else:
            cfg = load_space_config(source)
            net, kind, in_ch = build_supernet(SearchSpace(cfg)), "supernet", cfg.in_channels
    shape = (batch, in_ch, *size)
    if getattr(net, "traceable", True):
        prof = profile(net, shape, latency=latency, runs=runs, device=device).as_dict()
    else:  # NumPy inside (the classical pipeline): no MACs to count
        prof = {"params": count_params(net), "macs": None, "connections": getattr(net, "num_connections", None),
                "input_shape": shape, "latency_ms": None, "device": None}
        if latency:
            prof.update(latency_ms=measure_latency(net, shape, runs=runs, device=device), device=str(device))
    return {"source": str(source), "model": kind, **prof}


@app.command("profile")
@handle_errors
def profile_cmd(
    source: Path = typer.Argument(..., help="A config YAML (its supernet, or its `model:`), a bundled config's name "
                                            "(e.g. phase_retrieval) or an architecture.json (its child)."),
    size: tuple[int, int] = typer.Option((1024, 1024), "--size", help="Input height and width."),
    batch: int = typer.Option(1, "--batch", min=1),
    latency: bool = typer.Option(False, "--latency", help="Also time forward passes (median)."),
    runs: int = typer.Option(10, "--runs", min=1),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Parameters, multiply-accumulates and connection count at an input size."""
    source = resolve_config(source)
    out = profile_source(source, size, batch, latency, runs, resolve_device(device))
    if as_json:
        typer.echo(json.dumps(out))
        return
    table = Table(title=f"{out['model']} of {source}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("input", " x ".join(map(str, out["input_shape"])))
    table.add_row("parameters", "– (nothing learned)" if out["params"] == 0 else f"{out['params'] / 1e6:.3f} M")
    table.add_row("MACs", "not counted (NumPy)" if out["macs"] is None else f"{out['macs'] / 1e9:.3f} G")
    table.add_row("connections", "–" if out["connections"] is None else str(out["connections"]))
    if out["latency_ms"] is not None:
        table.add_row(f"latency ({out['device']})", f"{out['latency_ms']:.1f} ms")
    Console().print(table)
