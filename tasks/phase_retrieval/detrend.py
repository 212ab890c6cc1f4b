"""Numerical aberration compensation for the sideband layer: a polynomial phase fitted robustly to the field.

Every off-axis microscope's wavefront carries a smooth aberration on top of the sample: the curvature of
mismatched beams (defocus), astigmatism, spherical aberration of the objectives. The classical pipeline
fits a polynomial to the unwrapped phase of the background; a network that has to learn it instead only
removes what it saw in training, and an aberration a few times larger puts its output off by radians
(docs/measurements.md: defocus ×4 scored 1.16 rad where the classical pipeline scored 0.08). This module
removes it before the network, without unwrapping:

1. The demodulated field (ramp already removed) is averaged over blocks of ``block`` px. A block where
   the phase changes a lot (a cell's edge) averages to a small magnitude, so its weight drops.
2. The phase steps between neighbouring blocks, ``arg(z[k+1]·conj(z[k]))``, are the phase gradient
   sampled every ``block`` px, free of wraps as long as a step stays under π.
3. The gradient of a polynomial of degree ``d`` in normalised coordinates ``X = x / (W/2)``, ``Y = y /
   (H/2)`` (centred) is fitted to them by iteratively reweighted least squares. The weights
   ``w0 / (1 + (r / 2.5σ)²)²`` (Geman-McClure; ``w0`` the blocks' magnitudes, ``σ`` the weighted mean
   absolute residual) give the cells' steep slopes no say: the fit follows the background.

Measured on the independent simulator's 256² fields (docs/measurements.md), the phase the network gets
differs from the cells' own, once a plane is taken out, by 0.11 rad RMS with degree 3, with the aberration
at its base size or with 4 times its defocus or coma (base and 4× defocus: 0.76 and 2.7 rad RMS with the
ramp alone removed); 0.44 with 4 times its
spherical aberration, which degree 3 leaves; 0.36 on confluent fields. Without aberrations the fit adds
nothing measurable (0.017, the phase noise). Higher degrees remove more but follow the cells where they
are large next to the field: degree 4 left 0.02 rad on the same fields but 0.44 (up to 1.1) on the demo's
128² training fields, and a child trained with it scored worse than with degree 3.

Only tensor ops with fixed shapes for a given degree and block, so the fit traces for ONNX and
TorchScript and compiles; the small normal equations are solved by Gauss-Jordan elimination in float64.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from sparseconn.inputs import exporting

BLOCK = 8
"""Block size, px: 8 px steps stay wrap-free up to 0.39 rad/px of aberration slope, and a 1024² frame gives
32 thousand steps (a 64² one 112)."""
_ITERATIONS = 10
"""Reweightings after the plain weighted fit: degree 2 on 128² training fields left 0.154, 0.118 and 0.103 rad
after 4, 8 and 12 (each costs a few products over the steps)."""
_SPREAD = 2.5  # the weight halves at about 0.9 · 2.5 σ
_RIDGE = 1e-6  # relative to the normal matrix's mean diagonal: frames with few blocks stay solvable


def terms(degree: int) -> list[tuple[int, int]]:
    """The monomials ``X^i · Y^j`` with ``1 ≤ i + j ≤ degree`` as ``(i, j)`` (the piston is left out)."""
    return [(i, k - i) for k in range(1, degree + 1) for i in range(k, -1, -1)]


def _coords(n: int, block: int, m: int, device: torch.device) -> torch.Tensor:
    """Centres of ``m`` blocks along an axis of ``n`` px, normalised: pixel ``(n - 1) / 2`` is 0, the ends ±1."""
    k = torch.arange(m, device=device, dtype=torch.float32)
    return (k * block + (block - 1) / 2 - (n - 1) / 2) / (n / 2)


def _steps(zr: torch.Tensor, zi: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase steps ``arg(z[k+1]·conj(z[k]))`` along ``dim`` and their weights ``|z[k+1]|·|z[k]|``."""
    n = zr.shape[dim]
    ar, ai = zr.narrow(dim, 1, n - 1), zi.narrow(dim, 1, n - 1)
    br, bi = zr.narrow(dim, 0, n - 1), zi.narrow(dim, 0, n - 1)
    re, im = ar * br + ai * bi, ai * br - ar * bi
    return torch.atan2(im, re), torch.sqrt(re * re + im * im)


def _design(degree: int, x: torch.Tensor, y: torch.Tensor, axis: str) -> torch.Tensor:
    """Rows (N, n) of ``∂/∂X`` (axis ``"x"``) or ``∂/∂Y`` of each monomial at the points ``x, y`` (N,)."""
    cols = []
    for i, j in terms(degree):
        if axis == "x":
            cols.append(i * x ** (i - 1) * y ** j if i else torch.zeros_like(x))
        else:
            cols.append(j * x ** i * y ** (j - 1) if j else torch.zeros_like(x))
    return torch.stack(cols, dim=-1)


