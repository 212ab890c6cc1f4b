"""The detrend's robust fit (:func:`~.detrend.fit`) as Triton kernels, for CUDA.

The torch form of the fit is eleven weighted least-squares solves on tiny tensors: compiled, about 250
launches a frame (88 cuBLAS products, the Gauss-Jordan steps, the reweightings; counted in the Triton code
inductor writes for it), each far shorter than its launch. Here each solve is two launches of many programs:

- ``_moments``: each program takes a slice of the steps, recomputes their weights from the last
  coefficients and the last spread (no weight is stored), and adds its part of ``Φᵀ·W·[Φ | g]`` (the
  normal matrix and the right-hand side, one 16 × 16 product per tile of steps, in float32 as the torch
  form does).
- ``_solve_spread``: each program sums the parts, solves the normal equations by Gauss-Jordan elimination in
  float64 (the same steps as :func:`~.detrend._solve`; every program solves, program 0 writes), then adds
  its slice's part of the spread ``Σ w·|r|`` and ``Σ w`` for the next reweighting.

Twenty-two launches a frame whatever its size (one program per 512 steps, 64 at 1024²), and no
value leaves the device, so a CUDA graph holds them. On an H200 at 1024² (docs/measurements.md) they took
0.35 ms of kernel time in the compiled demo child, whose frame went from 3.09 to 1.64 ms (with the other
change of that day: compiled models no longer take the export forms, ``sparseconn.inputs.export_tracing``).
The steps, their first weights and the coordinates of the steps are the torch form's (:func:`~.detrend.fit`
computes them and calls :func:`fit_steps`).

Imported only where Triton is (CUDA builds of PyTorch on Linux); :data:`AVAILABLE` says whether it was.
The kernels also run in Triton's interpreter (``TRITON_INTERPRET=1``) on CPU tensors: the tests compare them
with the torch form there when Triton is installed, and on a GPU in the ``gpu`` tests.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU builds of PyTorch come without Triton
    AVAILABLE = False
else:
    AVAILABLE = True

_WIDTH = 16
"""Columns of the kernels' matrices: the terms (up to 14, degree 4), then the right-hand side in the last."""
_TILE = 128
"""Steps per tile of ``_moments`` (one 16 × 128 by 128 × 16 product each)."""
_PER_PROGRAM = 512
"""Steps per program: at 1024² (32 768 steps) 64 programs, at 128² (512) one."""
_PARTS = 16
"""Parts summed per load where the programs' parts are gathered."""
_WARPS = (4, 4)
"""Warps a program of ``_moments`` and of ``_solve_spread`` (Triton's default; ``benchmarks/gpu_profile.py --fit``
times other choices)."""
MAX_DEGREE = 4


def supports(degree: int) -> bool:
    """Whether the kernels can fit a polynomial of ``degree``: its terms and the right-hand side fit in
    :data:`_WIDTH` columns (degree 4 has 14 terms)."""
    return AVAILABLE and 1 <= degree <= MAX_DEGREE


