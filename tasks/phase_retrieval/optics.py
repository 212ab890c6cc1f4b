"""The simulated setup around the sample: aberrations, beams, stray light and camera (pure functions).

``simulate.py`` draws the parameters from its config and calls these; each takes plain numbers and an
rng, so it is tested without a config. Pixel coordinates: ``x`` the column, ``y`` the row; frequencies
in cycles/px; full maps are (size, size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Stray fringes stay this far (in units of |f_c|) from the +1 order: the classical window reaches
# 0.38·|f_c| (radius |f_c|/3 plus a 15% taper).
SIDEBAND_CLEARANCE = 0.55

# -- aberrations -------------------------------------------------------------------------------------
# Zernike terms as polynomials in unit-radius (u, v): {(i, j): coefficient of u^i v^j}; pairs are the
# cos and sin orientations. Evaluated as Σ_j P_j(u) v^j: five outer products instead of 15 full maps.
ZERNIKE: dict[str, tuple[dict[tuple[int, int], float], ...]] = {
    "tilt": ({(1, 0): 1}, {(0, 1): 1}),
    "defocus": ({(2, 0): 2, (0, 2): 2, (0, 0): -1},),
    "astigmatism": ({(2, 0): 1, (0, 2): -1}, {(1, 1): 2}),
    "coma": ({(3, 0): 3, (1, 2): 3, (1, 0): -2}, {(2, 1): 3, (0, 3): 3, (0, 1): -2}),
    "trefoil": ({(3, 0): 1, (1, 2): -3}, {(2, 1): 3, (0, 3): -1}),
    "spherical": ({(4, 0): 6, (2, 2): 12, (0, 4): 6, (2, 0): -6, (0, 2): -6, (0, 0): 1},),
    "secondary_astigmatism": ({(4, 0): 4, (0, 4): -4, (2, 0): -3, (0, 2): 3}, {(3, 1): 8, (1, 3): 8, (1, 1): -6}),
    "quadrafoil": ({(4, 0): 1, (2, 2): -6, (0, 4): 1}, {(3, 1): 4, (1, 3): -4}),
}
# max over θ of |∇Z| at radius ρ. A term R(ρ)·cos(mθ) has |∇|² = R'²cos² + (mR/ρ)²sin², so the max is
# max(|R'|, m|R|/ρ); rotating the pattern leaves it unchanged.
_GRADIENT_BOUND = {
    "tilt": lambda r: np.ones_like(r),
    "defocus": lambda r: 4 * r,
    "astigmatism": lambda r: 2 * r,
    "coma": lambda r: np.maximum(np.abs(9 * r**2 - 2), np.abs(3 * r**2 - 2)),
    "trefoil": lambda r: 3 * r**2,
    "spherical": lambda r: np.abs(24 * r**3 - 12 * r),
    "secondary_astigmatism": lambda r: np.maximum(np.abs(16 * r**3 - 6 * r), np.abs(8 * r**3 - 6 * r)),
    "quadrafoil": lambda r: 4 * r**3,
}


@lru_cache(maxsize=64)
def aberration_band(amplitudes: tuple[float, ...], size: int) -> float:
    """Upper bound of the aberration's local frequency over the field, cycles/px.

    ``amplitudes`` in the order of :data:`ZERNIKE`: ``max over ρ ≤ 1 of Σ amp·max_θ|∇Z|`` (all terms
    at full magnitude, each in its worst orientation) over ``2π·R``, ``R`` the half-diagonal in px.
    """
    rho = np.linspace(0.0, 1.0, 1001)
    total = sum(amp * _GRADIENT_BOUND[name](rho) for name, amp in zip(ZERNIKE, amplitudes, strict=True))
    return float(np.max(total)) / (2 * math.pi * size / math.sqrt(2.0))


def aberration(amplitudes: tuple[float, ...], size: int, rng: np.random.Generator) -> np.ndarray:
    """Aberration (size, size) float64 rad to 4th order plus a random fringe piston in [0, 2π).

    Single terms get ``amp·U(−1, 1)``; pairs a magnitude ``amp·U(0, 1)`` in a uniform orientation.
    """
    coef = np.zeros((5, 5))  # coef[i, j] multiplies u^i v^j
    for name, amp in zip(ZERNIKE, amplitudes, strict=True):
        terms = ZERNIKE[name]
        if len(terms) == 1:
            weights = (amp * rng.uniform(-1.0, 1.0),)
        else:
            mag, alpha = amp * rng.uniform(), rng.uniform(0.0, 2 * math.pi)
            weights = (mag * math.cos(alpha), mag * math.sin(alpha))
        for w, term in zip(weights, terms, strict=True):
            for (i, j), c in term.items():
                coef[i, j] += w * c
    coef[0, 0] += rng.uniform(0.0, 2 * math.pi)
    g = (np.arange(size) - (size - 1) / 2) / (size / math.sqrt(2.0))  # unit radius at the corners
    upow = g[None, :] ** np.arange(5)[:, None]  # (5, W): u^i
    vpow = g[:, None] ** np.arange(5)[None, :]  # (H, 5): v^j
    return vpow @ (coef.T @ upow)  # (H, W) = Σ_j v^j Σ_i coef[i, j] u^i


# -- beams and fringes -------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached (1, W) and (H, 1) float64 pixel coordinates; broadcasting keeps memory at O(size)."""
    x = np.arange(size, dtype=np.float64)
    return x[None, :], x[:, None]


