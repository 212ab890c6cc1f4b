"""Classical off-axis phase retrieval: Takeda's Fourier-transform method (REFERENCE §4).

Pipeline: subtract the mean, FFT, find the +1 sideband, window it with a soft-edged disk, shift it to
the centre, inverse FFT, take the angle; compensate the aberration with a sample-free background
hologram (complex division) or a robust polynomial fit on background pixels; unwrap (Herráez,
``skimage.restoration.unwrap_phase``); subtract the background level so the background is ≈ 0.

Sign convention: for ``I = … + 2|R||O| cos(2π(fx·x + fy·y) + φ)`` with the carrier in the half plane
``fx > 0`` (or ``fx = 0, fy > 0``) the result is ``+φ``. A single hologram cannot tell a carrier ``f``
with phase ``φ`` from ``−f`` with ``−φ``; pass ``sideband`` for carriers in the other half plane.
Frequencies are in cycles/px throughout (x = column, y = row).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.fft import fft2, ifft2, next_fast_len, rfft2
from scipy.ndimage import binary_erosion
from skimage.restoration import unwrap_phase

# Default disk radius as a fraction of |f_c|: the +1 order (radius B) must fit and the |O|² term
# (radius 2B around DC) must stay out; with |f_c| ≥ 3B (REFERENCE §4) a radius of |f_c|/3 holds the
# whole band, and the raised-cosine taper reaches |f_c|·0.38 at most.
_RADIUS_FRACTION = 1.0 / 3.0
_TAPER = 0.3  # width of the raised-cosine edge as a fraction of the radius; a hard disk rings (Gibbs)
_DC_EXCLUSION = 0.05  # cycles/px: the detector ignores carriers with periods above 20 px
_THRESHOLDS = (2.0, 1.0, 0.5, 0.25, 0.12)  # rad: background band of the successive fits


def _freq_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(1, W) and (H, 1) FFT frequencies in cycles/px, unshifted layout."""
    h, w = shape
    return np.fft.fftfreq(w)[None, :], np.fft.fftfreq(h)[:, None]


def find_sideband(hologram: np.ndarray, dc_exclusion: float = _DC_EXCLUSION) -> tuple[float, float]:
    """Carrier ``(fx, fy)`` in cycles/px of the +1 order, snapped to the FFT grid of ``hologram`` (H, W).

    The argmax of the spectrum outside a disk of radius ``dc_exclusion`` around DC, taken in the half
    plane ``fx > 0`` (or ``fx = 0, fy > 0``). A Hann window suppresses the leakage cross that the
    non-periodic image borders put on the axes, so it is not mistaken for the carrier.
    """
    img = np.asarray(hologram, dtype=np.float64)
    h, w = img.shape
    win = np.hanning(h)[:, None] * np.hanning(w)[None, :]
    # A real image's spectrum is Hermitian: the half plane fx ≥ 0 (rfft2) holds every order once.
    spec = np.abs(rfft2((img - img.mean()) * win))  # (H, W // 2 + 1)
    fx, fy = np.fft.rfftfreq(w)[None, :], np.fft.fftfreq(h)[:, None]
    half = (fx > 0) | ((fx == 0) & (fy > 0))
    dc = max(dc_exclusion, 3.0 / min(h, w))
    spec[~half | (np.hypot(fx, fy) < dc)] = 0.0
    iy, ix = np.unravel_index(int(np.argmax(spec)), spec.shape)
    return float(fx[0, ix]), float(fy[iy, 0])


