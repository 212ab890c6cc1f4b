"""Phase-retrieval comparison panels in the style of the paper's Fig. 4.

Top row: the input interferogram, the ground-truth phase and each model's phase, every phase on one
colour scale: the truth's range (``scale="truth"``, so a sample of a few radians still uses the whole
colour map) or ``[0, phase_range]`` (``scale="full"``, the same for every sample). Bottom row, under
each model: its error map (output - truth) on one symmetric diverging scale shared by all models, so
errors compare at a glance.

The phase task's report picture (:meth:`PhaseRetrievalTask.panels`). Like :mod:`sparseconn.viz`, it
draws from arrays only, without pyplot, so nothing needs a display. Example::

    from sparseconn.viz import save_figure
    from sparseconn_tasks.phase_retrieval.panels import phase_panels

    fig = phase_panels(holo, truth, {"U-Net": unet, "NAS-PRNet": ours}, scores={"NAS-PRNet": "36.7 dB"})
    save_figure(fig, "runs/x/panels.png")

(In sparseconn 0.2.0 this was ``sparseconn.viz.phase_panels``; the task-free viz package holds no task's
pictures.)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from sparseconn.errors import DataError

PHASE_CMAP = "viridis"
ERROR_CMAP = "RdBu_r"
HOLO_CMAP = "gray"


def _as_image(name: str, array: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A float (H, W) array; raise :class:`DataError` naming ``name`` if it is not 2-D or not ``shape``."""
    image = np.asarray(array, dtype=float)
    if image.ndim != 2:
        raise DataError(f"{name} has shape {image.shape}: expected a 2-D (H, W) array")
    if shape is not None and image.shape != shape:
        raise DataError(f"{name} has shape {image.shape}: expected the ground truth's shape {shape}")
    return image


def _error_limit(errors: list[np.ndarray]) -> float:
    """Symmetric colour limit: the 99.5th percentile of |error|, so a few outliers do not wash it out."""
    if not errors:
        return 1.0
    magnitudes = np.concatenate([np.abs(e[np.isfinite(e)]).ravel() for e in errors])
    if magnitudes.size == 0:
        return 1.0
    limit = float(np.percentile(magnitudes, 99.5))
    return limit if limit > 0 else max(float(magnitudes.max()), 1e-6)


def _phase_limits(truth: np.ndarray, phase_range: float, scale: str) -> tuple[float, float]:
    """Colour limits of the phase maps: see the module docstring."""
    if scale not in ("truth", "full"):
        raise DataError(f"scale is {scale!r}: expected 'truth' or 'full'")
    finite = truth[np.isfinite(truth)]
    if scale == "full" or finite.size == 0:
        return 0.0, phase_range
    lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    lo = min(lo, 0.0)
    span = max(hi - lo, 0.05 * phase_range)  # a flat truth: do not blow its noise up to the full map
    return lo, lo + span


def phase_panels(
    interferogram: np.ndarray,
    truth: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    *,
    phase_range: float = 12.0,
    title: str | None = None,
    scores: Mapping[str, str] | None = None,
    panel_size: float = 2.2,
    scale: str = "truth",
) -> Figure:
    """Interferogram, truth and model outputs (row 1) with each model's error map (row 2).

    All arrays are 2-D; phases are in radians. ``scores`` maps a model name to a short string shown
    under its name (e.g. ``"36.7 dB · 0.12 rad"``). ``panel_size`` is the width of one panel in inches.
    ``scale`` picks the phase colour limits: ``"truth"`` (the truth's range) or ``"full"`` (``[0, phase_range]``).
    """
    if phase_range <= 0:
        raise DataError(f"phase_range is {phase_range}: expected a positive range in radians")
    truth_img = _as_image("truth", truth)
    holo = _as_image("interferogram", interferogram)
    outs = {name: _as_image(f"output {name!r}", out, truth_img.shape) for name, out in outputs.items()}
    errors = {name: out - truth_img for name, out in outs.items()}
    scores = scores or {}

    n_cols = 2 + len(outs)
    n_rows = 2 if outs else 1
    aspect = truth_img.shape[0] / truth_img.shape[1]  # (H, W): panel height per unit width
    fig = Figure(figsize=(panel_size * n_cols + 1.0, (panel_size * aspect + 0.55) * n_rows + 0.4),
                 layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])

    lo, hi = np.nanpercentile(holo, [0.5, 99.5]) if np.isfinite(holo).any() else (0.0, 1.0)
    axes[0, 0].imshow(holo, cmap=HOLO_CMAP, vmin=lo, vmax=hi if hi > lo else lo + 1.0)
    axes[0, 0].set_title("interferogram", fontsize=10)
    vmin, vmax = _phase_limits(truth_img, phase_range, scale)
    phase_kw = {"cmap": PHASE_CMAP, "vmin": vmin, "vmax": vmax, "interpolation": "nearest"}
    phase_im = axes[0, 1].imshow(truth_img, **phase_kw)
    axes[0, 1].set_title("ground truth", fontsize=10)
    for j, (name, out) in enumerate(outs.items(), start=2):
        axes[0, j].imshow(out, **phase_kw)
        axes[0, j].set_title(name + (f"\n{scores[name]}" if name in scores else ""), fontsize=10)
    fig.colorbar(phase_im, ax=list(axes[0, 1:]), label="phase (rad)", shrink=0.9, pad=0.01)

    if outs:
        limit = _error_limit(list(errors.values()))
        error_kw = {"cmap": ERROR_CMAP, "vmin": -limit, "vmax": limit, "interpolation": "nearest"}
        for ax in axes[1, :2]:
            ax.set_axis_off()  # no error map under the input and the truth
        error_im = None
        for j, err in enumerate(errors.values(), start=2):
            error_im = axes[1, j].imshow(err, **error_kw)
            rmse = float(np.sqrt(np.nanmean(err**2)))
            axes[1, j].set_title(f"error, RMSE {rmse:.3f} rad", fontsize=9)
        fig.colorbar(error_im, ax=list(axes[1, 2:]), label="error (rad)", shrink=0.9, pad=0.01)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
