"""``sparseconn data``: write synthetic data sets and make ground truth from real holograms.

Attached to the ``sparseconn`` CLI through :data:`sparseconn.registry.CLI_EXTENSIONS` when the
phase-retrieval plugin loads; both commands are thin layers over :mod:`sparseconn_tasks.phase_retrieval.prepare`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import typer

from sparseconn.errors import DataError
from sparseconn.fileio import check_out_folder
from sparseconn.registry import CLI_EXTENSIONS


@contextmanager
def _progress(label: str, total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A rich bar on a terminal; otherwise a line every 10% (nothing when ``quiet``)."""
    with _bars((label,), total, quiet) as (progress,):
        yield progress


@contextmanager
def _bars(labels: Sequence[str], total: int, quiet: bool) -> Iterator[list[Callable[[int], None]]]:
    """One bar per pass over ``total`` items, shown together on a terminal (each callable takes the number
    of items done in its pass); otherwise a line every 10% of each pass; nothing when ``quiet``."""
    if quiet:
        yield [lambda k: None for _ in labels]
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=Console(stderr=True)) as bar:
            tasks = [bar.add_task(label, total=total) for label in labels]
            yield [lambda k, t=t: bar.update(t, completed=k) for t in tasks]
        return
    step = max(1, total // 10)
    yield [lambda k, label=label: (k % step == 0 or k == total) and print(f"{label}: {k}/{total}", file=sys.stderr,
                                                                        flush=True) for label in labels]


def _refuse_existing(folder: Path, force: bool) -> None:
    """Refuse, before any work, a ``--out`` that cannot be written (a file, read-only) or, without
    ``force``, one that already holds files."""
    check_out_folder(folder)
    if force or not folder.is_dir():
        return
    if any(f for f in folder.iterdir() if not f.name.startswith(".")):
        raise DataError(f"{folder} already holds files; choose another --out or pass --force to overwrite")


def _parse_sideband(text: str) -> str | tuple[float, float]:
    """``--sideband`` checked by :func:`~sparseconn_tasks.phase_retrieval.classical.check_sideband` (a pair is
    written ``FX,FY``); DataError naming the text and the accepted forms otherwise."""
    from sparseconn_tasks.phase_retrieval.classical import SIDEBAND_FORMS, check_sideband

    parts = text.split(",")
    try:
        return check_sideband(tuple(float(p) for p in parts) if len(parts) == 2 else text)
    except ValueError:  # float() or check_sideband
        raise DataError(f"--sideband {text!r}: expected {SIDEBAND_FORMS}, a pair written FX,FY "
                        f"(e.g. 0.2,0.2)") from None


def add_data_commands(app: typer.Typer) -> None:
    """Attach the ``data`` group (``synth``, ``truth``) to the ``sparseconn`` app."""
    from sparseconn.cli.common import handle_errors

    data = typer.Typer(help="Make phase-retrieval data sets: synthetic holograms, or ground truth for real ones.",
                       no_args_is_help=True)

    @data.command("synth")
    @handle_errors
    def synth(
        config: Path = typer.Argument(..., help="A run config; its task.data.sim section sets the simulator."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder to write (interferograms/, phases/, ...)."),
        n: int = typer.Option(64, "-n", help="Number of fields to simulate."),
        seed: int | None = typer.Option(None, "--seed", help="Seed (default: the config's task.data.seed)."),
        overrides: list[str] = typer.Option(None, "--set", help="Override a config value: task.data.sim.size=512."),
        force: bool = typer.Option(False, "--force", help="Write into a folder that already holds files."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ) -> None:
        """Simulate N holograms with their true phases and sample-free backgrounds, in the folder layout."""
        from sparseconn_tasks.phase_retrieval.prepare import write_synthetic
        from sparseconn_tasks.phase_retrieval.task import PhaseRetrievalConfig

        from sparseconn.engine.config import load_run_config

        if n < 1:
            raise DataError(f"-n must be at least 1, got {n}")
        task_cfg = load_run_config(config, overrides).task
        if not isinstance(task_cfg, PhaseRetrievalConfig):
            raise DataError(f"{config}: task.name must be phase_retrieval for `data synth`")
        _refuse_existing(out, force)
        with _progress("simulating", n, quiet) as progress:
            write_synthetic(out, n, task_cfg.data.sim, seed=task_cfg.data.seed if seed is None else seed,
                            progress=progress)
        typer.echo(f"wrote {n} simulated fields to {out}")

    @data.command("truth")
    @handle_errors
    def truth(
        raw_dir: Path = typer.Argument(..., help="Folder with interferograms/ and optional backgrounds/, splits/."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder to write (may be RAW_DIR itself)."),
        poly_order: int = typer.Option(3, "--poly-order", min=0, max=6,
                                       help="Aberration fit order when an image has no background hologram."),
        filter_radius: float | None = typer.Option(None, "--filter-radius",
                                                   help="Sideband window radius, cycles/px (default: automatic)."),
        sideband: str = typer.Option("auto", "--sideband",
                                     help="Which +1 order: auto (the sign that makes cells positive), + (half "
                                          "plane fx > 0), - (the other one) or FX,FY in cycles/px."),
        force: bool = typer.Option(False, "--force", help="Overwrite existing phase maps in --out."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ) -> None:
        """Ground-truth phases for real holograms with the classical FT + unwrapping pipeline.

        Each frame's sideband and clipped share go to meta.json; a frame whose phase fell well below
        the background (usually the wrong sign) gets a "warning:" line on stderr.
        """
        from sparseconn_tasks.phase_retrieval.imageio_ import IMAGE_SUFFIXES, index_images
        from sparseconn_tasks.phase_retrieval.prepare import ClippedPhaseWarning, make_ground_truth

        if filter_radius is not None and not 0 < filter_radius < 0.5:
            raise DataError(f"--filter-radius must be in (0, 0.5) cycles/px, got {filter_radius}")
        chosen = _parse_sideband(sideband)
        total = len(index_images(raw_dir / "interferograms", IMAGE_SUFFIXES))
        check_out_folder(out)
        _refuse_existing(out / "phases", force)
        # Warnings are collected and printed after the progress bar, one "warning:" line each (as
        # `evaluate` prints its notes), instead of Python's two-line file:line format inside the bar.
        with _bars(("checking", "retrieving"), total, quiet) as (checked, progress), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ClippedPhaseWarning)
            make_ground_truth(raw_dir, out, progress, filter_radius=filter_radius, poly_order=poly_order,
                              sideband=chosen, checked=checked)
        for w in caught:
            if issubclass(w.category, ClippedPhaseWarning):
                typer.echo(f"warning: {w.message}", err=True)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        typer.echo(f"wrote {total} phase maps to {out / 'phases'}")

    app.add_typer(data, name="data")


CLI_EXTENSIONS.register("data", add_data_commands)