def demodulate(hologram: np.ndarray, sideband: tuple[float, float], filter_radius: float | None = None
               ) -> np.ndarray:
    """Complex field ``|R||O|·exp(iφ)`` (H, W) complex128 from the +1 order at ``sideband`` (fx, fy).

    ``filter_radius`` (cycles/px) defaults to ``|f_c| / 3``. The order is shifted by whole FFT bins,
    so a sub-bin carrier remainder leaves a linear phase ramp that the background step removes.
    """
    img = np.asarray(hologram, dtype=np.float64)
    h, w = img.shape
    sx, sy = sideband
    radius = math.hypot(sx, sy) * _RADIUS_FRACTION if filter_radius is None else filter_radius
    # Zero-pad by two filter-kernel widths (1 / radius px): without it the circular FFT mixes the
    # left border's field into the right border's, which cost up to 4 rad there (0.1 rad RMSE at 256²).
    pad = int(math.ceil(2.0 / radius))
    hp, wp = next_fast_len(h + 2 * pad, real=True), next_fast_len(w + 2 * pad, real=True)
    padded = np.zeros((hp, wp))
    padded[pad:pad + h, pad:pad + w] = img - img.mean()
    fx, fy = _freq_grid((hp, wp))
    d = np.hypot(fx - sx, fy - sy)
    r_in, r_out = radius * (1 - _TAPER / 2), radius * (1 + _TAPER / 2)
    window = np.clip((r_out - d) / (r_out - r_in), 0.0, 1.0)
    window = 0.5 - 0.5 * np.cos(np.pi * window)  # raised cosine: 1 inside r_in, 0 outside r_out
    spec = fft2(padded) * window
    shift = (-int(round(sy * hp)), -int(round(sx * wp)))  # the +1 order moves to DC
    return ifft2(np.roll(spec, shift, axis=(0, 1)))[pad:pad + h, pad:pad + w]


def _poly_basis(shape: tuple[int, int], order: int, step: int = 1) -> np.ndarray:
    """Monomials x^i·y^j, i + j ≤ order, on [-1, 1]² sampled every ``step`` px: (n_pixels, n_terms)."""
    h, w = shape
    y, x = np.mgrid[0:h:step, 0:w:step]
    x = 2 * x / max(w - 1, 1) - 1
    y = 2 * y / max(h - 1, 1) - 1
    cols = [(x**i * y**j).ravel() for i in range(order + 1) for j in range(order + 1 - i)]
    return np.stack(cols, axis=1)


