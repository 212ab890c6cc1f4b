"""Build data sets in the folder layout of :mod:`sparseconn_tasks.phase_retrieval.data`.

- :func:`write_synthetic`: simulated holograms, true phases and backgrounds.
- :func:`make_ground_truth`: real holograms, phases from the classical pipeline (as the paper's
  ground truth was made: FT method, background compensation, unwrapping). Each frame's sideband and
  the share of its pixels clipped at 0 go to ``meta.json``; a frame that lost more than noise to the
  clip raises a :class:`ClippedPhaseWarning` (usually the wrong sideband sign: cells came out negative).

Every file goes through an atomic write (temporary file, then rename), and ``meta.json`` is written
last, so a folder with ``meta.json`` is complete. Re-running over the same folder overwrites the
files it writes and leaves others in place; the split files list only what was written.
:func:`make_ground_truth` reads and checks every input before it writes anything, and removes an
earlier ``meta.json`` before its first write: a run that fails part-way never leaves a ``meta.json``
that describes maps it has replaced.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sparseconn_tasks.phase_retrieval.classical import (
    Sideband,
    check_sideband,
    find_sideband,
    fit_background,
    retrieve_phase_info,
)
from sparseconn_tasks.phase_retrieval.data import background_path, default_split, read_split
from sparseconn_tasks.phase_retrieval.imageio_ import (
    IMAGE_SUFFIXES,
    check_hologram,
    index_images,
    read_image,
    write_tiff,
)
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate

from sparseconn.errors import DataError
from sparseconn.fileio import atomic_path, atomic_write_json, atomic_write_text

Progress = Callable[[int], None]

# Percentile of the background pixels taken as "the minimum": a literal minimum would follow the
# single noisiest pixel, so the shift would differ by several noise σ from image to image.
_BACKGROUND_MIN_PERCENTILE = 0.5
# A frame warns when more than _CLIP_WARN_FRACTION of its pixels were clipped AND the deepest lay more
# than _CLIP_WARN_DEPTH rad below the background. The floor above clips 0.5% of the background pixels
# by construction, a few noise σ (≈ 0.05 rad) deep; the wrong sideband sign clips whole cells, tens
# of percent of the field at rad depth.
_CLIP_WARN_FRACTION = 0.01
_CLIP_WARN_DEPTH = 0.5  # rad


class ClippedPhaseWarning(UserWarning):
    """A ground-truth frame lost more than noise to the clip at 0 (see :func:`make_ground_truth`)."""


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
    """Simulate ``n`` fields into ``out_dir`` (folder layout of :mod:`~sparseconn_tasks.phase_retrieval.data`).

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


@dataclass(frozen=True)
class GroundTruth:
    """One frame's ground truth and what making it did (see :func:`ground_truth_info`)."""

    phase: np.ndarray
    """Phase (H, W) float32 rad, background's robust minimum at 0, clipped ≥ 0."""
    sideband: tuple[float, float]
    """The order demodulated, ``(fx, fy)`` cycles/px."""
    clipped_fraction: float
    """Share of the pixels that lay below 0 and were set to 0."""
    clipped_depth: float
    """How far below 0 the lowest pixel lay, rad (0 when none was clipped)."""


def ground_truth_info(hologram: np.ndarray, background: np.ndarray | None = None, *,
                      filter_radius: float | None = None, poly_order: int = 3, sideband: Sideband = "auto"
                      ) -> GroundTruth:
    """Classical phase, shifted so the background's robust minimum is 0 and clipped ≥ 0, with its record.

    The network's output (ReLU6 / 6) cannot be negative, so negative noise in the background is
    clipped rather than left as an unreachable target; ``clipped_fraction`` and ``clipped_depth`` say
    how much went. ``sideband``: see :func:`~sparseconn_tasks.phase_retrieval.classical.retrieve_phase_info`.
    """
    got = retrieve_phase_info(hologram, background, filter_radius=filter_radius, sideband=sideband,
                              poly_order=poly_order)
    _, mask = fit_background(got.phase, order=0)
    shifted = got.phase - float(np.percentile(got.phase[mask], _BACKGROUND_MIN_PERCENTILE))
    below = shifted < 0
    depth = float(-shifted.min()) if below.any() else 0.0
    return GroundTruth(np.clip(shifted, 0.0, None).astype(np.float32), got.sideband, float(below.mean()), depth)


def ground_truth_phase(hologram: np.ndarray, background: np.ndarray | None = None, *,
                       filter_radius: float | None = None, poly_order: int = 3, sideband: Sideband = "auto"
                       ) -> np.ndarray:
    """The phase (H, W) float32 rad of :func:`ground_truth_info` (same arguments)."""
    return ground_truth_info(hologram, background, filter_radius=filter_radius, poly_order=poly_order,
                             sideband=sideband).phase


