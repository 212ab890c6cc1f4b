"""``sparseconn list``: the registered names a config may use (the work: :mod:`sparseconn.catalogue`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparseconn.cli.common import app, handle_errors
from sparseconn.engine.config import resolve_config
from sparseconn.errors import ConfigError


def config_plugins(config: Path) -> list[str]:
    """The ``plugins:`` list of a run config (``space.plugins`` in a config of sparseconn 0.1)."""
    from sparseconn.config import read_yaml

    data = read_yaml(config)
    space = data.get("space")
    plugins = data.get("plugins", space.get("plugins", []) if isinstance(space, dict) else [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{config}: plugins must be a list of module names, got {plugins!r}")
    return plugins


@app.command("list")
@handle_errors
def list_cmd(
    kind: str = typer.Argument(None, help="encoders, edge-rules, fusions, edge-ops, stage-ops, weights (connection "
                                          "parameterisations), regularizers, heads, tasks, models, input-ops or "
                                          "resize-policies (default: all)."),
    config: Path = typer.Option(None, "--config", help="Also import this run config's `plugins:`, so that their "
                                                       "names are listed too (a path or a bundled config's name)."),
    plugins: list[str] = typer.Option(None, "--plugin", metavar="MODULE",
                                      help="Also import this module, as a config's `plugins:` would (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: kind -> rows."),
) -> None:
    """The registered names of each kind a config may use: name, description, and where it comes from
    (built in, an installed plug-in, or a config plug-in)."""
    from sparseconn.catalogue import catalogue, check_kind
    from sparseconn.registry import import_modules

    check_kind(kind)  # before importing plug-ins that could fail
    modules = list(plugins or [])
    if config is not None:
        modules = config_plugins(resolve_config(config)) + modules
    import_modules(modules)
    found = catalogue(kind)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    for k, rows in found.items():
        table = Table(title=k, title_justify="left")
        table.add_column("name", no_wrap=True)
        table.add_column("description")
        table.add_column("origin", no_wrap=True)
        for row in rows:
            # Docstrings hold brackets ("[BN]", "strides[k]") that rich would read as markup and drop.
            table.add_row(escape(row["name"]), escape(row["description"]) or "–", escape(row["origin"]))
        console.print(table)