def fit_background(phase: np.ndarray, order: int = 3, mask: np.ndarray | None = None,
                   thresholds: tuple[float, ...] = _THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Robust polynomial fit of the background of an unwrapped phase map (H, W) rad.

    Returns ``(surface, mask)``: the fitted surface (H, W) rad, background level included, and the
    boolean background mask it was fitted on. Cells raise the phase, so the background is the lower
    envelope: each pass keeps the pixels whose residual lies below the background median plus a
    shrinking threshold (``thresholds``, rad, floored at 3× the pixel noise) and not far below it,
    erodes that mask by a few pixels (cell rims), and refits. A symmetric MAD cut instead let a cubic
    swallow a large cell at the border (0.5 rad RMSE on 2 of 12 fields). ``order = 0`` fits the level.
    ``mask`` (H, W) bool, when given, is the starting set of background pixels.
    """
    phi = np.asarray(phase, dtype=np.float64)
    h, w = phi.shape
    # Fit on a subsampled grid: ~64k pixels determine ≤ 10 coefficients as well as a million do.
    step = max(1, int(math.sqrt(h * w / 65536)))
    sub = phi[::step, ::step]
    basis = _poly_basis((h, w), order, step)
    keep = np.ones(sub.shape, bool) if mask is None else np.asarray(mask, bool)[::step, ::step].copy()
    # Pixel noise from neighbour differences: smooth cells and aberrations barely move it.
    noise = 1.4826 * float(np.median(np.abs(np.diff(phi, axis=1)))) / math.sqrt(2.0)
    erode = max(1, min(h, w) // (64 * step))
    for t in thresholds:
        coef, *_ = np.linalg.lstsq(basis[keep.ravel()], sub.ravel()[keep.ravel()], rcond=None)
        resid = sub - (basis @ coef).reshape(sub.shape)
        resid -= np.median(resid[keep])
        t = max(t, 3 * noise)
        new = (resid < t) & (resid > -max(t, 0.3, 5 * noise))
        new = binary_erosion(new, iterations=erode, border_value=1)
        if new.sum() < basis.shape[1] * 4:  # too few background pixels left: keep the last mask
            break
        keep = new
    coef, *_ = np.linalg.lstsq(basis[keep.ravel()], sub.ravel()[keep.ravel()], rcond=None)
    surface = (_poly_basis((h, w), order) @ coef).reshape(h, w)
    full_mask = np.repeat(np.repeat(keep, step, 0), step, 1)[:h, :w]
    return surface, full_mask


def retrieve_phase(hologram: np.ndarray, background: np.ndarray | None = None, *,
                   filter_radius: float | None = None, sideband: tuple[float, float] | None = None,
                   poly_order: int = 3) -> np.ndarray:
    """Unwrapped, aberration-compensated phase (H, W) float32 in rad from one hologram (H, W).

    ``background``: a sample-free hologram of the same setup; its field divides the sample's field
    (removing carrier remainder, aberration and illumination), and only the level is then fitted.
    Without it, a polynomial of ``poly_order`` is fitted to the background pixels and subtracted;
    the default 3 covers coma (the simulator's aberrations are exact cubics; order 2 left 0.1 rad RMSE
    of coma even on a perfect background mask).
    ``sideband`` (fx, fy) cycles/px defaults to :func:`find_sideband` on the hologram.
    """
    holo = np.asarray(hologram, dtype=np.float64)
    if holo.ndim != 2:
        raise ValueError(f"expected one 2-D hologram, got shape {holo.shape}")
    if sideband is None:
        sideband = find_sideband(holo)
    field = demodulate(holo, sideband, filter_radius)
    order = poly_order
    if background is not None:
        bg = np.asarray(background, dtype=np.float64)
        if bg.shape != holo.shape:
            raise ValueError(f"background shape {bg.shape} differs from hologram shape {holo.shape}")
        field = field * np.conj(demodulate(bg, sideband, filter_radius))
        order = 0
    phi = unwrap_phase(np.angle(field))
    surface, _ = fit_background(phi, order)
    return (phi - surface).astype(np.float32)


class FourierPhaseRetrieval:
    """The classical pipeline as a baseline "model": ``model(hologram) -> phase``.

    Accepts one (H, W) hologram or a batch (..., H, W) as a numpy array or a torch tensor (e.g. the
    (B, 1, H, W) batches the networks get) and returns the same type and shape. With ``phase_range``
    the output is ``phase / phase_range`` clipped to [0, 1], comparable with the networks' output.
    """

    def __init__(self, background: np.ndarray | None = None, *, filter_radius: float | None = None,
                 sideband: tuple[float, float] | None = None, poly_order: int = 3,
                 phase_range: float | None = None) -> None:
        self.background = background
        self.filter_radius = filter_radius
        self.sideband = sideband
        self.poly_order = poly_order
        self.phase_range = phase_range

    def _one(self, holo: np.ndarray) -> np.ndarray:
        phi = retrieve_phase(holo, self.background, filter_radius=self.filter_radius,
                             sideband=self.sideband, poly_order=self.poly_order)
        if self.phase_range is not None:
            phi = np.clip(phi / self.phase_range, 0.0, 1.0)
        return phi

    def __call__(self, hologram: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        is_tensor = isinstance(hologram, torch.Tensor)
        arr = hologram.detach().cpu().double().numpy() if is_tensor else np.asarray(hologram)
        flat = arr.reshape(-1, *arr.shape[-2:])  # (N, H, W)
        out = np.stack([self._one(h) for h in flat]).reshape(arr.shape).astype(np.float32)
        if is_tensor:
            return torch.from_numpy(out).to(hologram.device)
        return out
