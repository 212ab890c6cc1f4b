"""``search``, ``prune``, ``train``, ``evaluate`` and ``pipeline``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparseconn.cli._runopts import (
    CONFIG_HELP,
    DEVICE,
    FAST,
    OUT,
    PRINT_CONFIG,
    QUIET,
    RESUME,
    SEED,
    SET,
    run_folder,
    run_options,
    start_run,
)
from sparseconn.cli.common import app, handle_errors
from sparseconn.errors import SparseconnError
from sparseconn.viz.report import format_value


def _echo_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@app.command("search")
@handle_errors
def search_cmd(config: Path = typer.Argument(..., help=CONFIG_HELP),
               out: Path = OUT, device: str = DEVICE, seed: int = SEED, resume: bool = RESUME,
               fast_dev_run: bool = FAST, set_: list[str] = SET, quiet: bool = QUIET,
               show_config: bool = PRINT_CONFIG) -> None:
    """Train the supernet: task loss plus connection regularizers (Eq. 2)."""
    from sparseconn.engine.jobs import search

    started = start_run(config, set_, seed, fast_dev_run, show_config, out, resume)
    if started is None:  # --print-config
        return
    config, cfg = started
    opts = run_options(device, resume, quiet)
    with run_folder(config, out, "search", opts.dist) as out:
        summary = search(cfg, out, opts)
    if opts.dist.is_main:
        typer.echo(f"search finished: best {summary['best']['metric']} {summary['best']['value']} "
                   f"(epoch {summary['best']['epoch']}); run folder {out}")


@app.command("prune")
@handle_errors
def prune_cmd(run: Path = typer.Argument(..., help="A search run folder (or a supernet checkpoint)."),
              threshold: float = typer.Option(None, "--threshold", help="Override prune.threshold."),
              redundancy: bool = typer.Option(None, "--redundancy/--no-redundancy",
                                              help="SparseMask's redundancy clean-ups."),
              which: str = typer.Option(None, "--checkpoint", help="best or last (default: prune.checkpoint)."),
              out: Path = typer.Option(None, "--out", help="Where to write (default: RUN/architecture.json)."),
              force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file.")) -> None:
    """Derive architecture.json from the learned connection weights."""
    from sparseconn.engine.jobs import prune

    arch = prune(run, threshold, redundancy, which, out, force=force)
    typer.echo(f"{len(arch.connections)} of {len(arch.candidates)} connections kept; removed stages: "
               f"{', '.join(arch.removed_stages) or 'none'}")


@app.command("train")
@handle_errors
def train_cmd(config: Path = typer.Argument(..., help=CONFIG_HELP),
              arch: Path = typer.Option(None, "--arch", help="architecture.json of the child to train (not with a "
                                                             "config that sets `model:`)."),
              inherit: Path = typer.Option(None, "--inherit", help="Supernet checkpoint to inherit weights from."),
              out: Path = OUT, device: str = DEVICE, seed: int = SEED, resume: bool = RESUME,
              fast_dev_run: bool = FAST, set_: list[str] = SET, quiet: bool = QUIET,
              show_config: bool = PRINT_CONFIG) -> None:
    """Retrain a child network with the task loss alone (from scratch, or from --inherit; with train.inherit
    in the config, from the search checkpoint beside the architecture file), or train the fixed model of a
    config that sets `model:` (e.g. tasks/phase_retrieval_unet.yaml)."""
    from sparseconn.architecture import Architecture
    from sparseconn.engine.jobs import train, train_model
    from sparseconn.engine.rundir import search_checkpoint

    started = start_run(config, set_, seed, fast_dev_run, show_config, out, resume)
    if started is None:  # --print-config
        return
    config, cfg = started
    if cfg.model is not None:
        if arch is not None or inherit is not None:
            raise SparseconnError(f"{config} sets model: {cfg.model.name!r} (a fixed model); --arch and --inherit "
                                  "are for searched children: drop them, or use a config without `model:`")
        opts = run_options(device, resume, quiet)
        with run_folder(config, out, "train", opts.dist) as out:
            summary = train_model(cfg, out, opts)
        if opts.dist.is_main:
            typer.echo(f"training finished ({summary['epochs']} epochs): best {summary['best']['metric']} "
                       f"{summary['best']['value']}; run folder {out}")
        return
    if arch is None:
        raise SparseconnError(f"train needs --arch ARCHITECTURE.json (the child to retrain), or a config that sets "
                              f"`model:` (a fixed model); {config} sets neither")
    architecture = Architecture.load(arch)
    if cfg.train.inherit and inherit is None:
        # train.inherit in the config: the supernet of the search run that wrote the architecture
        inherit = search_checkpoint(arch.parent)
        if inherit is None:
            raise SparseconnError(f"train.inherit is set but {arch.parent / 'checkpoints'} holds no search "
                                  "checkpoint: pass --inherit SUPERNET.pt or --set train.inherit=false")
    opts = run_options(device, resume, quiet)
    with run_folder(config, out, "train", opts.dist) as out:
        summary = train(cfg, architecture, out, opts, inherit_from=inherit)
    if opts.dist.is_main:
        typer.echo(f"training finished: best {summary['best']['metric']} {summary['best']['value']}; run folder {out}")


@app.command("evaluate")
@handle_errors
def evaluate_cmd(run: Path = typer.Argument(..., help="A run folder or checkpoint."), device: str = DEVICE,
                 no_latency: bool = typer.Option(False, "--no-latency", help="Skip latency measurements."),
                 size: tuple[int, int] = typer.Option(None, "--size", help="Latency input size (H W)."),
                 engine: str = typer.Option(None, "--engine",
                                            help="Latency path: auto, reference, eager, compiled or onnxruntime "
                                                 "(default: the config's evaluate.engine)."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Test metrics, params, MACs and latency; writes evaluation.json and report.md/html."""
    from sparseconn.engine.evaluate import evaluate

    result = evaluate(run, run_options(device, False, True), latency=not no_latency, latency_size=size,
                      engine=engine)
    for note in result.get("warnings", []):
        typer.echo(f"warning: {note}", err=True)
    _print_rows(result, as_json)


