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
On CUDA the reweighted solves run as Triton kernels (:mod:`.detrend_triton`, 22 launches a frame against
about 250 for this form compiled), where Triton is installed.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from sparseconn_tasks.phase_retrieval import detrend_triton

from sparseconn.inputs import exporting

BLOCK = 8
"""Block size, px: 8 px steps stay wrap-free up to 0.39 rad/px of aberration slope, and a 1024² frame gives
32 thousand steps (a 64² one 112)."""
_ITERATIONS = 10
"""Reweightings after the plain weighted fit: degree 2 on 128² training fields left 0.154, 0.118 and 0.103 rad
after 4, 8 and 12 (each costs a few products over the steps)."""
_SPREAD = 2.5  # the weight halves at about 0.9 · 2.5 σ
_RIDGE = 1e-6  # relative to the normal matrix's mean diagonal: frames with few blocks stay solvable


TRITON = True
"""Fit on CUDA with the Triton kernels of :mod:`.detrend_triton` (22 launches a frame) where Triton is, rather
than the torch form (about 250 launches compiled); off for comparisons."""


_TRITON_FAILED: dict[str, str] = {}
"""Devices where the Triton kernels failed to build or run in an eager call (a GPU or Triton release they do
not compile for), with the first line of the error: :func:`fit` takes the torch form there from then on."""


def use_triton(device: torch.device, degree: int) -> bool:
    """Whether :func:`fit` takes the Triton kernels on ``device``: CUDA, :data:`TRITON` on, Triton installed,
    ``degree`` within their reach, not an export, and the kernels have not failed there before."""
    return (TRITON and device.type == "cuda" and not exporting() and detrend_triton.supports(degree)
            and str(device) not in _TRITON_FAILED)


def _triton_fit(g: torch.Tensor, w0: torch.Tensor, h: int, w: int, degree: int, block: int) -> torch.Tensor | None:
    """The reweighted solves by the Triton kernels; None where they fail in an eager call, which is said once
    (a warning) and remembered, so that the caller takes the torch form. Under ``torch.compile`` a failure
    comes when inductor builds the kernels, outside this call: the fast path's ``auto`` engine then falls back
    to an eager one, which lands here."""
    args = (g, w0, h, w, degree, block, _ITERATIONS, _SPREAD, _RIDGE)
    if torch.compiler.is_compiling():
        return detrend_triton.fit_steps(*args)
    try:
        return detrend_triton.fit_steps(*args)
    except Exception as exc:  # noqa: BLE001 - any build or launch failure: the torch form still answers
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        _TRITON_FAILED[str(g.device)] = first
        warnings.warn(f"detrend: the Triton fit failed on {g.device} ({type(exc).__name__}: {first}); "
                      "using the torch form there", RuntimeWarning, stacklevel=3)
        return None


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


def _powers(v: torch.Tensor, top: int) -> torch.Tensor:
    """``v ** p`` for p = 0..top: (m,) -> (m, top + 1)."""
    return torch.stack([v**p for p in range(top + 1)], dim=1)


@functools.lru_cache(maxsize=16)
def _map_values(degree: int) -> tuple[list[list[float]], ...]:
    """The entries of :func:`fit_constants`'s matrices as nested lists. Only Python values are cached: tensors made
    while an exporter traces are fake ones, and a cached fake tensor poisons every later call."""
    t = terms(degree)
    n, side, d = len(t), 2 * degree - 1, degree
    tx, ty = [[0.0] * (n * n) for _ in range(side * side)], [[0.0] * (n * n) for _ in range(side * side)]
    ux, uy = [[0.0] * n for _ in range(d * d)], [[0.0] * n for _ in range(d * d)]
    sx, sy = [[0.0] * (d * d) for _ in range(n)], [[0.0] * (d * d) for _ in range(n)]
    for k, (ik, jk) in enumerate(t):
        if ik:
            ux[jk * d + ik - 1][k] = ik
            sx[k][jk * d + ik - 1] = ik
        if jk:
            uy[(jk - 1) * d + ik][k] = jk
            sy[k][(jk - 1) * d + ik] = jk
        for m, (im, jm) in enumerate(t):
            if ik and im:
                tx[(jk + jm) * side + ik + im - 2][k * n + m] = ik * im
            if jk and jm:
                ty[(jk + jm - 2) * side + ik + im][k * n + m] = jk * jm
    return tx, ty, ux, uy, sx, sy