def ramp(fx: float, fy: float, offset: float, size: int) -> np.ndarray:
    """``2π(fx·x + fy·y) + offset`` modulo 2π per axis, (size, size) float32 in [0, 4π): each axis is
    reduced in float64 first, so the float32 rounding stays ~1e-6 rad however many fringes there are."""
    xs, ys = grid(size)
    rx = np.mod(2 * np.pi * fx * xs + offset, 2 * np.pi).astype(np.float32)  # (1, W)
    ry = np.mod(2 * np.pi * fy * ys, 2 * np.pi).astype(np.float32)  # (H, 1)
    return rx + ry


def beam(size: int, shape: str, width: float, centre: np.ndarray) -> np.ndarray:
    """Amplitude (size, size) float32 with peak 1 at ``centre`` (x, y) px: ``"gaussian"`` or
    ``"flat_top"`` (order-2 super-Gaussian) intensity of standard deviation ``width`` px."""
    xs, ys = grid(size)
    ex = (((xs - centre[0]) / width) ** 2 / 2).astype(np.float32)  # (1, W)
    ey = (((ys - centre[1]) / width) ** 2 / 2).astype(np.float32)  # (H, 1)
    if shape == "gaussian":
        return np.exp(-ex / 2) * np.exp(-ey / 2)  # separable: two 1-D exps and one product
    if shape == "flat_top":
        return np.exp(-np.square(ex + ey) / 2)
    raise ValueError(f"unknown envelope {shape!r}; available: flat_top, gaussian")