def _table(title: str, rows: list[dict], headers: dict[str, str]):
    """A rich table of result rows: ``model``, then every other key of the first row in order."""
    from rich.table import Table

    table = Table(title=title)
    cols = [k for k in rows[0] if k != "model"]
    table.add_column("model", no_wrap=True)
    for c in cols:
        table.add_column(headers.get(c, c), justify="right")
    for r in rows:
        table.add_row(r["model"], *[format_value(c, r.get(c)) for c in cols])
    return table


def _print_rows(result: dict, as_json: bool) -> None:
    if as_json:
        _echo_json(result)
        return
    from rich.console import Console

    headers = {**_HEADERS, **result.get("metric_labels", {})}
    console = Console(width=max(120, Console().width))
    console.print(_table(f"test set ({result['test_items']} items), latency on {result['device']} at "
                         f"{result['latency_size'][0]}x{result['latency_size'][1]}", result["rows"], headers))
    for label, extra in (result.get("sets") or {}).items():  # e.g. the phase task's cross-domain set
        if extra["rows"]:
            console.print(_table(f"{label} ({extra['items']} items)", extra["rows"], headers))
    for name, path in (result.get("latency_engines") or {}).items():
        console.print(f"latency path of {name}: {path}")


_HEADERS = {"params": "params (M)", "macs": "MACs (G)", "connections": "conn.", "latency_ms": "latency (ms)"}


@app.command("pipeline")
@handle_errors
def pipeline_cmd(config: Path = typer.Argument(..., help=CONFIG_HELP), out: Path = OUT, device: str = DEVICE,
                 seed: int = SEED, resume: bool = RESUME, fast_dev_run: bool = FAST, set_: list[str] = SET,
                 quiet: bool = QUIET, show_config: bool = PRINT_CONFIG) -> None:
    """Search -> prune -> retrain -> evaluate, in one run folder."""
    from sparseconn.engine.pipeline import pipeline

    started = start_run(config, set_, seed, fast_dev_run, show_config, out, resume)
    if started is None:  # --print-config
        return
    config, cfg = started
    opts = run_options(device, resume, quiet)
    with run_folder(config, out, "pipeline", opts.dist) as out:
        summary = pipeline(cfg, out, opts)
    if opts.dist.is_main:
        typer.echo(f"connections: {summary['connections']} of {summary['candidates']} kept; "
                   f"removed stages: {', '.join(summary['removed_stages']) or 'none'}")
        _print_rows({**summary, "rows": summary["evaluation"]}, False)
        rows = summary["evaluation"]
        child = next((r for r in rows if r["model"] == summary["child_model"]), rows[0])
        headers = {**_HEADERS, **summary["metric_labels"]}
        metrics = "  ".join(f"{headers.get(k, k)} {format_value(k, v)}" for k, v in child.items()
                            if k != "model" and k not in _HEADERS)  # the task's metrics only
        typer.echo(f"{child['model']} on the test set: {metrics}")
        for label, extra in (summary.get("sets") or {}).items():
            row = next((r for r in extra["rows"] if r["model"] == summary["child_model"]), None)
            if row is not None:
                vals = "  ".join(f"{headers.get(k, k)} {format_value(k, v)}" for k, v in row.items() if k != "model")
                typer.echo(f"{row['model']} on the {label} set: {vals}")
        typer.echo(f"run folder: {out} (summary.json, report.md, report.html)")