def _system(h: int, w: int, hb: int, wb: int, degree: int, block: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The fit's design matrix (N, n) and its transpose (n, N), contiguous: the monomials' derivatives at
    the x steps (between block centres along a row), then at the y steps (along a column)."""
    cx = _coords(w, block, wb, device)
    cy = _coords(h, block, hb, device)
    mx = (cx[1:] + cx[:-1]) / 2
    my = (cy[1:] + cy[:-1]) / 2
    ax = _design(degree, mx[None, :].expand(hb, -1).reshape(-1), cy[:, None].expand(-1, wb - 1).reshape(-1), "x")
    ay = _design(degree, cx[None, :].expand(hb - 1, -1).reshape(-1), my[:, None].expand(-1, wb).reshape(-1), "y")
    a = torch.cat([ax, ay])
    return a, a.T.contiguous()


_system_cached = functools.lru_cache(maxsize=8)(_system)
""":func:`_system` made once per size, degree and device, outside an export (where sizes are symbols)."""


def _solve(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``m⁻¹ v`` for symmetric positive definite (B, n, n) and (B, n), by Gauss-Jordan elimination without
    pivoting (n whole-matrix steps: few ops, unlike a Cholesky written element by element)."""
    a = torch.cat([m, v[:, :, None]], dim=2)  # (B, n, n + 1)
    n = m.shape[-1]
    for k in range(n):
        row = a[:, k:k + 1, :] / a[:, k:k + 1, k:k + 1]  # (B, 1, n + 1)
        a = a - a[:, :, k:k + 1] * row  # zeroes column k everywhere, row k included ...
        a = torch.cat([a[:, :k], row, a[:, k + 1:]], dim=1)  # ... which then takes the scaled pivot row
    return a[:, :, n]


def block_means(zr: torch.Tensor, zi: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """The means of the fields ``zr + i·zi`` (B, H, W) over ``block``-px blocks, (B, H // block, W // block)
    each: a ragged last block is left out."""
    return F.avg_pool2d(zr[:, None], block)[:, 0], F.avg_pool2d(zi[:, None], block)[:, 0]


def fit(zr: torch.Tensor, zi: torch.Tensor, h: int, w: int, degree: int, block: int = BLOCK) -> torch.Tensor:
    """Coefficients (B, n) of the polynomial phase (``terms(degree)``, normalised coordinates, rad) of
    (H, W) fields, from the phase steps between their block means ``zr + i·zi`` (B, h', w')."""
    b, hb, wb = zr.shape
    gx, wx = _steps(zr, zi, -1)  # (B, h', w' - 1)
    gy, wy = _steps(zr, zi, -2)  # (B, h' - 1, w')
    a, at = (_system if exporting() else _system_cached)(h, w, hb, wb, degree, block, zr.device)
    # The steps in rad per normalised unit (a step spans `block` px = 2 · block / W units along x).
    g = torch.cat([(gx * (w / (2 * block))).reshape(b, -1), (gy * (h / (2 * block))).reshape(b, -1)], dim=1)
    w0 = torch.cat([wx.reshape(b, -1), wy.reshape(b, -1)], dim=1)
    w0 = w0 / w0.mean(dim=1, keepdim=True).clamp_min(1e-30)
    # The sums over the steps in float32 (N ≤ 10⁵ terms of order 1), the small solve in float64.
    eye = torch.eye(a.shape[1], device=zr.device, dtype=torch.float64)
    weight = w0
    for it in range(_ITERATIONS + 1):
        aw = at * weight[:, None, :]  # (B, n, N)
        m = torch.matmul(aw, a).double()  # (B, n, n)
        ridge = _RIDGE * torch.diagonal(m, dim1=1, dim2=2).mean(dim=1).clamp_min(1e-30)
        coef = _solve(m + ridge[:, None, None] * eye, torch.matmul(aw, g[:, :, None])[:, :, 0].double()).float()
        if it == _ITERATIONS:
            break
        r = g - torch.matmul(coef, at)
        sigma = (weight * r.abs()).sum(dim=1, keepdim=True) / weight.sum(dim=1, keepdim=True).clamp_min(1e-30)
        weight = w0 / (1 + (r / (_SPREAD * sigma).clamp_min(1e-12)) ** 2) ** 2
    return coef


def plane(coef: torch.Tensor, degree: int, h: int, w: int) -> torch.Tensor:
    """The polynomial (B, H, W), rad, from :func:`fit`'s coefficients: ``Y-powers @ C @ X-powers``."""
    x = (torch.arange(w, device=coef.device, dtype=torch.float32) - (w - 1) / 2) / (w / 2)
    y = (torch.arange(h, device=coef.device, dtype=torch.float32) - (h - 1) / 2) / (h / 2)
    px = torch.stack([x ** i for i in range(degree + 1)])  # (d + 1, W)
    py = torch.stack([y ** j for j in range(degree + 1)], dim=1)  # (H, d + 1)
    rows = []  # C[b, j, i] = coefficient of X^i Y^j
    index = {t: k for k, t in enumerate(terms(degree))}
    zero = torch.zeros_like(coef[:, 0])
    for j in range(degree + 1):
        row = [coef[:, index[(i, j)]] if (i, j) in index else zero for i in range(degree + 1)]
        rows.append(torch.stack(row, dim=1))
    c = torch.stack(rows, dim=1)  # (B, d + 1, d + 1)
    return torch.matmul(torch.matmul(py, c), px)


def piston(zr: torch.Tensor, zi: torch.Tensor, coef: torch.Tensor, h: int, w: int, degree: int,
           block: int = BLOCK) -> torch.Tensor:
    """The piston (B,), rad: the phase of the sum of the block means ``zr + i·zi`` (B, h', w') once the
    polynomial is removed (at the blocks' centres: the field's sum within float rounding, for a smooth
    polynomial, from a (h', w') grid instead of the whole frame)."""
    cx = _coords(w, block, zr.shape[-1], coef.device)
    cy = _coords(h, block, zr.shape[-2], coef.device)
    q = 0
    for k, (i, j) in enumerate(terms(degree)):
        q = q + coef[:, k, None, None] * (cy[:, None] ** j) * (cx[None, :] ** i)
    c, s = torch.cos(q), torch.sin(q)  # z · exp(-iq)
    return torch.atan2((zi * c - zr * s).sum(dim=(-2, -1)), (zr * c + zi * s).sum(dim=(-2, -1)))