def debris(size: int, rng: np.random.Generator) -> np.ndarray:
    """Amplitude transmission (size, size) float32 of 1–3 absorbing specks (30–80% dips, σ 3–6 px)."""
    xs, ys = grid(size)
    dip = np.ones((size, size), dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        dx, dy = rng.uniform(0, size, size=2)
        s = rng.uniform(3.0, 6.0)  # ≥ 3 px keeps the amplitude band narrower than B
        r2 = ((xs - dx) ** 2 + (ys - dy) ** 2).astype(np.float32)
        dip *= 1 - np.float32(rng.uniform(0.3, 0.8)) * np.exp(r2 * np.float32(-1 / (2 * s * s)))
    return dip


def _clearance(g: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Distance (N,) from frequencies ``g`` (N, 2) to ``f`` (2,) or its alias images, cycles/px."""
    shifts = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=np.float64)  # (9, 2)
    return np.linalg.norm(g[:, None, :] - f[None, None, :] - shifts[None], axis=-1).min(axis=1)


def stray_frequency(rng: np.random.Generator, fc: np.ndarray, size: int, band: float) -> np.ndarray | None:
    """Frequency (2,) of stray fringes for the carrier ``fc`` (2,), clear of the ±1 orders (None: no room).

    Half the draws are low (2 fringes per field up to 0.35·|f_c|, inside the DC region; the stray
    wave's replica of O then lies inside the +1 window, where a background divides it out), half
    anywhere up to Nyquist with the replica at ``f_c + g`` clear of the window, its band ``band``
    included. 32 candidates at once: the rng use does not depend on the carrier.
    """
    low = rng.random() < 0.5
    r = rng.uniform(size=32)
    t = rng.uniform(0.0, 2 * math.pi, size=32)
    box = rng.uniform(-0.5, 0.5, size=(32, 2))
    f_abs = float(np.hypot(*fc))
    if low:
        radius = 2.0 / size + r * (0.35 * f_abs - 2.0 / size)
        cand = np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
    else:
        cand = box
    need = SIDEBAND_CLEARANCE * f_abs
    ok = (_clearance(cand, fc) >= need) & (_clearance(-cand, fc) >= need) & (np.hypot(*cand.T) >= 2.0 / size)
    if not low:
        ok &= (_clearance(cand + fc, fc) >= need + band) & (_clearance(-cand - fc, fc) >= need + band)
    idx = np.flatnonzero(ok)
    return cand[idx[0]] if idx.size else None


def dust(size: int, rng: np.random.Generator, f_max: float, strength: tuple[float, float]) -> np.ndarray:
    """Relative intensity (size, size) float32 of 1–2 Fresnel ring patterns ``(1 + cos(π r²/r0²))/2``.

    A Gaussian taper of radius ρ = f_max·r0²/3 ends the chirp (local frequency r/r0²) near ``f_max``,
    inside the DC region: the rings stay out of the +1 order. 2–6 rings are visible; the peak of each
    pattern is drawn from ``strength``.
    """
    xs, ys = grid(size)
    out = np.zeros((size, size), dtype=np.float32)
    for _ in range(int(rng.integers(1, 3))):
        rings = rng.uniform(2.0, 6.0)
        r0 = 3.0 * math.sqrt(rings / 2) / f_max
        taper = f_max * r0 * r0 / 3.0
        cx, cy = rng.uniform(0, size, size=2)
        r2 = ((xs - cx) ** 2 + (ys - cy) ** 2).astype(np.float32)  # (H, W) px²
        amp = np.float32(rng.uniform(*strength) / 2)
        out += amp * (1 + np.cos(r2 * np.float32(math.pi / r0**2))) * np.exp(r2 * np.float32(-0.5 / taper**2))
    return out


# -- camera ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    """One field's camera settings (shared by the hologram and its background)."""

    full_well: float
    """e− at saturation; 0 disables shot and read noise."""
    read_noise: float
    """e−, standard deviation."""
    exposure: float
    """Fraction of the full well that the brightest possible pixel reaches."""
    offset: float
    """Dark offset (black level), fraction of the full well."""
    bits: int | None
    """Quantisation; None keeps floats."""


def expose(intensity: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Expected intensity in full-well units (float32) -> noisy, offset, quantised frame in [0, 1]."""
    frame = intensity
    if cam.full_well > 0:
        # Shot noise in its Gaussian limit (variance = mean, in e−) plus read noise, one draw: the
        # dimmest pixels still collect ≳ 100 e− at these full wells and exposures, where Poisson and
        # Gaussian agree, and rng.poisson cost 10× more.
        electrons = intensity * np.float32(cam.full_well)
        noise = np.sqrt(electrons + np.float32(cam.read_noise**2))
        noise *= rng.standard_normal(intensity.shape, dtype=np.float32)
        frame = (electrons + noise) * np.float32(1 / cam.full_well)
    frame = np.clip(frame + np.float32(cam.offset), 0.0, 1.0)  # the black level comes after the photons
    if cam.bits is not None:
        levels = np.float32(2**cam.bits - 1)
        frame = np.round(frame * levels) / levels
    return frame.astype(np.float32, copy=False)
