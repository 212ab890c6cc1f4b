"""MixGE against an independent hand computation with explicit loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sparseconn_tasks.phase_retrieval.losses import GRADIENT_OPERATORS, MixGELoss, gradient_magnitude, mixge

SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def grad_mag_by_hand(img: np.ndarray, kx: list[list[float]], eps: float) -> np.ndarray:
    """√(Gx² + Gy² + eps) with replicate borders, one pixel at a time."""
    h, w = img.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            gx = gy = 0.0
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    v = img[min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)]
                    gx += kx[di + 1][dj + 1] * v  # d/dx: weights vary along the column offset
                    gy += kx[dj + 1][di + 1] * v  # d/dy: the transposed kernel
            out[i, j] = math.sqrt(gx * gx + gy * gy + eps)
    return out


def mixge_by_hand(pred: np.ndarray, target: np.ndarray, lam: float, kx: list[list[float]], eps: float) -> float:
    n = pred.size
    mse = sum((pred.flat[k] - target.flat[k]) ** 2 for k in range(n)) / n
    gp, gt = grad_mag_by_hand(pred, kx, eps), grad_mag_by_hand(target, kx, eps)
    mge = sum((gt.flat[k] - gp.flat[k]) ** 2 for k in range(n)) / n
    return mse + lam * mge


@pytest.mark.parametrize("shape", [(4, 4), (5, 5), (5, 7)])
def test_mixge_matches_hand_computation(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    pred, target = rng.random(shape), rng.random(shape)
    want = mixge_by_hand(pred, target, 0.1, SOBEL_X, 1e-6)
    got = mixge(torch.from_numpy(pred)[None, None], torch.from_numpy(target)[None, None])
    assert got.ndim == 0
    assert float(got) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("operator", sorted(GRADIENT_OPERATORS))
def test_operators_and_lambda(operator: str) -> None:
    rng = np.random.default_rng(1)
    pred, target = rng.random((5, 5)), rng.random((5, 5))
    kx = [list(row) for row in GRADIENT_OPERATORS[operator]]
    want = mixge_by_hand(pred, target, 0.5, kx, 1e-4)
    got = mixge(torch.from_numpy(pred)[None, None], torch.from_numpy(target)[None, None], lam=0.5,
                operator=operator, eps=1e-4)
    assert float(got) == pytest.approx(want, rel=1e-10)


def test_batch_channels_and_module() -> None:
    pred, target = torch.rand(3, 2, 8, 8, dtype=torch.float64), torch.rand(3, 2, 8, 8, dtype=torch.float64)
    per = [mixge(pred[b:b + 1, c:c + 1], target[b:b + 1, c:c + 1]) for b in range(3) for c in range(2)]
    assert float(mixge(pred, target)) == pytest.approx(float(torch.stack(per).mean()), rel=1e-12)
    loss = MixGELoss(lam=0.1, operator="sobel")
    assert float(loss(pred, target)) == float(mixge(pred, target))
    assert float(mixge(pred, target, lam=0.0)) == pytest.approx(float(((pred - target) ** 2).mean()))


def test_gradient_finite_on_flat_images() -> None:
    pred = torch.full((1, 1, 6, 6), 0.5, requires_grad=True)
    target = torch.full((1, 1, 6, 6), 0.2)
    mixge(pred, target).backward()
    assert torch.isfinite(pred.grad).all()
    assert torch.allclose(gradient_magnitude(target), torch.full_like(target, 1e-3))  # √eps


def test_unknown_operator_lists_valid_ones() -> None:
    with pytest.raises(KeyError, match="available: central, scharr, sobel"):
        MixGELoss(operator="prewitt")
    with pytest.raises(KeyError, match="unknown gradient operator"):
        mixge(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), operator="laplace")
