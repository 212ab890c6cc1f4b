"""Cell shapes of the hologram simulator: registered, drawn into local boxes, kept inside the band.

A shape turns ``(rng, ctx, a, height)`` (long semi-axis ``a`` px, peak phase ``height`` rad) into a
:class:`Cell`: a few :class:`Blob` s, each an ellipse with a radial profile ``h(ρ)`` (ρ = 1 on the
outline), an optional low-order Fourier perturbation of the outline radius, an offset and a relative
height. :func:`render` smooths every blob's profile along ρ just enough for the slope budget (the
microscope's band, see ``simulate.py``), sums the blobs in one box around the cell and scales the box to
``height``, or lower where the slope budget binds. Cells that must be tall for their size grow first
(:func:`grow`): a peak φ needs a radius of about ``2·φ / slope``.

Register a shape with ``@register_shape("name")``; ``SimConfig.shapes`` weights the shapes by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d

from sparseconn.registry import Registry, make_register

Range = tuple[float, float]

_RHO = np.linspace(0.0, 4.0, 801)  # radial grid of the profile tables: ρ ≤ 1 + 3σ with σ ≤ 1
_RHO2 = _RHO**2  # tables are looked up by ρ²: no square root per pixel
_SIGMAS = np.geomspace(0.004, 1.0, 28)  # candidate smoothing widths, in units of ρ
_GROW = 2.0  # radius ≥ 2·peak / slope: a dome smoothed (σ ≈ 0.35) to the slope budget; the smoothest reach 1.6


@dataclass(frozen=True)
class CellContext:
    """What the shapes read from the simulator's config."""

    slope: float
    """Slope budget of a cell's smooth body, rad/px."""
    max_radius: float
    """Largest semi-axis a cell may grow to, px."""
    aspect: Range
    """Range of ``b / a`` for the generic shapes."""
    nucleus_prob: float
    """Probability of a nucleus for the shapes where it is optional."""
    nucleus_contrast: Range
    """Height of a nucleus over its cell body, relative to the body's peak."""


@dataclass(frozen=True)
class Blob:
    """One elliptic bump of a cell, coordinates relative to the cell centre (px, rad)."""

    profile: tuple[str, float]
    """Radial profile (name, parameter), see :func:`_raw_profile`."""
    a: float
    b: float
    angle: float
    dx: float = 0.0
    dy: float = 0.0
    height: float = 1.0
    """Peak of this blob relative to the cell's body."""
    harmonics: tuple[tuple[int, float, float], ...] = ()
    """Outline radius ``1 + Σ c·cos(k(θ − θ_k))`` as ``(k, c, θ_k)``."""


@dataclass(frozen=True)
class Cell:
    blobs: tuple[Blob, ...]
    extent: float
    """Radius of the cell's footprint, px (for placement)."""


CellShape = Callable[[np.random.Generator, CellContext, float, float], Cell]
SHAPES: Registry[CellShape] = Registry("cell shape")
register_shape = make_register(SHAPES)


# -- profiles ----------------------------------------------------------------------------------------
def _raw_profile(name: str, p: float) -> np.ndarray:
    """h(ρ) on ``_RHO``, peak 1, 0 outside ρ = 1."""
    x = np.clip(1.0 - _RHO**2, 0.0, None)
    if name == "power":  # (1 − ρ²)^p: p = ½ the ellipsoid (a sphere's chord), p = 1 a flatter dome
        h = x**p
    elif name == "plateau":  # flat lamella with a steep rim (spread cells): (1 − ρ⁴)^½
        h = np.sqrt(np.clip(1.0 - _RHO**4, 0.0, None))
    elif name == "biconcave":
        # Evans & Fung (1972) red-cell thickness: √(1 − ρ²)(C0 + C1ρ² + C2ρ⁴), C = 0.81, 7.83, −4.39 µm
        # (0.81 µm at the centre, 2.57 µm on the rim at ρ ≈ 0.7).
        r2 = _RHO**2
        h = np.sqrt(x) * np.clip(0.81 + 7.83 * r2 - 4.39 * r2 * r2, 0.0, None)
    else:
        raise ValueError(f"unknown profile {name!r}")
    return h / h.max()


