"""``sparseconn draw``: pictures of a config, an architecture file or a run folder (the work:
:mod:`sparseconn.engine.drawing`)."""

from __future__ import annotations

from pathlib import Path

import typer

from sparseconn.cli.common import app, handle_errors
from sparseconn.engine.config import resolve_config


@app.command("draw")
@handle_errors
def draw_cmd(source: Path = typer.Argument(..., help="A config YAML, a bundled config's name (e.g. phase_retrieval), "
                                                   "an architecture.json, or a search or pipeline run folder (of a "
                                                   "train run, draw its architecture.json)."),
             out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: beside the source; for a "
                                                                "bundled config, NAME-figures here)."),
             formats: str = typer.Option("png,svg,dot,graphml", "--formats", help="Comma-separated formats.")) -> None:
    """Draw the connection graph (Fig. 3 style), weight trajectories, DOT and GraphML."""
    from sparseconn.engine.drawing import draw_source

    resolved = resolve_config(source)
    if out is None and resolved != source:  # not into the installed package
        out = Path(f"{source}-figures")
    source = resolved
    base = out or (source / "figures" if source.is_dir() else source.parent / f"{source.stem}-figures")
    written = draw_source(source, base, tuple(f.strip() for f in formats.split(",") if f.strip()))
    for p in written:
        typer.echo(str(p))
