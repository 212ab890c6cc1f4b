"""Off-axis hologram simulator: cells, aberrations, carrier, camera noise (REFERENCE §4).

Forward model, pixel coordinates ``x`` (column) and ``y`` (row)::

    I = |R|² + |O|² + 2|R||O| cos(2π(fx·x + fy·y) + φ),   φ = φ_sample + φ_aberration

Cells are rotated ellipsoids of thickness ``t = 2c·√(1 − x'²/a² − y'²/b²)`` (plus an optional
nucleus and a smooth texture) with phase ``2π·Δn·t/λ``, blurred by the optical point-spread function.
The object bandwidth ``B`` (cycles/px) is a design parameter of the simulated microscope, like its
numerical aperture: every cell is smoothed so that its steepest phase slope stays below
``2π·B·_SLOPE_MARGIN`` rad/px, and the validator places the carrier against ``B`` plus the slope of
the worst aberration (separation ``|f_c| ≥ 3B``, Nyquist ``|f_c| + B ≤ 0.5`` cycles/px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.ndimage import gaussian_filter

# Edge slope of a Gaussian-blurred √d profile is 0.511/√σ (measured numerically; independent of σ).
_SQRT_EDGE_SLOPE = 0.511
# Cells are capped below the band edge: the spectrum of exp(iφ) has tails past the steepest local
# frequency (curvature, overlapping cells), so the instantaneous frequency only uses 80% of B.
_SLOPE_MARGIN = 0.8
_BODY_SHARE = 0.75  # share of the slope budget for a cell's smooth body; its texture gets the rest
Range = tuple[float, float]


class SimConfig(BaseModel):
    """Configuration of one simulated off-axis QPI field (defaults: 256 px, period 3.5 px at 45°)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    size: int = Field(256, ge=32)
    """Hologram side length in pixels (square fields)."""
    n_cells: tuple[int, int] = (1, 6)
    """Inclusive range of the number of cells per field."""
    semi_axis: Range = (16.0, 56.0)
    """Range of the long semi-axis ``a`` of a cell, px."""
    aspect: Range = (0.5, 1.0)
    """Range of ``b / a`` (short over long semi-axis)."""
    thickness: Range = (3.0, 12.0)
    """Range of the central cell thickness ``2c``, µm."""
    delta_n: Range = (0.02, 0.06)
    """Range of the refractive-index contrast ``n_cell − n_medium``."""
    nucleus_prob: float = Field(0.7, ge=0.0, le=1.0)
    """Probability that a cell has a nucleus (a smaller ellipsoid on top)."""
    nucleus_contrast: Range = (0.2, 0.7)
    """Peak phase of the nucleus as a fraction of the cell's peak phase."""
    texture_amp: float = Field(0.08, ge=0.0, le=0.5)
    """Relative thickness modulation inside cells (smooth random texture, standard deviation)."""
    texture_scale: float = Field(4.0, gt=0.0)
    """Correlation length of the texture, px."""
    edge_sigma: float = Field(2.0, ge=0.5)
    """Minimum Gaussian blur of the sample phase (optical point-spread function), px."""
    bandwidth: float = Field(0.05, gt=0.0, lt=0.5)
    """Object bandwidth ``B``, cycles/px: cells are smoothed so that |∇φ| ≤ 2π·B·0.8."""
    phase_range: float = Field(12.0, gt=0.0)
    """The true sample phase stays in ``[0, phase_range]`` rad (the target is phase / phase_range)."""
    wavelength: float = Field(0.532, gt=0.0)
    """Illumination wavelength, µm."""
    tilt: float = Field(2.0, ge=0.0)
    """Max amplitude of each tilt term u, v, rad (ρ = √(u² + v²) = 1 at the field's corners)."""
    defocus: float = Field(2.5, ge=0.0)
    """Max amplitude of the defocus term 2ρ²−1, rad."""
    astigmatism: float = Field(1.0, ge=0.0)
    """Max amplitude of each astigmatism term ρ²cos2θ, ρ²sin2θ, rad."""
    coma: float = Field(0.5, ge=0.0)
    """Max amplitude of each coma term (3ρ³−2ρ)cosθ, (3ρ³−2ρ)sinθ, rad."""
    carrier_period: float = Field(3.5, gt=0.0)
    """Fringe period, px (REFERENCE §4: 3–6 px works; 3.5 px leaves room for the default aberrations
    down to 128 px fields, whose band grows as 1 / size)."""
    carrier_angle: float = 45.0
    """Fringe direction, degrees from the +x (column) axis towards +y (rows)."""
    ref_amplitude: float = Field(1.0, gt=0.0)
    """Reference-beam amplitude |R| at the beam centre."""
    obj_amplitude: float = Field(0.8, gt=0.0)
    """Object-beam amplitude |O| at the beam centre (fringe visibility 2|R||O| / (|R|² + |O|²))."""
    envelope_width: float = Field(0.8, gt=0.0)
    """Standard deviation of the Gaussian illumination intensity, in units of ``size``."""
    full_well: float = Field(10000.0, ge=0.0)
    """Photons at saturation for Poisson noise (0 disables shot noise)."""
    read_noise: float = Field(5.0, ge=0.0)
    """Read-noise standard deviation, photo-electrons."""
    bit_depth: int | None = Field(8, ge=1, le=16)
    """Camera quantisation in bits (None keeps floats)."""
    debris_prob: float = Field(0.3, ge=0.0, le=1.0)
    """Probability that a field has 1–3 absorbing debris specks (amplitude only, not in the target)."""

    @property
    def carrier(self) -> tuple[float, float]:
        """Carrier frequency ``(fx, fy)`` in cycles/px."""
        theta = math.radians(self.carrier_angle)
        return math.cos(theta) / self.carrier_period, math.sin(theta) / self.carrier_period

    @property
    def band_estimate(self) -> float:
        """Bandwidth ``B`` of the object field, cycles/px: the sample band plus the steepest aberration.

        The sample band is the ``bandwidth`` field (enforced per cell by the simulator). The aberration
        shifts the local carrier by ``|∇φ_ab| / 2π``; its bound is ``max over the field of Σ amp·|∇Z|``
        (all terms at full amplitude, aligned), divided by ``2π·R`` with ``R`` the half-diagonal in px.
        """
        return self.bandwidth + _aberration_band(self.tilt, self.defocus, self.astigmatism, self.coma, self.size)

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        for name in ("n_cells", "semi_axis", "aspect", "thickness", "delta_n", "nucleus_contrast"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be an increasing range of non-negative values, got {(lo, hi)}")
        if self.aspect[1] > 1.0:
            raise ValueError(f"aspect must be ≤ 1 (b / a with a the long semi-axis), got {self.aspect}")
        band = self.band_estimate
        f_c = 1.0 / self.carrier_period
        # DC side: the |O|² term spans 2B around DC and the +1 order spans B around f_c (REFERENCE §4).
        if f_c < 3 * band:
            raise ValueError(
                f"carrier period {self.carrier_period:g} px is too close to DC: it must be ≤ {1 / (3 * band):.2f} px"
                f" so that the +1 order clears the |O|² term (|f_c| ≥ 3B, B = {band:.3f} cycles/px)")
        if f_c + band > 0.5:
            raise ValueError(
                f"carrier period {self.carrier_period:g} px is past Nyquist: it must be > {1 / (0.5 - band):.2f} px"
                f" so that the +1 order plus the object band (f_c + B ≤ 0.5 cycles/px, B = {band:.3f}) fits")
        return self


@dataclass(frozen=True)
class Sample:
    """One simulated field; every array is float32 of shape (size, size)."""

    hologram: np.ndarray
    """Camera frame in [0, 1] (full well = 1)."""
    phase: np.ndarray
    """True unwrapped, aberration-free sample phase in rad, background 0, within [0, phase_range]."""
    background: np.ndarray
    """Sample-free hologram with the same carrier, aberration and illumination (new noise)."""
    aberration: np.ndarray
    """Aberration phase in rad (not part of the target)."""
    carrier: tuple[float, float]
    """Carrier frequency (fx, fy) in cycles/px."""


def _zernike_terms(u: np.ndarray, v: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    """The aberration terms in unit-radius coordinates (ρ = 1 at the corners), keyed by amplitude field."""
    r2 = u * u + v * v
    return {"tilt": (u, v), "defocus": (2 * r2 - 1,), "astigmatism": (u * u - v * v, 2 * u * v),
            "coma": ((3 * r2 - 2) * u, (3 * r2 - 2) * v)}


@lru_cache(maxsize=64)
def _aberration_band(tilt: float, defocus: float, astigmatism: float, coma: float, size: int) -> float:
    """Upper bound of the aberration's local frequency over the field, cycles/px."""
    g = np.linspace(-1 / math.sqrt(2.0), 1 / math.sqrt(2.0), 65)  # the field in unit-radius coordinates
    u, v = np.meshgrid(g, g)
    amps = {"tilt": tilt, "defocus": defocus, "astigmatism": astigmatism, "coma": coma}
    total = np.zeros_like(u)
    for name, terms in _zernike_terms(u, v).items():
        for term in terms:
            gy, gx = np.gradient(term, g, g, edge_order=2)
            total += amps[name] * np.hypot(gx, gy)  # aligned gradients: the triangle inequality's worst case
    return float(total.max()) / (2 * math.pi * size / math.sqrt(2.0))


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    # Cached (1, W) and (H, 1) pixel coordinates; broadcasting keeps memory at O(size).
    x = np.arange(size, dtype=np.float64)
    return x[None, :], x[:, None]


def _aberration(cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """Low-order Zernike aberration (size, size) rad: each term times its amplitude times U(−1, 1)."""
    xs, ys = _grid(cfg.size)
    radius = cfg.size / math.sqrt(2.0)
    u = (xs - (cfg.size - 1) / 2) / radius  # (1, W)
    v = (ys - (cfg.size - 1) / 2) / radius  # (H, 1)
    amps = {"tilt": cfg.tilt, "defocus": cfg.defocus, "astigmatism": cfg.astigmatism, "coma": cfg.coma}
    out = np.zeros((cfg.size, cfg.size))
    for name, terms in _zernike_terms(u, v).items():
        for term in terms:
            out += amps[name] * rng.uniform(-1.0, 1.0) * term
    return out


def _ellipsoid(xs: np.ndarray, ys: np.ndarray, a: float, b: float, angle: float) -> np.ndarray:
    """√(1 − x'²/a² − y'²/b²) clipped at 0 in rotated, centred coordinates (broadcast to a 2-D box)."""
    ca, sa = math.cos(angle), math.sin(angle)
    xr = xs * ca + ys * sa
    yr = -xs * sa + ys * ca
    return np.sqrt(np.clip(1.0 - (xr / a) ** 2 - (yr / b) ** 2, 0.0, None))


def _max_slope(phi: np.ndarray) -> float:
    gy, gx = np.gradient(phi)
    return float(np.sqrt((gx * gx + gy * gy).max()))


def _add_cell(phase: np.ndarray, cfg: SimConfig, rng: np.random.Generator, centre: tuple[float, float],
              a: float) -> None:
    """Draw one cell (ellipsoid + nucleus, then texture), smooth it to the band and add it in place."""
    b = a * rng.uniform(*cfg.aspect)
    angle = rng.uniform(0.0, math.pi)
    peak = 2 * math.pi * rng.uniform(*cfg.delta_n) * rng.uniform(*cfg.thickness) / cfg.wavelength  # rad
    max_slope = 2 * math.pi * cfg.bandwidth * _SLOPE_MARGIN  # rad/px
    # The smooth body gets 75% of the slope budget, the texture the rest.
    body_slope = _BODY_SHARE * max_slope
    # σ that keeps the blurred rim slope peak·√(2/b)·0.511/√σ below body_slope (sharpest rim: short axis).
    sigma = max(cfg.edge_sigma, (peak * math.sqrt(2.0 / b) * _SQRT_EDGE_SLOPE / body_slope) ** 2)
    sigma = min(sigma, b)
    half = int(math.ceil(a + 3 * sigma)) + 1
    cx, cy = centre
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    xs = np.arange(x0, x0 + 2 * half + 1, dtype=np.float64)[None, :] - cx  # (1, w)
    ys = np.arange(y0, y0 + 2 * half + 1, dtype=np.float64)[:, None] - cy  # (h, 1)
    raw = peak * _ellipsoid(xs, ys, a, b, angle)  # (h, w) rad, thickness 2c·√(…) times 2πΔn/λ
    if rng.random() < cfg.nucleus_prob:
        frac = rng.uniform(0.3, 0.5)
        off = rng.uniform(-0.3, 0.3, size=2) * (a, b)
        nucleus = _ellipsoid(xs - off[0], ys - off[1], a * frac, b * frac, angle + rng.uniform(-0.5, 0.5))
        raw = raw + rng.uniform(*cfg.nucleus_contrast) * peak * nucleus
    for _ in range(4):
        # The rim formula ignores the nucleus: measure, and widen σ until the body fits its budget.
        body = gaussian_filter(raw, sigma, mode="constant", truncate=3.0)
        slope = _max_slope(body)
        if slope <= body_slope or sigma >= b:
            break
        sigma = min(b, sigma * (slope / body_slope) ** 2)
    if slope > body_slope:
        body *= body_slope / slope
        slope = body_slope
    box = body
    if cfg.texture_amp > 0:
        # Texture after the body blur, so a wide σ does not erase it; blurred by the PSF too.
        tex = gaussian_filter(rng.standard_normal(body.shape), math.hypot(cfg.texture_scale, cfg.edge_sigma),
                              truncate=3.0)
        tex = body * cfg.texture_amp * np.clip(tex / (tex.std() + 1e-12), -3, 3)
        # |∇(body + k·tex)| ≤ |∇body| + k·|∇tex|: k fills the remaining budget, at most 1.
        k = min(1.0, (max_slope - slope) / max(_max_slope(tex), 1e-12))
        box = np.clip(body + k * tex, 0.0, None)
    # Paste the part of the box that falls inside the field (cells may extend past the border).
    n = cfg.size
    sy, sx = slice(max(y0, 0), min(y0 + box.shape[0], n)), slice(max(x0, 0), min(x0 + box.shape[1], n))
    if sy.start < sy.stop and sx.start < sx.stop:
        phase[sy, sx] += box[sy.start - y0:sy.stop - y0, sx.start - x0:sx.stop - x0]


def sample_phase(cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """Sample phase map (size, size) float64 in rad, within [0, phase_range] and the band."""
    n = cfg.size
    phase = np.zeros((n, n))
    centres: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(cfg.n_cells[0], cfg.n_cells[1] + 1))):
        a = rng.uniform(*cfg.semi_axis)
        # A few rejection tries keep cells from piling up; touching and partial overlap stay allowed.
        for _try in range(10):
            cx, cy = rng.uniform(-0.1 * n, 1.1 * n, size=2)
            if all(math.hypot(cx - px, cy - py) >= 0.8 * (a + pa) for px, py, pa in centres):
                break
        centres.append((cx, cy, a))
        _add_cell(phase, cfg, rng, (cx, cy), a)
    slope = _max_slope(phase)
    max_slope = 2 * math.pi * cfg.bandwidth * _SLOPE_MARGIN
    scale = min(1.0, max_slope / slope if slope > 0 else 1.0,
                cfg.phase_range / phase.max() if phase.max() > 0 else 1.0)
    # Overlapping cells may add up past the band or the range: flatten the field rather than clip it.
    return phase * scale


def _camera(intensity: np.ndarray, cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """Expected intensity in full-well units -> noisy, quantised frame in [0, 1]."""
    frame = intensity
    if cfg.full_well > 0:
        frame = rng.poisson(intensity * cfg.full_well) / cfg.full_well
        frame = frame + rng.normal(0.0, cfg.read_noise / cfg.full_well, size=frame.shape)
    frame = np.clip(frame, 0.0, 1.0)
    if cfg.bit_depth is not None:
        levels = 2**cfg.bit_depth - 1
        frame = np.round(frame * levels) / levels
    return frame.astype(np.float32)


def simulate(cfg: SimConfig, rng: np.random.Generator) -> Sample:
    """Simulate one field: hologram, true phase, sample-free background and aberration.

    Deterministic for a given ``rng`` state (use ``np.random.default_rng(seed)``).
    """
    n = cfg.size
    xs, ys = _grid(n)
    phase = sample_phase(cfg, rng)
    aberration = _aberration(cfg, rng)
    # Gaussian illumination shared by both beams, centre jittered by up to 10% of the field.
    cx, cy = (n - 1) / 2 + rng.uniform(-0.1, 0.1, size=2) * n
    env = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (4 * (cfg.envelope_width * n) ** 2))  # amplitude
    ref = cfg.ref_amplitude * env
    obj = cfg.obj_amplitude * env
    obj_sample = obj
    if rng.random() < cfg.debris_prob:
        dip = np.ones((n, n))
        for _ in range(int(rng.integers(1, 4))):
            dx, dy = rng.uniform(0, n, size=2)
            s = rng.uniform(3.0, 6.0)  # ≥ 3 px keeps the amplitude band narrower than B
            dip *= 1 - rng.uniform(0.3, 0.8) * np.exp(-((xs - dx) ** 2 + (ys - dy) ** 2) / (2 * s * s))
        obj_sample = obj * dip
    fx, fy = cfg.carrier
    carrier = 2 * np.pi * (fx * xs + fy * ys)  # (H, W) rad
    # Exposure: the brightest possible pixel, (|R| + |O|)², sits at 90% of the full well.
    gain = 0.9 / float(((ref + obj) ** 2).max())

    def frame(o: np.ndarray, phi: np.ndarray) -> np.ndarray:
        intensity = ref**2 + o**2 + 2 * ref * o * np.cos(carrier + phi)  # REFERENCE §4 forward model
        return _camera(gain * intensity, cfg, rng)

    return Sample(
        hologram=frame(obj_sample, phase + aberration),
        phase=phase.astype(np.float32),
        background=frame(obj, aberration),
        aberration=aberration.astype(np.float32),
        carrier=(fx, fy),
    )
