"""Build data sets in the folder layout of :mod:`tasks.phase_retrieval.data`.

- :func:`write_synthetic`: simulated holograms, true phases and backgrounds.
- :func:`make_ground_truth`: real holograms, phases from the classical pipeline (as the paper's
  ground truth was made: FT method, background compensation, unwrapping).

Every file goes through an atomic write (temporary file, then rename), and ``meta.json`` is written
last, so a folder with ``meta.json`` is complete. Re-running over the same folder overwrites the
files it writes and leaves others in place; the split files list only what was written.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparseconn.errors import DataError
from sparseconn.fileio import atomic_path, atomic_write_json, atomic_write_text
from tasks.phase_retrieval.classical import find_sideband, fit_background, retrieve_phase
from tasks.phase_retrieval.data import background_path, default_split, read_split
from tasks.phase_retrieval.imageio_ import IMAGE_SUFFIXES, index_images, read_image, write_tiff
from tasks.phase_retrieval.simulate import SimConfig, simulate

Progress = Callable[[int], None]

# Percentile of the background pixels taken as "the minimum": a literal minimum would follow the
# single noisiest pixel, so the shift would differ by several noise σ from image to image.
_BACKGROUND_MIN_PERCENTILE = 0.5


def _write_splits(out: Path, splits: dict[str, list[str]]) -> None:
    for split, names in splits.items():
        atomic_write_text(out / "splits" / f"{split}.txt", "".join(f"{n}\n" for n in names))


def _copy(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve():
        return
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_synthetic(out_dir: str | os.PathLike[str], n: int, cfg: SimConfig, seed: int = 0,
                    splits: tuple[float, float, float] = (0.8, 0.1, 0.1), progress: Progress | None = None
                    ) -> Path:
    """Simulate ``n`` fields into ``out_dir`` (folder layout of :mod:`~tasks.phase_retrieval.data`).

    Item ``i`` equals ``SyntheticPhaseDataset(cfg, n, seed)[i]``: interferogram, true phase and
    sample-free background, each a float32 TIFF ``sim_{i:05d}.tif``. Splits cut the names in order
    by ``splits`` (train, val, test); ``meta.json`` records the phase range, seed and configuration.
    ``progress(k)`` is called with the number of items written so far. Returns ``out_dir``.
    """
    if n < 1:
        raise DataError(f"{out_dir}: n must be ≥ 1, got {n}")
    if len(splits) != 3 or min(splits) < 0 or not math.isclose(sum(splits), 1.0, abs_tol=1e-6):
        raise DataError(f"{out_dir}: splits must be three non-negative fractions summing to 1, got {splits}")
    out = Path(out_dir)
    width = max(5, len(str(n - 1)))
    names = []
    for i in range(n):
        name = f"sim_{i:0{width}d}"
        sample = simulate(cfg, np.random.default_rng([seed, i]))
        write_tiff(out / "interferograms" / f"{name}.tif", sample.hologram)
        write_tiff(out / "phases" / f"{name}.tif", sample.phase)
        write_tiff(out / "backgrounds" / f"{name}.tif", sample.background)
        names.append(name)
        if progress is not None:
            progress(i + 1)
    _write_splits(out, default_split(names, splits))
    atomic_write_json(out / "meta.json", {
        "phase_range": cfg.phase_range,
        "carrier": list(cfg.carrier),
        "source": "synthetic",
        "n": n,
        "seed": seed,
        "simulator": cfg.model_dump(mode="json"),
    })
    return out


def ground_truth_phase(hologram: np.ndarray, background: np.ndarray | None = None, *,
                       filter_radius: float | None = None, poly_order: int = 3) -> np.ndarray:
    """Classical phase (H, W) float32 rad, shifted so the background's robust minimum is 0, clipped ≥ 0.

    The network's output (ReLU6 / 6) cannot be negative, so negative noise in the background is
    clipped rather than left as an unreachable target.
    """
    phase = retrieve_phase(hologram, background, filter_radius=filter_radius, poly_order=poly_order)
    _, mask = fit_background(phase, order=0)
    floor = float(np.percentile(phase[mask], _BACKGROUND_MIN_PERCENTILE))
    return np.clip(phase - floor, 0.0, None).astype(np.float32)


def make_ground_truth(raw_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                      progress: Progress | None = None, *, filter_radius: float | None = None,
                      poly_order: int = 3) -> Path:
    """Phase maps for real holograms with the classical pipeline, written in the folder layout.

    ``raw_dir`` holds ``interferograms/`` and optionally ``backgrounds/`` (``NAME.*`` or one shared
    ``background.*``) and ``splits/``. Interferograms and backgrounds are copied unchanged to
    ``out_dir`` (which may be ``raw_dir``); each phase (see :func:`ground_truth_phase`) goes to
    ``phases/NAME.tif``. ``meta.json`` gets ``phase_range`` = the largest phase of the set rounded
    up to a whole radian. ``progress(k)`` is called with the number of images done. Returns ``out_dir``.
    """
    raw, out = Path(raw_dir), Path(out_dir)
    holos = index_images(raw / "interferograms", IMAGE_SUFFIXES)
    peak = 0.0
    with_background = 0
    carrier: tuple[float, float] | None = None
    for k, (name, holo_path) in enumerate(holos.items(), start=1):
        holo = read_image(holo_path)
        bg_path = background_path(raw, name)
        bg = None
        if bg_path is not None:
            bg = read_image(bg_path)
            if bg.shape != holo.shape:
                raise DataError(f"{holo_path}: size {holo.shape[1]}x{holo.shape[0]} differs from "
                                f"{bg_path} ({bg.shape[1]}x{bg.shape[0]})")
            with_background += 1
            _copy(bg_path, out / "backgrounds" / bg_path.name)
        if carrier is None:
            carrier = find_sideband(holo)  # one setup, one carrier: recorded for the data set's symmetries
        phase = ground_truth_phase(holo, bg, filter_radius=filter_radius, poly_order=poly_order)
        peak = max(peak, float(phase.max()))
        write_tiff(out / "phases" / f"{name}.tif", phase)
        _copy(holo_path, out / "interferograms" / holo_path.name)
        if progress is not None:
            progress(k)
    names = list(holos)
    if (raw / "splits").is_dir():
        _write_splits(out, {s: read_split(raw, s, names) for s in ("train", "val", "test")
                            if (raw / "splits" / f"{s}.txt").is_file()})
    else:
        _write_splits(out, default_split(names))
    atomic_write_json(out / "meta.json", {
        "phase_range": float(max(1, math.ceil(peak))),
        "carrier": list(carrier) if carrier is not None else None,
        "source": "classical",
        "n": len(names),
        "with_background": with_background,
        "poly_order": poly_order,
        "filter_radius": filter_radius,
    })
    return out