def fit_constants(degree: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """Constant matrices that turn weighted moments into the normal equations, and coefficients into the
    gradient polynomials, for ``terms(degree)`` (sizes do not enter: they hold in an export too).

    With moments ``μ[q, p] = Σ w·X^p·Y^q`` over the x steps (and ``ν`` over the y steps), the normal matrix
    of the gradient fit is ``M[k, l] = i_k·i_l·μ[j_k + j_l, i_k + i_l − 2] + j_k·j_l·ν[j_k + j_l − 2, i_k +
    i_l]`` for terms ``X^i·Y^j``: ``M = μ·TX + ν·TY`` (flattened), and likewise the right-hand side from the
    moments of ``w·g``. ``SX`` and ``SY`` map the coefficients to the (d, d) tables of ``∂/∂X`` and ``∂/∂Y``
    (``[q, p]``: the coefficient of ``X^p·Y^q``)."""
    return tuple(torch.tensor(v, dtype=torch.float32, device=device) for v in _map_values(degree))


def _moments(wmap: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """``Σ w·X^p·Y^q`` over grids of weights (B, 2, h, w) with the powers of their columns' X (2, w, P) and
    rows' Y (2, h, Q): (B, 2, Q·P), ``[q·P + p]``."""
    return torch.matmul(torch.matmul(py.transpose(1, 2), wmap), px).flatten(2)


def _solve(m: torch.Tensor, v: torch.Tensor, sliced: bool = False) -> torch.Tensor:
    """``m⁻¹ v`` for symmetric positive definite (B, n, n) and (B, n), by Gauss-Jordan elimination without
    pivoting. Each step scales row k to a pivot of 1 and zeroes column k elsewhere. For exports, which have
    no ``linalg.solve``, the rows and columns are picked by products with one-hot constants (slicing and
    concatenating rows instead gave an ONNX graph 2.5 times larger, and its export took 46 s instead of 17
    at 128²). ``sliced``: picked by slicing, for CUDA, where ``linalg.solve`` waits for the GPU to check
    for errors, which a CUDA graph cannot hold; the identity comes from ``torch.eye`` on the device (a
    one-hot from Python values would be a copy from the host, which a graph cannot hold either)."""
    a = torch.cat([m, v[:, :, None]], dim=2)  # (B, n, n + 1)
    n = m.shape[-1]
    eye = torch.eye(n, dtype=m.dtype, device=m.device) if sliced else None
    for k in range(n):
        if eye is not None:
            row, col, unit = a[:, k:k + 1], a[:, :, k:k + 1], eye[:, k:k + 1]  # (B, 1, n + 1), (B, n, 1), (n, 1)
            row = row / row[:, :, k:k + 1]
        else:
            rk = torch.tensor([[float(i == k) for i in range(n)]], dtype=m.dtype, device=m.device)  # (1, n)
            ck = torch.tensor([[float(i == k)] for i in range(n + 1)], dtype=m.dtype, device=m.device)  # (n + 1, 1)
            row = torch.matmul(rk, a)  # (B, 1, n + 1): row k ...
            row = row / torch.matmul(row, ck)  # ... scaled to a pivot of 1
            col, unit = torch.matmul(a, ck), rk.transpose(0, 1)
        a = a - (col - unit) * row  # zeroes column k, except row k's 1
    return a[:, :, n]


def block_means(zr: torch.Tensor, zi: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """The means of the fields ``zr + i·zi`` (B, H, W) over ``block``-px blocks, (B, H // block, W // block)
    each: a ragged last block is left out."""
    return F.avg_pool2d(zr[:, None], block)[:, 0], F.avg_pool2d(zi[:, None], block)[:, 0]


def fit(zr: torch.Tensor, zi: torch.Tensor, h: int, w: int, degree: int, block: int = BLOCK,
        constants: tuple[torch.Tensor, ...] | None = None, graph_safe: bool | None = None) -> torch.Tensor:
    """Coefficients (B, n) of the polynomial phase (``terms(degree)``, normalised coordinates, rad) of
    (H, W) fields, from the phase steps between their block means ``zr + i·zi`` (B, h', w').

    Weighted least squares on the steps, reweighted :data:`_ITERATIONS` times. The sums over the steps are
    weighted moments of the step grids (a few small matrix products, :func:`_moments`), not products with
    a design matrix of one row per step (32 thousand at 1024², where those took 8 ms on 2 CPU cores).

    ``constants``: :func:`fit_constants` for ``degree``, already on the device (a layer keeps them as buffers:
    made here from Python values they would be a copy from the host on every call, which a CUDA graph
    cannot hold). ``graph_safe``: solve by :func:`_solve` (sliced) rather than ``torch.linalg.solve``, which
    waits for the device to check for errors; None: off the CPU only. On CUDA (:func:`use_triton`) the
    reweighted solves are :func:`~.detrend_triton.fit_steps`' kernels instead, from the same steps and weights."""
    b, hb, wb = zr.shape
    sliced = (zr.device.type != "cpu") if graph_safe is None else graph_safe
    gx, wx = _steps(zr, zi, -1)  # (B, h', w' - 1): steps between block centres along a row
    gy, wy = _steps(zr, zi, -2)  # (B, h' - 1, w')
    # The steps in rad per normalised unit (a step spans `block` px = 2 · block / W units along x), both
    # grids padded to (h', w') with weight 0 and stacked: (B, 2, h', w'), x steps first.
    g = torch.stack([F.pad(gx * (w / (2 * block)), (0, 1)), F.pad(gy * (h / (2 * block)), (0, 0, 0, 1))], dim=1)
    w0 = torch.stack([F.pad(wx, (0, 1)), F.pad(wy, (0, 0, 0, 1))], dim=1)
    w0 = w0 / (w0.sum(dim=(1, 2, 3)) / max(wx[0].numel() + wy[0].numel(), 1)).clamp_min(1e-30)[:, None, None, None]
    if sliced and use_triton(zr.device, degree):
        coef = _triton_fit(g, w0, h, w, degree, block)
        if coef is not None:
            return coef
    cx, cy = _coords(w, block, wb, zr.device), _coords(h, block, hb, zr.device)
    top, d = 2 * degree - 2, degree  # the normal matrix takes powers up to 2d - 2, the rest up to d - 1
    mx, my = F.pad((cx[1:] + cx[:-1]) / 2, (0, 1)), F.pad((cy[1:] + cy[:-1]) / 2, (0, 1))
    px = torch.stack([_powers(mx, top), _powers(cx, top)])  # (2, w', P): X where the x / y steps are
    py = torch.stack([_powers(cy, top), _powers(my, top)])  # (2, h', Q)
    tx, ty, ux, uy, sx, sy = constants if constants is not None else fit_constants(degree, zr.device)
    # (2·P·Q, n²), (2·d², n), (2, n, d²): both grids' moments to M and v, coefficients to both tables
    to_m, to_v, to_g = torch.cat([tx, ty]), torch.cat([ux, uy]), torch.stack([sx, sy])
    n = len(terms(degree))
    eye = torch.eye(n, device=zr.device, dtype=torch.float64)
    weight = w0
    for it in range(_ITERATIONS + 1):
        m = (_moments(weight, px, py).flatten(1) @ to_m).view(b, n, n).double()
        v = (_moments(weight * g, px[:, :, :d], py[:, :, :d]).flatten(1) @ to_v).double()
        ridge = _RIDGE * torch.diagonal(m, dim1=1, dim2=2).mean(dim=1).clamp_min(1e-30)
        a = m + ridge[:, None, None] * eye
        if exporting() or sliced:  # no linalg.solve in exports, nor in a CUDA graph
            coef = _solve(a, v, sliced=not exporting()).float()
        else:
            coef = torch.linalg.solve(a, v).float()
        if it == _ITERATIONS:
            break
        # The fitted gradients on the two step grids: (powers of Y) @ table @ (powers of X)ᵀ.
        tables = torch.matmul(coef[:, None, None, :], to_g).view(b, 2, d, d)
        r = g - torch.matmul(torch.matmul(py[:, :, :d], tables), px[:, :, :d].transpose(1, 2))
        sigma = (weight * r.abs()).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1e-30)
        weight = w0 / (1 + (r / (_SPREAD * sigma).clamp_min(1e-12)[:, None, None, None]) ** 2) ** 2
    return coef


def fitted_table(zr: torch.Tensor, zi: torch.Tensor, h: int, w: int, degree: int,
                 constants: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """The polynomial phase of (H, W) fields fitted from their block means ``zr + i·zi`` (B, h', w')
    (:func:`fit`), with the piston of what is left (:func:`piston`), as a table (B, d + 1, d + 1)
    (:func:`table`). The CPU fast path compiles it (``sideband_compiled.compiled_parts``): its eleven
    weighted solves (the plain fit and :data:`_ITERATIONS` reweightings) in 1.4 against 4.0 ms at 1024² on
    2 cores."""
    coef = fit(zr, zi, h, w, degree, constants=constants)
    c = table(coef, degree)
    return c + F.pad(piston(zr, zi, coef, h, w, degree)[:, None, None], (0, degree, 0, degree))


def table(coef: torch.Tensor, degree: int) -> torch.Tensor:
    """:func:`fit`'s coefficients (B, n) as the table (B, d + 1, d + 1) of the polynomial, ``[j, i]``: the
    coefficient of ``X^i·Y^j`` (the piston ``[0, 0]`` is 0)."""
    index = {t: k for k, t in enumerate(terms(degree))}
    zero = torch.zeros_like(coef[:, 0])
    rows = [torch.stack([coef[:, index[(i, j)]] if (i, j) in index else zero for i in range(degree + 1)], dim=1)
            for j in range(degree + 1)]
    return torch.stack(rows, dim=1)


def grid(n: int, device: torch.device) -> torch.Tensor:
    """The normalised coordinate of each of ``n`` pixels along an axis: the centre 0, the ends ±1."""
    return (torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2) / (n / 2)


def _at(c: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The polynomial of table ``c`` (B, d + 1, d + 1) at the points ``(x_l, y_k)``: ``Y-powers @ c @
    X-powers``, (B, len(y), len(x))."""
    d = c.shape[-1] - 1
    return torch.matmul(torch.matmul(_powers(y, d), c), _powers(x, d).transpose(0, 1))


def evaluate(c: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The polynomial of table ``c`` (B, d + 1, d + 1) over (H, W) pixels."""
    return _at(c, grid(w, c.device), grid(h, c.device))


def plane(coef: torch.Tensor, degree: int, h: int, w: int) -> torch.Tensor:
    """The polynomial (B, H, W), rad, from :func:`fit`'s coefficients."""
    return evaluate(table(coef, degree), h, w)


def piston(zr: torch.Tensor, zi: torch.Tensor, coef: torch.Tensor, h: int, w: int, degree: int,
           block: int = BLOCK) -> torch.Tensor:
    """The piston (B,), rad: the phase of the sum of the block means ``zr + i·zi`` (B, h', w') once the
    polynomial is removed (at the blocks' centres: the field's sum within float rounding, for a smooth
    polynomial, from a (h', w') grid instead of the whole frame)."""
    q = _at(table(coef, degree), _coords(w, block, zr.shape[-1], coef.device),
            _coords(h, block, zr.shape[-2], coef.device))  # (B, h', w')
    c, s = torch.cos(q), torch.sin(q)  # z · exp(-iq)
    return torch.atan2((zi * c - zr * s).sum(dim=(-2, -1)), (zr * c + zi * s).sum(dim=(-2, -1)))