if AVAILABLE:

    @triton.jit
    def _basis(idx, n_cells, width, xs, xd, ys, yd, DEGREE: tl.constexpr, WIDTH: tl.constexpr):
        """The gradient basis (TILE, WIDTH) at steps ``idx``: for term ``X^i·Y^j`` (``terms`` order), ``i·X^(i-1)·Y^j``
        on the x steps (``idx < n_cells``), ``j·X^i·Y^(j-1)`` on the y steps; 0 in the columns after the terms.
        A step's X is ``xs + col·xd`` (plus half a block on the x steps, which sit between block centres), Y
        likewise."""
        on_y = idx >= n_cells
        cell = tl.where(on_y, idx - n_cells, idx)
        row = cell // width
        col = cell - row * width
        # (float32 whatever the scalars' type: inductor passes Python floats to a user's kernel as float64)
        x = (xs + col.to(tl.float32) * xd + tl.where(on_y, 0.0, 0.5 * xd)).to(tl.float32)
        y = (ys + row.to(tl.float32) * yd + tl.where(on_y, 0.5 * yd, 0.0)).to(tl.float32)
        t = tl.arange(0, WIDTH)
        k = tl.zeros((WIDTH,), dtype=tl.int32)  # the term's total degree
        for kk in tl.static_range(1, DEGREE + 1):
            k += (t >= kk * (kk + 1) // 2 - 1).to(tl.int32)
        j = t - (k * (k + 1) // 2 - 1)
        i = k - j
        live = t < DEGREE * (DEGREE + 3) // 2
        on_y2 = on_y[:, None]
        factor = tl.where(on_y2, j[None, :], i[None, :])
        ex = tl.where(on_y2, i[None, :], i[None, :] - 1)
        ey = tl.where(on_y2, j[None, :] - 1, j[None, :])
        xp = tl.full(factor.shape, 1.0, tl.float32)
        yp = tl.full(factor.shape, 1.0, tl.float32)
        for p in tl.static_range(DEGREE):
            xp = tl.where(p < ex, xp * x[:, None], xp)
            yp = tl.where(p < ey, yp * y[:, None], yp)
        return tl.where(live[None, :] & (factor > 0), factor.to(tl.float32) * xp * yp, 0.0)

    @triton.jit
    def _last_fit(coef_ptr, spread_ptr, n_parts, spread, FIRST: tl.constexpr, WIDTH: tl.constexpr,
                  PARTS: tl.constexpr):
        """The last fit's coefficients (WIDTH,) and its spread ``max(2.5σ, 1e-12)`` from the parts' sums
        ``Σ w·|r|``, ``Σ w`` at ``spread_ptr`` (``n_parts`` pairs); nothing is read for the first fit."""
        if FIRST:
            c, s = tl.zeros((WIDTH,), dtype=tl.float32), 1.0
        else:
            c = tl.load(coef_ptr + tl.arange(0, WIDTH))
            parts = tl.arange(0, PARTS)
            num = tl.zeros((PARTS,), dtype=tl.float32)
            den = tl.zeros((PARTS,), dtype=tl.float32)
            for start in range(0, n_parts, PARTS):
                m = start + parts < n_parts
                num += tl.load(spread_ptr + 2 * (start + parts), mask=m, other=0.0)
                den += tl.load(spread_ptr + 2 * (start + parts) + 1, mask=m, other=0.0)
            sigma = tl.sum(num, axis=0) / tl.maximum(tl.sum(den, axis=0), 1e-30)
            s = tl.maximum(spread * sigma, 1e-12).to(tl.float32)
        return c, s

    @triton.jit
    def _weights(g, w0, phi, c, s, FIRST: tl.constexpr):
        """The steps' weights: ``w0`` in the first fit, else Geman-McClure on the residuals of the last
        coefficients ``c`` with the last spread ``s`` (:func:`_last_fit`)."""
        if FIRST:
            w = w0
        else:
            r = (g - tl.sum(phi * c[None, :], axis=1)) / s
            q = 1.0 + r * r
            w = w0 / (q * q)
        return w

    @triton.jit
    def _tile(g_ptr, w0_ptr, idx, n, n_cells, width, xs, xd, ys, yd, c, s, FIRST: tl.constexpr,
              DEGREE: tl.constexpr, WIDTH: tl.constexpr):
        """A tile of steps ``idx`` of one frame (``g_ptr``, ``w0_ptr`` at its first step): their steps, basis and
        weights (:func:`_basis`, :func:`_weights`); 0 beyond the ``n`` steps."""
        m = idx < n
        g = tl.load(g_ptr + idx, mask=m, other=0.0)
        w0 = tl.load(w0_ptr + idx, mask=m, other=0.0)
        phi = _basis(idx, n_cells, width, xs, xd, ys, yd, DEGREE, WIDTH)
        return g, phi, _weights(g, w0, phi, c, s, FIRST)

    @triton.jit
    def _moments(g_ptr, w0_ptr, part_ptr, coef_ptr, spread_ptr, n_cells, width, xs, xd, ys, yd, spread,
                 FIRST: tl.constexpr, DEGREE: tl.constexpr, WIDTH: tl.constexpr, TILE: tl.constexpr,
                 PER_PROGRAM: tl.constexpr, PARTS: tl.constexpr):
        """Program (frame b, part p): ``Σ w·φ·[φ | g]`` over steps ``[p·PER_PROGRAM, (p + 1)·PER_PROGRAM)`` into
        ``part_ptr[b, p]`` (WIDTH × WIDTH, row-major; the last column holds ``Σ w·φ·g``)."""
        b = tl.program_id(0)
        p = tl.program_id(1)
        n_parts = tl.num_programs(1)
        n = 2 * n_cells
        offs = tl.arange(0, TILE)
        t = tl.arange(0, WIDTH)
        c, s = _last_fit(coef_ptr + b * WIDTH, spread_ptr + b * n_parts * 2, n_parts, spread, FIRST, WIDTH, PARTS)
        acc = tl.zeros((WIDTH, WIDTH), dtype=tl.float32)
        for start in range(0, PER_PROGRAM, TILE):
            g, phi, w = _tile(g_ptr + b * n, w0_ptr + b * n, p * PER_PROGRAM + start + offs, n, n_cells, width,
                              xs, xd, ys, yd, c, s, FIRST, DEGREE, WIDTH)
            lhs = phi * w[:, None]
            rhs = tl.where(t[None, :] == WIDTH - 1, g[:, None], phi)
            acc += tl.dot(tl.trans(lhs), rhs, input_precision="ieee")
        tl.store(part_ptr + ((b * n_parts + p) * WIDTH + t[:, None]) * WIDTH + t[None, :], acc)

    @triton.jit
    def _solve_spread(g_ptr, w0_ptr, part_ptr, coef_ptr, last_coef_ptr, spread_ptr, last_spread_ptr, n_cells,
                      width, xs, xd, ys, yd, spread, ridge, n_terms, FIRST: tl.constexpr, LAST: tl.constexpr,
                      DEGREE: tl.constexpr, WIDTH: tl.constexpr, TILE: tl.constexpr, PER_PROGRAM: tl.constexpr,
                      PARTS: tl.constexpr):
        """Program (frame b, part p): the normal equations from all parts, solved (program 0 writes the
        coefficients to ``coef_ptr[b]``); unless ``LAST``, ``Σ w·|r|`` and ``Σ w`` over its steps with the new
        coefficients' residuals and the weights they were fitted with, to ``spread_ptr[b, p]``."""
        b = tl.program_id(0)
        p = tl.program_id(1)
        n_parts = tl.num_programs(1)
        t = tl.arange(0, WIDTH)
        rows, cols = t[:, None], t[None, :]
        acc3 = tl.zeros((PARTS, WIDTH, WIDTH), dtype=tl.float32)
        parts = tl.arange(0, PARTS)[:, None, None]
        for start in range(0, n_parts, PARTS):
            q = start + parts
            acc3 += tl.load(part_ptr + ((b * n_parts + q) * WIDTH + rows[None]) * WIDTH + cols[None],
                            mask=q < n_parts, other=0.0)
        acc = tl.sum(acc3, axis=0)
        a = acc.to(tl.float64)
        diag = (rows == cols) & (rows < n_terms)
        mean = tl.sum(tl.sum(tl.where(diag, a, 0.0), axis=1), axis=0) / n_terms
        a = tl.where(diag, a + ridge * tl.maximum(mean, 1e-30), a)
        for k in tl.static_range(DEGREE * (DEGREE + 3) // 2):  # Gauss-Jordan, as detrend._solve
            row = tl.sum(tl.where(rows == k, a, 0.0), axis=0)
            row = row / tl.sum(tl.where(t == k, row, 0.0), axis=0)
            col = tl.sum(tl.where(cols == k, a, 0.0), axis=1)
            col = tl.where(t == k, col - 1.0, col)
            a = a - col[:, None] * row[None, :]
        coef = tl.sum(tl.where(cols == WIDTH - 1, a, 0.0), axis=1).to(tl.float32)
        coef = tl.where(t < n_terms, coef, 0.0)
        if p == 0:
            tl.store(coef_ptr + b * WIDTH + t, coef)
        if not LAST:
            n = 2 * n_cells
            offs = tl.arange(0, TILE)
            c, s = _last_fit(last_coef_ptr + b * WIDTH, last_spread_ptr + b * n_parts * 2, n_parts, spread, FIRST,
                             WIDTH, PARTS)
            num = tl.zeros((TILE,), dtype=tl.float32)
            den = tl.zeros((TILE,), dtype=tl.float32)
            for start in range(0, PER_PROGRAM, TILE):
                g, phi, w = _tile(g_ptr + b * n, w0_ptr + b * n, p * PER_PROGRAM + start + offs, n, n_cells, width,
                                  xs, xd, ys, yd, c, s, FIRST, DEGREE, WIDTH)
                num += w * tl.abs(g - tl.sum(phi * coef[None, :], axis=1))
                den += w
            tl.store(spread_ptr + (b * n_parts + p) * 2, tl.sum(num, axis=0))
            tl.store(spread_ptr + (b * n_parts + p) * 2 + 1, tl.sum(den, axis=0))


def fit_steps(g: torch.Tensor, w0: torch.Tensor, h: int, w: int, degree: int, block: int, iterations: int,
              spread: float, ridge: float) -> torch.Tensor:
    """:func:`~.detrend.fit`'s reweighted solves on the device: coefficients (B, n) of ``terms(degree)``
    from the steps ``g`` and their first weights ``w0`` (B, 2, h', w'; x steps first, padded with weight 0),
    for (H, W) fields averaged over ``block``-px blocks. Under ``torch.compile`` a custom op
    (``torch.library.triton_op``, PyTorch 2.6 and later), so that inductor sees the kernels."""
    if not supports(degree):
        raise ValueError(f"detrend degree {degree}: the Triton fit takes degrees 1 to {MAX_DEGREE}")
    return _fit_op(g.float().contiguous(), w0.float().contiguous(), h, w, degree, block, iterations, spread, ridge)


def _launch(kernel):  # noqa: ANN001, ANN202 - a Triton kernel, and its launcher
    """``kernel`` as ``triton_op`` wants it called (``wrap_triton``), where PyTorch has it."""
    return _wrap(kernel) if _wrap is not None else kernel


def _fit(g: torch.Tensor, w0: torch.Tensor, h: int, w: int, degree: int, block: int, iterations: int,
         spread: float, ridge: float) -> torch.Tensor:
    """:func:`fit_steps` on contiguous float32 steps: the launches."""
    b, _, hb, wb = g.shape
    n_cells = hb * wb
    n_parts = max(1, -(-2 * n_cells // _PER_PROGRAM))
    n_terms = degree * (degree + 3) // 2
    # The centres of blocks along an axis of n px, normalised (detrend._coords): (k·block + (block - 1)/2
    # - (n - 1)/2) / (n/2) = start + k·step.
    xs, xd = ((block - 1) / 2 - (w - 1) / 2) / (w / 2), block / (w / 2)
    ys, yd = ((block - 1) / 2 - (h - 1) / 2) / (h / 2), block / (h / 2)
    # One buffer per solve, no views of a shared one: under torch.compile each launch's outputs are then
    # plain tensors, which inductor need not copy to keep apart.
    coefs = [torch.empty((b, _WIDTH), device=g.device, dtype=torch.float32) for _ in range(iterations + 1)]
    spreads = [torch.empty((b, n_parts, 2), device=g.device, dtype=torch.float32) for _ in range(iterations)]
    part = torch.empty((b, n_parts, _WIDTH, _WIDTH), device=g.device, dtype=torch.float32)
    shape = dict(DEGREE=degree, WIDTH=_WIDTH, TILE=_TILE, PER_PROGRAM=_PER_PROGRAM, PARTS=_PARTS)
    coords = (n_cells, wb, xs, xd, ys, yd, spread)
    # Triton's default of 4 warps goes unnamed: a named one makes torch.compile wrap the kernel in an autotuner.
    warps = [{} if n == 4 else {"num_warps": n} for n in _WARPS]
    for it in range(iterations + 1):
        # The first fit reads no last coefficients nor spread: it is handed the parts' buffer, unread.
        last_coef, last_spread = (coefs[it - 1], spreads[it - 1]) if it else (part, part)
        spread_out = spreads[it] if it < iterations else part  # the last solve writes no spread
        _launch(_moments)[(b, n_parts)](g, w0, part, last_coef, last_spread, *coords, FIRST=it == 0, **shape,
                                        **warps[0])
        _launch(_solve_spread)[(b, n_parts)](g, w0, part, coefs[it], last_coef, spread_out, last_spread, *coords,
                                             ridge, n_terms, FIRST=it == 0, LAST=it == iterations, **shape,
                                             **warps[1])
    return coefs[iterations][:, :n_terms].clone()


try:
    from torch.library import triton_op, wrap_triton
except ImportError:  # PyTorch before 2.6: the launches are traced as they are
    _wrap, _fit_op = None, _fit
else:
    _wrap = wrap_triton
    _fit_op = triton_op("sparseconn_phase::detrend_fit", mutates_args=())(_fit) if AVAILABLE else _fit