@lru_cache(maxsize=64)
def _tables(name: str, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Profile smoothed along ρ at every ``_SIGMAS``: (tables (S, R) with peak 1, max |dh/dρ| (S,))."""
    raw = _raw_profile(name, p)
    step = float(_RHO[1] - _RHO[0])
    tabs = []
    for s in _SIGMAS:
        # Mirror at ρ = 0 keeps the bump smooth through its centre; truncate=3 keeps exact zeros outside.
        smooth = gaussian_filter1d(raw, s / step, mode="mirror", truncate=3.0)
        # Squeeze ρ by 1 + 2σ so the footprint stays near the nominal outline (≤ 1 + σ instead of
        # 1 + 3σ): tall cells smoothed for the band stay cells rather than field-wide hills.
        tabs.append(np.interp(_RHO * (1 + 2 * s), _RHO, smooth, right=0.0))
    tabs = np.stack(tabs)
    tabs /= tabs.max(axis=1, keepdims=True)
    slopes = np.abs(np.diff(tabs, axis=1)).max(axis=1) / step
    return tabs, slopes


def _table(profile: tuple[str, float], cap: float) -> tuple[np.ndarray, float]:
    """The least smoothed table whose slope (per unit ρ) is ≤ ``cap``, and its σ (units of ρ)."""
    tabs, slopes = _tables(profile[0], round(profile[1] * 20) / 20)  # p in steps of 0.05: few tables
    ok = np.flatnonzero(slopes <= cap)
    i = int(ok[0]) if ok.size else len(_SIGMAS) - 1  # the smoothest; render() scales the rest down
    return tabs[i], float(_SIGMAS[i])


_THETA = np.linspace(-math.pi, math.pi, 721)


def _inverse_radius2(harmonics: tuple[tuple[int, float, float], ...]) -> np.ndarray:
    """1 / R(θ)² on ``_THETA`` for the outline ``R = 1 + Σ c·cos(k(θ − θ_k))``."""
    radius = np.ones_like(_THETA)
    for k, c, t in harmonics:
        radius += c * np.cos(k * (_THETA - t))
    return radius**-2


def max_slope(phi: np.ndarray) -> float:
    """Largest |∇φ| (central differences) over the interior of a 2-D map (≥ 3 px a side), per px."""
    dx = phi[1:-1, 2:] - phi[1:-1, :-2]  # (h−2, w−2): twice the x derivative
    dy = phi[2:, 1:-1] - phi[:-2, 1:-1]
    dx *= dx  # in place: fresh temporaries of this size cost more than the arithmetic
    dy *= dy
    dx += dy
    return 0.5 * math.sqrt(float(dx.max()))


# -- rendering ---------------------------------------------------------------------------------------
def _harmonic_bounds(harmonics: tuple[tuple[int, float, float], ...]) -> tuple[float, float, float]:
    """(min radius, max radius, max |dR/dθ|) bounds of the outline perturbation."""
    amp = sum(abs(c) for _, c, _ in harmonics)
    return 1.0 - amp, 1.0 + amp, sum(k * abs(c) for k, c, _ in harmonics)


def render(cell: Cell, centre: tuple[float, float], height: float, slope: float, size: int
           ) -> tuple[np.ndarray, int, int]:
    """The cell's phase in a local box: ``(box (h, w) rad, x0, y0)`` with the box's top-left pixel,
    cut to the field ``[0, size)²`` (cells may extend past the border).

    Each blob is smoothed along ρ so that its steepest slope, ``height·blob.height·max|h'| / b``
    (``b`` shortened by the outline's perturbation), stays within ``slope``; the sum is then scaled to
    peak ``height`` or to the measured ``slope``, whichever is lower.
    """
    cx, cy = centre
    parts = []
    reach = 1.0
    for blob in cell.blobs:
        r_min, r_max, dr = _harmonic_bounds(blob.harmonics)
        # |∇ρ| ≤ (1/R + |R'|/R²)/b for ρ = ρ_ellipse / R(θ): the perturbed outline is steeper.
        b_eff = blob.b / (1.0 / r_min + dr / r_min**2)
        table, sigma = _table(blob.profile, slope * b_eff / max(height * blob.height, 1e-9))
        parts.append((blob, table, r_max * (1.0 + 3.0 * sigma) / (1.0 + 2.0 * sigma)))
        reach = max(reach, math.hypot(blob.dx, blob.dy) + blob.a * parts[-1][2])
    half = int(math.ceil(reach)) + 2
    x0, y0 = max(int(round(cx)) - half, 0), max(int(round(cy)) - half, 0)
    x1, y1 = min(int(round(cx)) + half + 1, size), min(int(round(cy)) + half + 1, size)
    box = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)))
    if box.size == 0:
        return box, x0, y0
    for blob, table, support in parts:
        # A sub-box per blob: nuclei and lobes are small.
        bx, by = cx + blob.dx - x0, cy + blob.dy - y0  # blob centre in box pixels
        r = blob.a * support
        ix0, ix1 = max(int(bx - r), 0), min(int(math.ceil(bx + r)) + 1, box.shape[1])
        iy0, iy1 = max(int(by - r), 0), min(int(math.ceil(by + r)) + 1, box.shape[0])
        if ix1 <= ix0 or iy1 <= iy0:  # this blob lies outside the field
            continue
        xs = np.arange(ix0, ix1, dtype=np.float64)[None, :] - bx  # (1, w)
        ys = np.arange(iy0, iy1, dtype=np.float64)[:, None] - by  # (h, 1)
        ca, sa = math.cos(blob.angle), math.sin(blob.angle)
        if blob.harmonics:
            u = (xs * ca + ys * sa) / blob.a  # (h, w) ellipse-normalised coordinates
            v = (-xs * sa + ys * ca) / blob.b
            # The outline radius R(θ) from a 1-D table: one interp instead of a cosine per order.
            inv_r2 = np.interp(np.arctan2(v, u), _THETA, _inverse_radius2(blob.harmonics))
            rho2 = (u * u + v * v) * inv_r2
        else:
            # ρ² = A·x² + 2B·xy + C·y² as two 1-D terms and one outer product: the cheap path.
            ia2, ib2 = blob.a**-2, blob.b**-2
            qa, qb, qc = ca * ca * ia2 + sa * sa * ib2, ca * sa * (ia2 - ib2), sa * sa * ia2 + ca * ca * ib2
            rho2 = (qa * xs * xs + qc * ys * ys) + (2 * qb * ys) * xs  # (h, w)
        box[iy0:iy1, ix0:ix1] += blob.height * np.interp(rho2, _RHO2, table, right=0.0)
    peak = float(box.max())
    if peak <= 0 or min(box.shape) < 3:
        return box, x0, y0
    steepest = max_slope(box)
    box *= min(height / peak, slope / steepest if steepest > 0 else math.inf)
    return box, x0, y0


# -- shapes ------------------------------------------------------------------------------------------
def grow(a: float, aspect: float, need: float, cap: float) -> tuple[float, float]:
    """(a, aspect) with the short semi-axis ``a·aspect`` ≥ ``need`` px where ``cap`` allows.

    Tall cells get rounder first (as cells that round up do), then larger.
    """
    if a * aspect >= need:
        return a, aspect
    aspect = min(1.0, max(aspect, need / a))
    return min(max(a, need / aspect), cap), aspect


def _outline(rng: np.random.Generator, orders: range, strength: float) -> tuple[tuple[int, float, float], ...]:
    """Random low-order Fourier perturbation: ``c_k ~ U(−1, 1)·strength / k`` (smoother at high k)."""
    return tuple((k, float(rng.uniform(-1, 1) * strength / k), float(rng.uniform(0, 2 * math.pi)))
                 for k in orders)


def _nucleus(rng: np.random.Generator, ctx: CellContext, a: float, b: float, angle: float,
             frac: Range = (0.3, 0.5), shift: float = 0.3) -> Blob:
    """An ellipsoidal nucleus inside the body (a, b, angle), height ``nucleus_contrast`` over the body."""
    f = rng.uniform(*frac)
    du, dv = rng.uniform(-shift, shift, size=2) * (a, b)
    ca, sa = math.cos(angle), math.sin(angle)
    return Blob(("power", 0.5), a * f, b * f, angle + rng.uniform(-0.5, 0.5), du * ca - dv * sa,
                du * sa + dv * ca, float(rng.uniform(*ctx.nucleus_contrast)))


@register_shape("ellipsoid")
def ellipsoid(rng: np.random.Generator, ctx: CellContext, a: float, height: float) -> Cell:
    """The original prior: thickness ``2c·√(1 − x'²/a² − y'²/b²)``, a nucleus with ``nucleus_prob``."""
    a, aspect = grow(a, rng.uniform(*ctx.aspect), _GROW * height / ctx.slope, ctx.max_radius)
    b, angle = a * aspect, rng.uniform(0.0, math.pi)
    blobs = [Blob(("power", 0.5), a, b, angle)]
    if rng.random() < ctx.nucleus_prob:
        blobs.append(_nucleus(rng, ctx, a, b, angle))
    return Cell(tuple(blobs), a)


@register_shape("irregular")
def irregular(rng: np.random.Generator, ctx: CellContext, a: float, height: float) -> Cell:
    """An ellipse whose radius has a random Fourier perturbation of orders 2–5 (≤ 32% in all), profile
    ``(1 − ρ²)^p`` with p in [½, 1] (from a sphere's chord to a flatter dome); optional nucleus."""
    a, aspect = grow(a, rng.uniform(*ctx.aspect), _GROW * height / ctx.slope, ctx.max_radius)
    b, angle = a * aspect, rng.uniform(0.0, math.pi)
    blobs = [Blob(("power", float(rng.uniform(0.5, 1.0))), a, b, angle,
                  harmonics=_outline(rng, range(2, 6), 0.25))]
    if rng.random() < ctx.nucleus_prob:
        blobs.append(_nucleus(rng, ctx, a, b, angle))
    return Cell(tuple(blobs), a * 1.2)


@register_shape("spread")
def spread(rng: np.random.Generator, ctx: CellContext, a: float, height: float) -> Cell:
    """Adherent, spread cell (fibroblast, NIH-3T3): a wide, thin, irregular lamella (15–35% of the peak,
    1.3–2× the semi-axis, outline orders 2–6) carrying a domed nucleus with 0–2 nucleoli."""
    frac = rng.uniform(0.25, 0.4)  # nucleus radius / cell radius
    lamella = rng.uniform(0.15, 0.35)
    # The nucleus carries the peak: it must be wide enough for its share of the height.
    need = _GROW * height * (1 - lamella) / ctx.slope / frac
    a, aspect = grow(a * rng.uniform(1.3, 2.0), rng.uniform(0.3, 0.9), need, ctx.max_radius)
    b, angle = a * aspect, rng.uniform(0.0, math.pi)
    body = Blob(("plateau", 0.0), a, b, angle, height=lamella, harmonics=_outline(rng, range(2, 7), 0.35))
    an = frac * math.sqrt(a * b)  # the nucleus is rounder than the cell
    nucleus = Blob(("power", 0.5), an, an * rng.uniform(0.7, 1.0), rng.uniform(0.0, math.pi),
                   *(rng.uniform(-0.15, 0.15, size=2) * (a, b)), height=1.0 - lamella)
    blobs = [body, nucleus]
    for _ in range(int(rng.integers(0, 3))):
        r = an * rng.uniform(0.15, 0.3)
        off = rng.uniform(-0.4, 0.4, size=2) * an
        blobs.append(Blob(("power", 1.0), r, r, 0.0, nucleus.dx + off[0], nucleus.dy + off[1],
                          float(rng.uniform(0.1, 0.25) * (1.0 - lamella))))
    return Cell(tuple(blobs), a)


@register_shape("biconcave")
def biconcave(rng: np.random.Generator, ctx: CellContext, a: float, height: float) -> Cell:
    """Red blood cell: Evans–Fung biconcave disc (rim ≈ 2.6 µm, centre ≈ 0.8 µm), nearly round
    (aspect 0.85–1), smaller than nucleated cells (0.5–0.8× the semi-axis), no nucleus."""
    a, aspect = grow(a * rng.uniform(0.5, 0.8), rng.uniform(0.85, 1.0), _GROW * height / ctx.slope,
                     ctx.max_radius)
    return Cell((Blob(("biconcave", 0.0), a, a * aspect, rng.uniform(0.0, math.pi)),), a)


@register_shape("round")
def round_cell(rng: np.random.Generator, ctx: CellContext, a: float, height: float) -> Cell:
    """White blood cell: a nearly round dome (aspect 0.85–1, 0.5–0.9× the semi-axis) with a nucleus,
    either one large round one (lymphocyte) or 2–4 lobes on an arc (neutrophil, monocyte)."""
    a, aspect = grow(a * rng.uniform(0.5, 0.9), rng.uniform(0.85, 1.0), _GROW * height / ctx.slope,
                     ctx.max_radius)
    b, angle = a * aspect, rng.uniform(0.0, math.pi)
    blobs = [Blob(("power", 0.5), a, b, angle)]
    contrast = float(rng.uniform(*ctx.nucleus_contrast))
    if rng.random() < 0.5:
        blobs.append(replace(_nucleus(rng, ctx, a, b, angle, frac=(0.55, 0.8), shift=0.1), height=contrast))
    else:
        n, start = int(rng.integers(2, 5)), rng.uniform(0.0, 2 * math.pi)
        for i in range(n):
            t = start + i * rng.uniform(0.8, 1.3)
            r = a * rng.uniform(0.22, 0.32)
            blobs.append(Blob(("power", 0.5), r, r * rng.uniform(0.7, 1.0), rng.uniform(0.0, math.pi),
                              0.3 * a * math.cos(t), 0.3 * b * math.sin(t), contrast))
    return Cell(tuple(blobs), a)


@register_shape("cluster")
def cluster(rng: np.random.Generator, ctx: CellContext, a: float, height: float) -> Cell:
    """2–4 touching cells (round or irregular, 0.6–0.9× the semi-axis, 60–100% of the peak), each one
    set against an earlier one at 80–95% of the sum of their radii: they touch and overlap a little."""
    members: list[tuple[float, float, float]] = []  # (dx, dy, radius)
    blobs: list[Blob] = []
    for i in range(int(rng.integers(2, 5))):
        shape = round_cell if rng.random() < 0.5 else irregular
        rel = 1.0 if i == 0 else float(rng.uniform(0.6, 1.0))
        cell = shape(rng, ctx, a * rng.uniform(0.6, 0.9), height * rel)
        body = cell.blobs[0]
        radius = math.sqrt(body.a * body.b)
        dx = dy = 0.0
        if members:
            px, py, pr = members[int(rng.integers(len(members)))]
            t, d = rng.uniform(0.0, 2 * math.pi), (radius + pr) * rng.uniform(0.8, 0.95)
            dx, dy = px + d * math.cos(t), py + d * math.sin(t)
        members.append((dx, dy, radius))
        blobs += [replace(bl, dx=bl.dx + dx, dy=bl.dy + dy, height=bl.height * rel) for bl in cell.blobs]
    extent = max(math.hypot(dx, dy) + r for dx, dy, r in members)
    return Cell(tuple(blobs), extent)
