"""PSNR, SSIM and RMSE agree with skimage and with hand computations, on numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sparseconn_tasks.phase_retrieval.metrics import psnr, rmse_rad, ssim


def pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:80] / 64.0
    smooth = 0.5 + 0.4 * np.sin(6 * x) * np.cos(4 * y)
    blob = np.exp(-((x - 0.6) ** 2 + (y - 0.5) ** 2) / 0.05)
    return [
        (rng.random((64, 80)), rng.random((64, 80))),  # random vs random
        (smooth, np.clip(smooth + 0.05 * rng.standard_normal(smooth.shape), 0, 1)),  # structured + noise
        (blob, 0.9 * blob + 0.05),  # structured, biased
        (np.full((16, 16), 0.3), np.full((16, 16), 0.3) + 0.01 * rng.random((16, 16))),  # near-flat
    ]


@pytest.mark.parametrize("k", range(4))
def test_numpy_matches_skimage(k: int) -> None:
    pred, target = pairs()[k]
    assert psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1.0), abs=1e-3)
    assert ssim(pred, target) == pytest.approx(structural_similarity(pred, target, data_range=1.0), abs=1e-3)


def test_torch_batch_is_mean_of_images() -> None:
    images = [(p[:16, :16], t[:16, :16]) for p, t in pairs()]
    pred = torch.tensor(np.stack([p for p, _ in images]), dtype=torch.float32)[:, None]  # (4, 1, 16, 16)
    target = torch.tensor(np.stack([t for _, t in images]), dtype=torch.float32)[:, None]
    want_psnr = np.mean([peak_signal_noise_ratio(t, p.astype(np.float32).astype(np.float64), data_range=1.0)
                         for p, t in images])
    want_ssim = np.mean([structural_similarity(p, t, data_range=1.0) for p, t in images])
    got_psnr, got_ssim = psnr(pred, target), ssim(pred, target)
    assert isinstance(got_psnr, torch.Tensor) and got_psnr.ndim == 0 and got_psnr.dtype == torch.float32
    assert float(got_psnr) == pytest.approx(want_psnr, abs=1e-3)
    assert float(got_ssim) == pytest.approx(want_ssim, abs=1e-3)


def test_data_range_and_shapes() -> None:
    pred, target = pairs()[1]
    want = structural_similarity(pred * 12, target * 12, data_range=12.0)
    assert ssim(pred * 12, target * 12, data_range=12.0) == pytest.approx(want, abs=1e-3)
    assert ssim(pred[None], target[None]) == pytest.approx(ssim(pred, target))  # (B, H, W)
    with pytest.raises(ValueError, match="differs"):
        psnr(pred, target[:-1])
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(pred[:5, :5], target[:5, :5])


def test_rmse_rad_by_hand() -> None:
    pred = np.zeros((2, 1, 4, 4))
    target = np.zeros((2, 1, 4, 4))
    target[0] = 0.1  # image 0: every pixel off by 0.1 of the range
    target[1, 0, 0, 0] = 0.4  # image 1: one pixel off by 0.4 -> √(0.16 / 16) = 0.1
    assert rmse_rad(pred, target, phase_range=12.0) == pytest.approx(12 * 0.1)
    got = rmse_rad(torch.from_numpy(pred).float(), torch.from_numpy(target).float(), 12.0)
    assert float(got) == pytest.approx(1.2, abs=1e-6)


def test_perfect_prediction() -> None:
    x = torch.rand(2, 1, 16, 16)
    assert float(psnr(x, x)) == float("inf")
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(rmse_rad(x, x, 12.0)) == 0.0