def _check_inputs(raw: Path, holos: dict[str, Path], progress: Progress | None = None) -> None:
    """Every hologram readable and demodulable (:func:`check_hologram`: not constant, at least 8x8 px), and
    its background, if any, readable and of its size; else the one-line :class:`DataError` naming the file.
    Each image is read here and again when its phase is made: reading is cheap beside the classical
    pipeline, and no frame need be held for the second pass. ``progress(k)``: k images checked."""
    sizes: dict[Path, tuple[int, ...]] = {}  # a shared background.* is read once
    for k, (name, holo_path) in enumerate(holos.items(), start=1):
        shape = check_hologram(read_image(holo_path), holo_path).shape
        bg_path = background_path(raw, name)
        if bg_path is not None:
            if bg_path not in sizes:
                sizes[bg_path] = read_image(bg_path).shape
            if sizes[bg_path] != shape:
                raise DataError(f"{holo_path}: size {shape[1]}x{shape[0]} differs from {bg_path} "
                                f"({sizes[bg_path][1]}x{sizes[bg_path][0]})")
        if progress is not None:  # the frame and its background both checked
            progress(k)


def make_ground_truth(raw_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                      progress: Progress | None = None, *, filter_radius: float | None = None,
                      poly_order: int = 3, sideband: Sideband = "auto", checked: Progress | None = None) -> Path:
    """Phase maps for real holograms with the classical pipeline, written in the folder layout.

    ``raw_dir`` holds ``interferograms/`` and optionally ``backgrounds/`` (``NAME.*`` or one shared
    ``background.*``) and ``splits/``. Interferograms and backgrounds are copied unchanged to
    ``out_dir`` (which may be ``raw_dir``); each phase (see :func:`ground_truth_info`) goes to
    ``phases/NAME.tif``. ``meta.json`` gets ``phase_range`` = the largest phase of the set rounded
    up to a whole radian (at least 1), the ``sideband`` setting, and per frame under ``frames``
    (``{NAME: {"sideband": [fx, fy], "clipped_fraction": f, "clipped_depth": rad}}``) the order used
    and what the clip at 0 took. A frame with more than 1% of its pixels clipped, down to more than
    0.5 rad below the background, raises a :class:`ClippedPhaseWarning` naming it. ``progress(k)`` is
    called with the number of images done, ``checked(k)`` with the number read and checked before that
    (the pass below). Returns ``out_dir``.

    Every input is read and checked before anything is written (a constant or tiny hologram, a
    background of another size: :class:`DataError` naming the file, ``out_dir`` untouched). An earlier
    ``meta.json`` in ``out_dir`` is removed before the first write and the new one written last, so a
    run that still fails part-way (the pipeline on one frame, an interrupt) leaves no ``meta.json``
    claiming the folder complete.
    """
    setting = check_sideband(sideband)  # before any file is written
    raw, out = Path(raw_dir), Path(out_dir)
    holos = index_images(raw / "interferograms", IMAGE_SUFFIXES)
    _check_inputs(raw, holos, checked)
    (out / "meta.json").unlink(missing_ok=True)  # it describes the maps about to be replaced
    peak = 0.0
    with_background = 0
    carrier: tuple[float, float] | None = None
    frames: dict[str, dict[str, object]] = {}
    for k, (name, holo_path) in enumerate(holos.items(), start=1):
        holo = read_image(holo_path)  # checked, with its background, by _check_inputs
        bg_path = background_path(raw, name)
        bg = None
        if bg_path is not None:
            bg = read_image(bg_path)
            with_background += 1
            _copy(bg_path, out / "backgrounds" / bg_path.name)
        if carrier is None:
            carrier = find_sideband(holo)  # one setup, one carrier: recorded for the data set's symmetries
        truth = ground_truth_info(holo, bg, filter_radius=filter_radius, poly_order=poly_order, sideband=setting)
        frames[name] = {"sideband": list(truth.sideband), "clipped_fraction": round(truth.clipped_fraction, 6),
                        "clipped_depth": round(truth.clipped_depth, 4)}
        if truth.clipped_fraction > _CLIP_WARN_FRACTION and truth.clipped_depth > _CLIP_WARN_DEPTH:
            warnings.warn(f"{holo_path}: {truth.clipped_fraction:.1%} of the pixels lay below the background "
                          f"(down to -{truth.clipped_depth:.2f} rad) and were clipped to 0; check the sideband "
                          f"sign (used {truth.sideband[0]:.4f}, {truth.sideband[1]:.4f} cycles/px)",
                          ClippedPhaseWarning, stacklevel=2)
        peak = max(peak, float(truth.phase.max()))
        write_tiff(out / "phases" / f"{name}.tif", truth.phase)
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
        # ceil of a float32 maximum (exactly representable as a float) is ≥ it: no phase exceeds the range.
        "phase_range": float(max(1, math.ceil(peak))),
        "carrier": list(carrier) if carrier is not None else None,
        "source": "classical",
        "n": len(names),
        "with_background": with_background,
        "poly_order": poly_order,
        "filter_radius": filter_radius,
        "sideband": setting if isinstance(setting, str) else list(setting),
        "frames": frames,
    })
    return out
