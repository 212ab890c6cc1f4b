"""Off-axis hologram simulator: cells, aberrations, carrier, illumination, stray light, camera (docs/reference.md §4).

Forward model, pixel coordinates ``x`` (column) and ``y`` (row), ``s = convention`` (±1)::

    I = |R|² + |O|² + 2|R||O| cos(2π(fx·x + fy·y) + s·φ),   φ = φ_sample + φ_aberration

plus, where drawn, a weak stray wave P (its fringes with R and its replica of O) and dust rings.
Every field draws its own setup from the config's ranges: peak phase, cell shapes (``cells.py``),
aberrations to 4th order, carrier period and angle around the configured one, fringe visibility,
illumination envelope, stray light, full well, read noise, exposure, dark offset and bit depth. The
defaults are broad training ranges; :func:`cross_domain` gives a second, different set for testing
transfer. The sample-free background shares the setup (carrier, aberration, envelope, stray light,
camera settings) and gets new noise.

The object bandwidth ``B`` (cycles/px) is a design parameter of the simulated microscope, like its
numerical aperture: every cell is smoothed so that its steepest phase slope stays below
``2π·B·_SLOPE_MARGIN`` rad/px, and the validator places the carrier, over its whole jitter, against
``B`` plus the slope of the worst aberration (separation ``|f_c| ≥ 3B``, Nyquist ``|f_c| + B ≤ 0.5``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator
from scipy.ndimage import gaussian_filter
from sparseconn_tasks.phase_retrieval import optics
from sparseconn_tasks.phase_retrieval.cells import SHAPES, CellContext, max_slope, render

from sparseconn.registry import RegistryError
from sparseconn.schema import StrictModel

# Cells are capped below the band edge: the spectrum of exp(iφ) has tails past the steepest local
# frequency (curvature, overlapping cells), so the instantaneous frequency only uses 80% of B.
_SLOPE_MARGIN = 0.8
# Share of the slope budget for the cells' smooth bodies; the texture fills the rest exactly (its
# amplitude is set from a bound, see _texture), so the bodies can take most of it.
_BODY_SHARE = 0.85


def _as_range(value: Any) -> Any:
    # A single number fixes the value: `full_well: 0` and `envelope_width: 0.8` still read as before.
    return (value, value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _as_choices(value: Any) -> Any:
    return (value,) if value is None or isinstance(value, int) else value


Range = Annotated[tuple[float, float], BeforeValidator(_as_range)]
Pair = tuple[float, float]
ENVELOPES = ("flat_top", "gaussian")  # see optics.beam


class SimConfig(StrictModel):
    """One simulated off-axis QPI setup family; every range is drawn per field (uniformly unless said).

    Defaults: 256 px, period 3.5 px at 45°, and the broad training ranges below.
    """

    size: int = Field(256, ge=32)
    """Hologram side length in pixels (square fields)."""
    # -- sample ----------------------------------------------------------------------------------------
    phase_range: float = Field(12.0, gt=0.0)
    """The true sample phase stays in ``[0, phase_range]`` rad (the target is phase / phase_range)."""
    peak_phase: tuple[float, float | None] = (0.3, None)
    """Range of the field's peak phase, rad (None: ``phase_range``); the tallest cell is scaled to it.
    Typical peaks: red cells 1–3 rad at 532 nm (rim ≈ 2.6 µm, Δn ≈ 0.06; Park et al., Popescu), white
    cells 2–6 rad, adherent NIH-3T3 cells 0–12 rad (the paper); weak objects a fraction of a rad.
    A peak φ needs cells of radius ≳ 2·φ / (2π·B·0.8·0.85) px (≈ 90 px for 12 rad at B = 0.06) and
    cells grow to at most 0.4× the side: 256-px fields reach ≈ 12 rad, 128-px fields ≈ 10 rad, and
    spread cells (peak on a small nucleus) stay lower."""
    peak_distribution: Literal["log_uniform", "uniform"] = "uniform"
    """How the peak is drawn. Uniform (the default) trains every part of the range equally: with
    log-uniform the median peak of 0.3–12 rad is 1.9 rad, and a demo child trained so lost 3.6 dB on
    fields with uniform peaks (docs/measurements.md); log-uniform weighs weak and strong objects alike."""
    shapes: dict[str, float] = Field(default_factory=lambda: {
        "ellipsoid": 1.0, "irregular": 2.0, "spread": 2.0, "round": 1.5, "biconcave": 1.0, "cluster": 1.0})
    """Relative weights of the cell shapes (``cells.SHAPES``); another mix is another domain."""
    n_cells: tuple[int, int] = (1, 6)
    """Inclusive range of the number of objects per field (a cluster is one object of 2–4 cells)."""
    semi_axis: Range = (16.0, 56.0)
    """Range of the long semi-axis ``a`` of a nucleated cell, px (shapes scale it: spread ×1.3–2,
    round ×0.5–0.9, biconcave ×0.5–0.8; cells too small for their peak grow)."""
    aspect: Range = (0.5, 1.0)
    """Range of ``b / a`` (short over long semi-axis) of the ellipsoid and irregular cells."""
    nucleus_prob: float = Field(0.7, ge=0.0, le=1.0)
    """Probability that an ellipsoid or irregular cell has a nucleus (round and spread cells always do)."""
    nucleus_contrast: Range = (0.2, 0.7)
    """Height of a nucleus over its cell body, relative to the body's peak."""
    texture_amp: float = Field(0.08, ge=0.0, le=0.5)
    """Relative thickness modulation inside cells (smooth random texture, standard deviation), lowered
    where the slope budget needs it."""
    texture_scale: float = Field(4.0, gt=0.0)
    """Correlation length of the texture, px."""
    edge_sigma: float = Field(2.0, ge=0.5)
    """Gaussian blur of the sample phase (optical point-spread function), px."""
    bandwidth: float = Field(0.06, gt=0.0, lt=0.5)
    """Object bandwidth ``B``, cycles/px: cells are smoothed so that |∇φ| ≤ 2π·B·0.8. 0.06 leaves room
    for the default aberrations and carrier jitter at 128 px with the 3.5-px carrier."""
    max_coverage: float = Field(0.5, gt=0.0, le=1.0)
    """No more objects are added once cells cover this fraction of the field: the background (phase 0)
    stays in view, where a single hologram shows the phase's zero (the piston is random), and a
    background fit on the lower half of the pixels holds. Objects wider than 0.4× the side are redrawn
    smaller once."""
    debris_prob: float = Field(0.3, ge=0.0, le=1.0)
    """Probability that a field has 1–3 absorbing debris specks (amplitude only, not in the target)."""
    # -- aberrations (rad; unit radius ρ = 1 at the field's corners) -----------------------------------
    tilt: float = Field(2.0, ge=0.0)
    """Max magnitude of the tilt, rad at ρ = 1, in a random direction."""
    defocus: float = Field(1.5, ge=0.0)
    """Max amplitude of the defocus term 2ρ²−1, rad (sign random)."""
    astigmatism: float = Field(1.0, ge=0.0)
    """Max magnitude of the astigmatism ρ²cos2(θ−θ0), rad, θ0 random."""
    coma: float = Field(0.4, ge=0.0)
    """Max magnitude of the coma (3ρ³−2ρ)cos(θ−θ0), rad, θ0 random."""
    trefoil: float = Field(0.3, ge=0.0)
    """Max magnitude of the trefoil ρ³cos3(θ−θ0), rad, θ0 random."""
    spherical: float = Field(0.2, ge=0.0)
    """Max amplitude of the primary spherical aberration 6ρ⁴−6ρ²+1, rad (sign random)."""
    secondary_astigmatism: float = Field(0.1, ge=0.0)
    """Max magnitude of the secondary astigmatism (4ρ⁴−3ρ²)cos2(θ−θ0), rad, θ0 random."""
    quadrafoil: float = Field(0.2, ge=0.0)
    """Max magnitude of the quadrafoil ρ⁴cos4(θ−θ0), rad, θ0 random. The aberration magnitudes are
    uniform in [0, max]; their worst case, not their typical one, is what the validator budgets."""
    # -- carrier ---------------------------------------------------------------------------------------
    carrier_period: float = Field(3.5, gt=0.0)
    """Nominal fringe period, px (docs/reference.md §4: 3–6 px works; 3.5 px leaves room for the default
    aberrations and jitter down to 128 px fields, whose aberration band grows as 1 / size)."""
    carrier_angle: float = 45.0
    """Nominal fringe direction, degrees from the +x (column) axis towards +y (rows)."""
    carrier_jitter: Pair = (0.03, 3.0)
    """Per-field jitter (relative period, degrees): period ·(1 ± rel), angle ± deg, uniform. Setups
    drift and differ by a few percent and degrees; the validator holds over the whole jitter."""
    convention: Literal[1, -1] = 1
    """Sign of φ in the fringes: −1 simulates the mirrored ``cos(2π f·r − φ)`` (as the carrier −f)."""
    # -- illumination and stray light ------------------------------------------------------------------
    visibility: Range = (0.3, 0.95)
    """Fringe visibility ``2|R||O| / (|R|² + |O|²)`` at the beams' centres (|O| ≤ |R|); typical off-axis
    setups 0.3–0.9."""
    envelope: dict[str, float] = Field(default_factory=lambda: {"gaussian": 2.0, "flat_top": 1.0})
    """Weights of the illumination profiles: ``gaussian`` (laser beam) or ``flat_top`` (super-Gaussian,
    order 2: a beam expanded and cut by an aperture)."""
    envelope_width: Range = (0.2, 2.0)
    """Range of the illumination width (intensity standard deviation of the Gaussian), units of ``size``:
    from a narrow beam that leaves the corners dark (0.2) to nearly flat (2). Down from 0.4: on an
    independent simulator, children trained with 0.2 (two seeds) halved the error under a beam of 0.2
    (0.31 against 0.60 rad) and did better in 32 of 38 conditions (mean 0.141 against 0.154 rad), worse
    on 12 rad peaks (0.72 against 0.44) and, one seed of the two, on 1024² fields (docs/measurements.md)."""
    beam_offset: float = Field(0.15, ge=0.0, le=0.5)
    """Max offset of each beam's centre from the field centre per axis, units of ``size``: the two
    beams are not concentric, so the visibility varies over the field."""
    parasitic_prob: float = Field(0.3, ge=0.0, le=1.0)
    """Probability of a stray plane wave (cover-glass or beam-splitter reflection) in the field."""
    parasitic_strength: Range = (0.01, 0.1)
    """Stray-wave amplitude relative to the object beam (one uncoated surface reflects ≈ 4% of the
    intensity, 0.2 in amplitude; a double reflection ≈ 0.04). Its fringes with R lie away from the +1
    order, low (period ≥ ~10 px) or high frequency; its replica of O shifts the +1 order a little."""
    dust_prob: float = Field(0.3, ge=0.0, le=1.0)
    """Probability of 1–2 ring patterns of out-of-focus dust (Fresnel rings, added intensity)."""
    dust_strength: Range = (0.01, 0.06)
    """Peak intensity of the dust rings relative to the local illumination."""
    # -- camera ----------------------------------------------------------------------------------------
    full_well: Range = (2000.0, 30000.0)
    """Full-well capacity, e−, log-uniform (0 disables shot and read noise). CMOS/CCD machine-vision
    sensors: ≈ 2k (1.85–2.4 µm pixels) to 30k (5.9 µm pixels); with low exposure photon-starved."""
    read_noise: Range = (2.0, 10.0)
    """Read-noise standard deviation, e− (scientific CMOS ≈ 2, machine-vision CCD/CMOS up to ≈ 10)."""
    exposure: Range = (0.3, 0.95)
    """Fraction of the full well reached by the brightest possible pixel (no saturation by design)."""
    dark_offset: Range = (0.0, 0.05)
    """Dark offset (black level), fraction of the full well; exposure + offset may touch saturation."""
    bit_depth: Annotated[tuple[int | None, ...], BeforeValidator(_as_choices)] = (8, 10, 12, 16)
    """Camera quantisation in bits, one drawn per field (None keeps floats): 8-bit webcams and machine
    vision, 10/12-bit CMOS, 16-bit scientific cameras. A single value fixes it."""

    @property
    def carrier(self) -> tuple[float, float]:
        """Nominal carrier frequency ``(fx, fy)`` in cycles/px (each field's carrier is jittered)."""
        theta = math.radians(self.carrier_angle)
        return math.cos(theta) / self.carrier_period, math.sin(theta) / self.carrier_period

    @property
    def aberration_amplitudes(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in optics.ZERNIKE)

    @property
    def band_estimate(self) -> float:
        """Bandwidth ``B`` of the object field, cycles/px: the sample band plus the steepest aberration.

        The sample band is the ``bandwidth`` field (enforced per cell by the simulator). The aberration
        shifts the local carrier by ``|∇φ_ab| / 2π``; its bound is ``max over ρ of Σ amp·max_θ|∇Z|``
        (all terms at full magnitude, each in its worst orientation), over ``2π·R`` with ``R`` the
        half-diagonal in px.
        """
        return self.bandwidth + optics.aberration_band(self.aberration_amplitudes, self.size)

    @property
    def carrier_range(self) -> tuple[float, float]:
        """Smallest and largest ``|f_c|`` over the period jitter, cycles/px."""
        rel = self.carrier_jitter[0]
        return 1 / (self.carrier_period * (1 + rel)), 1 / (self.carrier_period * (1 - rel))

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        for name in ("n_cells", "semi_axis", "aspect", "nucleus_contrast", "visibility", "envelope_width",
                     "parasitic_strength", "dust_strength", "full_well", "read_noise", "exposure", "dark_offset"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be an increasing range of non-negative values, got {(lo, hi)}")
        for name in ("aspect", "visibility", "exposure"):
            if getattr(self, name)[1] > 1.0:
                raise ValueError(f"{name} must be ≤ 1, got {getattr(self, name)}")
        if self.full_well[0] == 0 < self.full_well[1]:
            raise ValueError(f"full_well is drawn log-uniformly: use 0 alone or a positive range, got {self.full_well}")
        if self.visibility[0] <= 0 or self.envelope_width[0] <= 0:
            raise ValueError("visibility and envelope_width must be positive")
        lo, hi = self.peak_phase
        hi = self.phase_range if hi is None else hi
        if not 0 < lo <= hi <= self.phase_range:
            raise ValueError(f"peak_phase must satisfy 0 < lo ≤ hi ≤ phase_range = {self.phase_range:g}, "
                             f"got {self.peak_phase}")
        _check_weights("shapes", self.shapes, ())
        _check_weights("envelope", self.envelope, ENVELOPES)
        if not self.bit_depth or any(b is not None and not 1 <= b <= 16 for b in self.bit_depth):
            raise ValueError(f"bit_depth must be one or more of 1–16 or None, got {self.bit_depth}")
        rel, deg = self.carrier_jitter
        if not (0 <= rel < 0.5 and 0 <= deg <= 90):
            raise ValueError(f"carrier_jitter must be (0 ≤ rel < 0.5, 0 ≤ degrees ≤ 90), got {self.carrier_jitter}")
        band = self.band_estimate
        f_min, f_max = self.carrier_range
        # DC side: the |O|² term spans 2B around DC and the +1 order spans B around f_c (docs/reference.md §4).
        if f_min < 3 * band:
            raise ValueError(
                f"carrier period {self.carrier_period:g} px is too close to DC for {self.size}-px fields: it must "
                f"be ≤ {1 / (3 * band * (1 + rel)):.2f} px so that the +1 order clears the |O|² term over the "
                f"±{rel:g} period jitter (|f_c| ≥ 3B, B = {band:.3f} cycles/px: bandwidth {self.bandwidth:g} plus "
                f"the aberrations' {band - self.bandwidth:.3f}, which grows as 1 / size); a larger size, "
                "smaller aberrations or a shorter period fit")
        if f_max + band > 0.5:
            raise ValueError(
                f"carrier period {self.carrier_period:g} px is past Nyquist: it must be > "
                f"{1 / ((0.5 - band) * (1 - rel)):.2f} px so that the +1 order plus the object band fits over "
                f"the ±{rel:g} period jitter (f_c + B ≤ 0.5 cycles/px, B = {band:.3f})")
        return self


def _check_weights(field: str, weights: dict[str, float], known: list[str] | tuple[str, ...]) -> None:
    for name, w in weights.items():
        if field == "shapes":
            try:
                SHAPES.get(name)  # the registry's message lists the shapes and suggests the closest
            except RegistryError as err:  # pydantic reports ValueError, not KeyError
                raise ValueError(f"{field}: {err}") from None
        elif name not in known:
            raise ValueError(f"{field}: unknown name {name!r}; available: {', '.join(known)}")
        if not w >= 0:
            raise ValueError(f"{field}: weight of {name!r} must be ≥ 0, got {w}")
    if not any(w > 0 for w in weights.values()):
        raise ValueError(f"{field} needs at least one positive weight, got {weights}")


@dataclass(frozen=True)
class Sample:
    """One simulated field; every array is float32 of shape (size, size)."""

    hologram: np.ndarray
    """Camera frame in [0, 1] (full well = 1)."""
    phase: np.ndarray
    """True unwrapped, aberration-free sample phase in rad, background 0, within [0, phase_range]."""
    background: np.ndarray
    """Sample-free hologram of the same setup (carrier, aberration, illumination, stray light; new noise)."""
    aberration: np.ndarray
    """Aberration phase in rad, fringe piston included (not part of the target)."""
    carrier: tuple[float, float]
    """This field's carrier frequency (fx, fy) in cycles/px (the jittered one)."""


# -- sample ------------------------------------------------------------------------------------------
def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo if lo == hi else math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _texture(body: np.ndarray, cfg: SimConfig, rng: np.random.Generator, s_max: float) -> np.ndarray:
    """``body·(1 + k·t)``: t a smooth unit noise clipped at ±3, k ≤ texture_amp kept inside ``s_max``.

    |∇(body(1 + k·t))| ≤ S_b(1 + 3k) + k·P·G_t (S_b, P the body's slope and peak, G_t = max|∇t|), so
    k = (s_max − S_b) / (3S_b + P·G_t) fills the budget and no more (sample_phase checks the result).
    The noise is drawn at half resolution and repeated (the PSF blur that follows smooths the 2-px
    steps): a quarter of the filtering, which was the costliest step at 256².
    """
    n = body.shape[0]
    half = gaussian_filter(rng.standard_normal(((n + 1) // 2, (n + 1) // 2)), cfg.texture_scale / 2, truncate=3.0)
    half = np.clip(half / (half.std() + 1e-12), -3.0, 3.0)
    g_t = max_slope(half) / 2 if min(half.shape) >= 3 else 0.0  # per full-resolution px
    t = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)[:n, :n]  # (n, n)
    s_b, peak = max_slope(body), float(body.max())
    k = min(cfg.texture_amp, max(s_max - s_b, 0.0) / (3 * s_b + peak * g_t + 1e-12))
    return body * (1.0 + k * t)


def sample_phase(cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """Sample phase map (size, size) float64 in rad, within [0, phase_range] and the band.

    The field's peak is drawn from ``peak_phase``; the first object gets it, the others 30–100% of it.
    After texture and blur the field is scaled to that peak, or less where the slope budget binds.
    """
    n = cfg.size
    lo, hi = cfg.peak_phase
    hi = cfg.phase_range if hi is None else hi
    target = _log_uniform(rng, lo, hi) if cfg.peak_distribution == "log_uniform" else rng.uniform(lo, hi)
    s_max = 2 * math.pi * cfg.bandwidth * _SLOPE_MARGIN  # rad/px
    ctx = CellContext(slope=_BODY_SHARE * s_max, max_radius=0.4 * n, aspect=cfg.aspect,
                      nucleus_prob=cfg.nucleus_prob, nucleus_contrast=cfg.nucleus_contrast)
    phase = np.zeros((n, n))
    placed: list[tuple[float, float, float]] = []
    for i in range(int(rng.integers(cfg.n_cells[0], cfg.n_cells[1] + 1))):
        height = target if i == 0 else target * rng.uniform(0.3, 1.0)
        shape, a = SHAPES.get(_choose(cfg.shapes, rng)), rng.uniform(*cfg.semi_axis)
        cell = shape(rng, ctx, a, height)
        if cell.extent > ctx.max_radius:  # spread cells and clusters: one redraw, scaled to fit the field
            cell = shape(rng, ctx, a * ctx.max_radius / cell.extent, height)
        # A few rejection tries keep cells from piling up; touching and partial overlap stay allowed.
        # The first (tallest) object is centred inside the field, so its peak is in view.
        lo_c, hi_c = (0.15 * n, 0.85 * n) if i == 0 else (-0.1 * n, 1.1 * n)
        for _try in range(10):
            cx, cy = rng.uniform(lo_c, hi_c, size=2)
            if all(math.hypot(cx - px, cy - py) >= 0.8 * (cell.extent + pe) for px, py, pe in placed):
                break
        placed.append((cx, cy, cell.extent))
        box, x0, y0 = render(cell, (cx, cy), height, ctx.slope, n)
        phase[y0:y0 + box.shape[0], x0:x0 + box.shape[1]] += box
        if np.count_nonzero(phase > 0.02 * target) >= cfg.max_coverage * n * n:
            break
    if phase.max() <= 0:
        return phase
    if cfg.texture_amp > 0:
        phase = _texture(phase, cfg, rng, s_max)
    # The optical PSF; truncate=3 keeps the background exactly 0 away from cells. "nearest": a cell cut
    # by the border must not get a cliff there (zero padding made one and flattened whole fields).
    phase = gaussian_filter(phase, cfg.edge_sigma, mode="nearest", truncate=3.0)
    peak, slope = float(phase.max()), max_slope(phase)
    # Overlapping cells may add up past the peak or the band: scale the field rather than clip it.
    scale = min(target / peak, s_max / slope if slope > 0 else math.inf, cfg.phase_range / peak)
    return phase * scale


def _draw_camera(cfg: SimConfig, rng: np.random.Generator) -> optics.Camera:
    fw = _log_uniform(rng, *cfg.full_well) if cfg.full_well[1] > 0 else 0.0
    return optics.Camera(fw, rng.uniform(*cfg.read_noise), rng.uniform(*cfg.exposure), rng.uniform(*cfg.dark_offset),
                         cfg.bit_depth[int(rng.integers(len(cfg.bit_depth)))])


def _choose(weights: dict[str, float], rng: np.random.Generator) -> str:
    names = [k for k, w in weights.items() if w > 0]
    p = np.array([weights[k] for k in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def simulate(cfg: SimConfig, rng: np.random.Generator) -> Sample:
    """Simulate one field: hologram, true phase, sample-free background and aberration.

    Deterministic for a given ``rng`` state (use ``np.random.default_rng(seed)``). The draws run in
    a fixed order (sample, aberration, carrier, camera, beams, debris, stray light, dust) and none
    depends on the carrier's direction, so configs that differ only there give the same cells.
    """
    n = cfg.size
    phase = sample_phase(cfg, rng)
    aberration = optics.aberration(cfg.aberration_amplitudes, n, rng)
    rel, deg = cfg.carrier_jitter
    period = cfg.carrier_period * (1 + rng.uniform(-rel, rel))
    theta = math.radians(cfg.carrier_angle + rng.uniform(-deg, deg))
    fx, fy = math.cos(theta) / period, math.sin(theta) / period
    cam = _draw_camera(cfg, rng)
    # Beams: |R| peaks at 1, |O| at the ratio r ≤ 1 that gives the drawn visibility V = 2r / (1 + r²).
    v = rng.uniform(*cfg.visibility)
    ratio = (1 - math.sqrt(1 - v * v)) / v
    kind = _choose(cfg.envelope, rng)
    width = rng.uniform(*cfg.envelope_width) * n
    centres = (n - 1) / 2 + rng.uniform(-cfg.beam_offset, cfg.beam_offset, size=(2, 2)) * n
    # float32 from here on: cos and exp run 3–4× faster, and the ramps are reduced mod 2π first.
    ref = optics.beam(n, kind, width, centres[0])  # (H, W)
    obj = np.float32(ratio) * optics.beam(n, kind, width, centres[1])
    obj_sample = obj * optics.debris(n, rng) if rng.random() < cfg.debris_prob else obj
    stray = (optics.stray_frequency(rng, np.array([fx, fy]), n, cfg.band_estimate)
             if rng.random() < cfg.parasitic_prob else None)
    p = np.float32(ratio * rng.uniform(*cfg.parasitic_strength) if stray is not None else 0.0) * ref
    psi = rng.uniform(0.0, 2 * math.pi)
    # Dust rings stay below half the smallest carrier: clear of the +1 order's window (0.38·|f_c|).
    dust = (optics.dust(n, rng, 0.5 * cfg.carrier_range[0], cfg.dust_strength)
            if rng.random() < cfg.dust_prob else None)

    carrier = optics.ramp(fx, fy, 0.0, n)  # (H, W) rad
    ref2 = ref * ref
    setup = ref2 + obj * obj  # the illumination without fringes
    stray_phase = optics.ramp(stray[0], stray[1], psi, n) if stray is not None else None
    stray_fringes = p * p + 2 * ref * p * np.cos(stray_phase) if stray_phase is not None else None
    sign = np.float32(cfg.convention)

    def intensity(o: np.ndarray, phi: np.ndarray) -> np.ndarray:
        total = carrier + sign * phi
        out = ref2 + o * o
        out += 2 * ref * o * np.cos(total)  # docs/reference.md §4 forward model
        if stray_phase is not None:
            # |R e^{−iθc} + O e^{isφ} + P e^{−i(θc+θp+ψ)}|²: R·P fringes at f_p, O's replica at f_c + f_p.
            out += stray_fringes
            out += 2 * o * p * np.cos(total + stray_phase)
        if dust is not None:
            out += dust * setup  # rings add light in proportion to the illumination
        return out

    # Exposure: the brightest possible pixel, (|R| + |O| + |P|)² plus the rings, gets `exposure`.
    bright = np.square(ref + obj + p)
    if dust is not None:
        bright += dust * setup
    gain = np.float32(cam.exposure / float(bright.max()))
    phase32, aberration32 = phase.astype(np.float32), aberration.astype(np.float32)
    return Sample(
        hologram=optics.expose(gain * intensity(obj_sample, phase32 + aberration32), cam, rng),
        phase=phase32,
        background=optics.expose(gain * intensity(obj, aberration32), cam, rng),
        aberration=aberration32,
        carrier=(fx, fy),
    )


# -- a second domain ---------------------------------------------------------------------------------
def _carrier_room(cfg: SimConfig, rel: float) -> float:
    """Band left for aberrations with period jitter ``rel``, cycles/px (≤ 0: none)."""
    f_min, f_max = 1 / (cfg.carrier_period * (1 + rel)), 1 / (cfg.carrier_period * (1 - rel))
    return min(f_min / 3, 0.5 - f_max) - cfg.bandwidth


def cross_domain(cfg: SimConfig, **overrides: Any) -> SimConfig:
    """A second set of ranges for a built-in cross-domain test (like the paper's white-blood-cell set
    from another setup): same size, carrier, band and phase range as ``cfg``, everything else other.

    - sample: mostly round cells with nuclei, red cells and clusters, few spread cells; more, smaller
      (0.6–0.75× the semi-axis), rounder cells; peaks from 1 rad; denser nuclei, less texture;
    - setup: up to twice the carrier jitter (what the validator allows), aberrations dominated by
      defocus, spherical and astigmatism (scaled down where ``cfg.size`` leaves less band), low fringe
      visibility 0.15–0.6, wide flat-top illumination, frequent stray fringes and dust, more debris;
    - camera: small full wells 1k–8k e−, read noise 5–20 e−, exposure 0.5–0.9, offsets 2–8%, 8 or
      12 bits.

    ``overrides`` (fields of :class:`SimConfig`) are set on top of these ranges.
    """
    rel, deg = cfg.carrier_jitter
    rel2 = max((r for r in (min(2 * rel + 0.01, 0.06), 1.5 * rel, rel) if _carrier_room(cfg, r) > 0.005),
               default=rel)
    update: dict[str, Any] = {
        "shapes": {"round": 4.0, "biconcave": 3.0, "cluster": 2.0, "spread": 0.5},
        "n_cells": (max(cfg.n_cells[0], 2), cfg.n_cells[1] + 2),
        "semi_axis": (0.6 * cfg.semi_axis[0], 0.75 * cfg.semi_axis[1]),
        "aspect": (0.75, 1.0),
        "peak_phase": (min(1.0, cfg.phase_range), None),
        "peak_distribution": "uniform",
        "nucleus_prob": 0.9,
        "nucleus_contrast": (0.3, 0.8),
        "texture_amp": 0.4 * cfg.texture_amp,
        "debris_prob": 0.5,
        "carrier_jitter": (rel2, min(2 * deg + 1.0, 10.0)),
        "visibility": (0.15, 0.6),
        "envelope": {"flat_top": 1.0},
        "envelope_width": (1.0, 3.0),
        "beam_offset": 0.25,
        "parasitic_prob": 0.7,
        "parasitic_strength": (0.03, 0.12),
        "dust_prob": 0.6,
        "dust_strength": (0.03, 0.1),
        "full_well": (1000.0, 8000.0),
        "read_noise": (5.0, 20.0),
        "exposure": (0.5, 0.9),
        "dark_offset": (0.02, 0.08),
        "bit_depth": (8, 12),
    }
    # Aberrations: defocus, spherical and astigmatism first; scaled to fit the band left by the jitter.
    aberr = {"tilt": 1.0, "defocus": 3.0, "astigmatism": 1.5, "coma": 0.2, "trefoil": 0.2, "spherical": 0.5,
             "secondary_astigmatism": 0.2, "quadrafoil": 0.1}
    need = optics.aberration_band(tuple(aberr[k] for k in optics.ZERNIKE), cfg.size)
    scale = min(1.0, 0.97 * max(_carrier_room(cfg, rel2), 0.0) / need)
    update.update({k: v * scale for k, v in aberr.items()})
    return SimConfig.model_validate({**cfg.model_dump(), **update, **overrides})
