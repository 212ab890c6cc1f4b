"""Plane arithmetic of the sideband layer (:class:`~tasks.phase_retrieval.inputs.SidebandInput`): neighbour
products, the separable correction phasor, and the parts its CPU fast path compiles
(:meth:`~tasks.phase_retrieval.inputs.SidebandInput.compile_parts`): row sums, which run in parallel over
rows, the detrend's fit, and the four output channels in one pass with a vectorised atan2, written as
planes (NCHW: a channels-last output of four channels fills a quarter of inductor's vectors)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from sparseconn_tasks.phase_retrieval import detrend
from sparseconn_tasks.phase_retrieval.detrend import grid


def _step(re: torch.Tensor, im: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ``z[k+1] · conj(z[k])`` along ``dim`` for ``z = re + i·im``."""
    n = re.shape[dim]
    ar, ai = re.narrow(dim, 1, n - 1), im.narrow(dim, 1, n - 1)
    br, bi = re.narrow(dim, 0, n - 1), im.narrow(dim, 0, n - 1)
    return ar * br + ai * bi, ai * br - ar * bi


def _correction(cx: torch.Tensor, sx: torch.Tensor, cy: torch.Tensor, sy: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The separable correction phasor (B, H, W), real and imaginary parts, from its W and H factors."""
    pr = cx[:, None, :] * cy[:, :, None] - sx[:, None, :] * sy[:, :, None]
    pi = cx[:, None, :] * sy[:, :, None] + sx[:, None, :] * cy[:, :, None]
    return pr, pi


_ATAN = (0.99999933564, -0.33329860885, 0.19946565904, -0.13908628094, 0.096421889088, -0.055912165369,
         0.021862821453, -0.0040545241132)
"""``atan(a) ≈ a · P(a²)`` on [0, 1], P's coefficients from the constant term up: within 4e-8 rad of atan in
exact arithmetic, 1.2e-7 evaluated in float32 (least squares on Chebyshev nodes, reweighted towards the
minimax fit)."""


def _atan2_poly(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``atan2(y, x)`` from one division, a polynomial and selects, for compiled code: inductor vectorises
    it, while its own ``atan2`` runs element by element on the CPU (the layer's four 1024² channels in 4.6
    against 8-13 ms on 2 cores). Within 3.5e-7 rad of float64 ``atan2`` (torch's float32 one: 1.5e-7); it
    differs only in signed zeros: ``y = -0`` gives ``+π`` for ``x < 0``, and ``x = y = 0`` gives 0."""
    ax, ay = x.abs(), y.abs()
    a = torch.minimum(ax, ay) / torch.maximum(ax, ay).clamp_min(1e-38)
    s = a * a
    p = s * _ATAN[-1] + _ATAN[-2]
    for c in _ATAN[-3::-1]:
        p = p * s + c
    r = a * p
    r = torch.where(ay > ax, math.pi / 2 - r, r)
    r = torch.where(x < 0, math.pi - r, r)
    return torch.where(y < 0, -r, r)


def _step_row_sums(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row sums of the neighbour products' real and imaginary parts: along W (B, 2, H), along H (B, 2, H - 1)."""
    xr, xi = _step(re, im, -1)
    yr, yi = _step(re, im, -2)
    return torch.stack([xr.sum(dim=-1), xi.sum(dim=-1)], dim=1), torch.stack([yr.sum(dim=-1), yi.sum(dim=-1)], dim=1)


def _piston_row_sums(re: torch.Tensor, im: torch.Tensor, cx: torch.Tensor,
                     sx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row sums (B, H) of the field turned by the W phasor ``cx + i·sx`` (B, W): real and imaginary parts."""
    c, s = cx[:, None, :], sx[:, None, :]
    return (re * c - im * s).sum(dim=-1), (re * s + im * c).sum(dim=-1)


def _channels(re: torch.Tensor, im: torch.Tensor, cx: torch.Tensor, sx: torch.Tensor, cy: torch.Tensor,
              sy: torch.Tensor, ax: torch.Tensor, ay: torch.Tensor, grad_scale: float) -> torch.Tensor:
    """The layer's output (B, 4, H, W) from the field's planes and its correction (the
    phasors with the piston, the steps ``ax, ay``): what :meth:`SidebandInput._forward` computes eagerly."""
    pr, pi = _correction(cx, sx, cy, sy)
    inv = torch.rsqrt((re * re + im * im).clamp_min(1e-24))
    xr, xi = _step(re, im, -1)
    yr, yi = _step(re, im, -2)
    tx, ty = torch.cos(ax)[:, :, None], torch.sin(ax)[:, :, None]
    uy, vy = torch.cos(ay)[:, :, None], torch.sin(ay)[:, :, None]
    dx = torch.nn.functional.pad(_atan2_poly(xi * tx - xr * ty, xr * tx + xi * ty), (0, 1))
    dy = torch.nn.functional.pad(_atan2_poly(yi * uy - yr * vy, yr * uy + yi * vy), (0, 0, 0, 1))
    return torch.stack([(re * pr - im * pi) * inv, (re * pi + im * pr) * inv, dx * grad_scale, dy * grad_scale],
                       dim=1)


def _ramp_free_blocks(re: torch.Tensor, im: torch.Tensor, cx: torch.Tensor, sx: torch.Tensor, cy: torch.Tensor,
                      sy: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The block means (B, H // block, W // block) of the field ``re + i·im`` (B, H, W) turned by the
    separable ramp phasor, without writing the turned planes: the detrend's fit takes only these."""
    pr, pi = _correction(cx, sx, cy, sy)
    fr, fi = re * pr - im * pi, re * pi + im * pr
    return F.avg_pool2d(fr[:, None], block)[:, 0], F.avg_pool2d(fi[:, None], block)[:, 0]


def _channels_detrended(re: torch.Tensor, im: torch.Tensor, cx: torch.Tensor, sx: torch.Tensor, cy: torch.Tensor,
                        sy: torch.Tensor, table: torch.Tensor, grad_scale: float) -> torch.Tensor:
    """The layer's output (B, 4, H, W) with ``detrend > 1``: the field turned by the ramp
    phasor and by ``exp(-i·q)``, ``q`` the polynomial of ``table`` (B, d + 1, d + 1) with the piston, evaluated
    per pixel by Horner's rule (no plane of ``q`` or of the turned field is written)."""
    b, h, w = re.shape
    d1 = table.shape[-1]
    x, y = grid(w, re.device), grid(h, re.device)
    rows = []  # R_j(x) = Σ_i table[j, i]·x^i, (B, W) each
    for j in range(d1):
        r = table[:, j, d1 - 1, None].expand(b, w)
        for i in range(d1 - 2, -1, -1):
            r = r * x + table[:, j, i, None]
        rows.append(r)
    q = rows[-1][:, None, :].expand(b, h, w)
    for j in range(d1 - 2, -1, -1):
        q = q * y[None, :, None] + rows[j][:, None, :]
    c, s = torch.cos(q), torch.sin(q)
    pr, pi = _correction(cx, sx, cy, sy)
    tr, ti = pr * c + pi * s, pi * c - pr * s  # (pr + i·pi)·exp(-i·q)
    fr, fi = re * tr - im * ti, re * ti + im * tr
    inv = torch.rsqrt((fr * fr + fi * fi).clamp_min(1e-24))
    xr, xi = _step(fr, fi, -1)
    yr, yi = _step(fr, fi, -2)
    dx = torch.nn.functional.pad(_atan2_poly(xi, xr), (0, 1))
    dy = torch.nn.functional.pad(_atan2_poly(yi, yr), (0, 0, 0, 1))
    return torch.stack([fr * inv, fi * inv, dx * grad_scale, dy * grad_scale], dim=1)


@functools.cache
def compiled_parts() -> tuple[Callable[..., Any], ...]:
    """:func:`_step_row_sums`, :func:`_piston_row_sums`, :func:`_channels`, :func:`_ramp_free_blocks`,
    :func:`_channels_detrended` and the detrend's :func:`~.detrend.fitted_table` through ``torch.compile``,
    made once per process (each compiles on its first call, and again for a new size)."""
    return (torch.compile(_step_row_sums), torch.compile(_piston_row_sums), torch.compile(_channels),
            torch.compile(_ramp_free_blocks), torch.compile(_channels_detrended),
            torch.compile(detrend.fitted_table))
