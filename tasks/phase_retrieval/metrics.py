"""Phase-retrieval metrics: PSNR, SSIM and RMSE in radians, on torch tensors or numpy arrays.

Inputs are normalised phase maps (phase / phase_range, in [0, 1]) of shape (B, 1, H, W), (B, H, W)
or (H, W). Each metric is computed per image and averaged over the batch (the convention of the
paper's Table I and of ``skimage.metrics`` applied image by image). Tensors give a 0-d tensor on
their device; numpy arrays give a float. No gradients are tracked.

SSIM reproduces ``skimage.metrics.structural_similarity(pred, target, data_range=…)`` with its
defaults: 7×7 uniform window, sample covariance (N / (N − 1)), K1 = 0.01, K2 = 0.03, mean over the
pixels whose window lies inside the image (skimage crops 3 px at each border before the mean).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ArrayOrTensor = np.ndarray | torch.Tensor

_WIN = 7  # skimage's default window for 2-D images
_K1, _K2 = 0.01, 0.03


def _as_batch(x: ArrayOrTensor) -> tuple[torch.Tensor, bool]:
    """(H, W), (B, H, W) or (B, 1, H, W) -> (B, 1, H, W) tensor, and whether the input was numpy."""
    is_numpy = not isinstance(x, torch.Tensor)
    t = torch.from_numpy(np.asarray(x, dtype=np.float64)) if is_numpy else x.detach()
    if t.ndim == 2:
        t = t[None, None]  # (1, 1, H, W)
    elif t.ndim == 3:
        t = t[:, None]  # (B, 1, H, W)
    elif t.ndim != 4 or t.shape[1] != 1:
        raise ValueError(f"expected (H, W), (B, H, W) or (B, 1, H, W), got shape {tuple(t.shape)}")
    # float64 where the device has it: SSIM's variances are differences of nearly equal means.
    dtype = torch.float32 if t.device.type == "mps" else torch.float64
    return t.to(dtype), is_numpy


def _pair(pred: ArrayOrTensor, target: ArrayOrTensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    p, p_np = _as_batch(pred)
    t, t_np = _as_batch(target)
    if p.shape != t.shape:
        raise ValueError(f"pred shape {tuple(p.shape)} differs from target shape {tuple(t.shape)}")
    return p, t.to(p.device), p_np and t_np


def _out(value: torch.Tensor, is_numpy: bool, like: torch.Tensor | None) -> float | torch.Tensor:
    if is_numpy:
        return float(value)
    return value.to(like.dtype if like is not None and like.is_floating_point() else torch.float32)


@torch.no_grad()
def psnr(pred: ArrayOrTensor, target: ArrayOrTensor, data_range: float = 1.0) -> float | torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10·log10(data_range² / MSE)`` per image, batch mean.

    A perfect prediction gives ``inf`` (as skimage does).
    """
    p, t, is_np = _pair(pred, target)
    mse = ((p - t) ** 2).flatten(1).mean(dim=1)  # (B,)
    value = (10 * torch.log10(data_range**2 / mse)).mean()
    return _out(value, is_np, pred if isinstance(pred, torch.Tensor) else None)


@torch.no_grad()
def ssim(pred: ArrayOrTensor, target: ArrayOrTensor, data_range: float = 1.0) -> float | torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, batch mean; skimage's default settings.

    Images must be at least 7×7.
    """
    p, t, is_np = _pair(pred, target)
    if min(p.shape[-2:]) < _WIN:
        raise ValueError(f"SSIM needs images of at least {_WIN}x{_WIN}, got {tuple(p.shape[-2:])}")
    n = _WIN * _WIN
    kernel = torch.full((1, 1, _WIN, _WIN), 1.0 / n, dtype=p.dtype, device=p.device)
    # No padding: each output pixel is a window fully inside the image, i.e. skimage's cropped region.
    stack = torch.cat([p, t, p * p, t * t, p * t], dim=1)  # (B, 5, H, W)
    b = stack.shape[0]
    means = F.conv2d(stack.reshape(b * 5, 1, *stack.shape[-2:]), kernel)  # (B·5, 1, H − 6, W − 6)
    ux, uy, uxx, uyy, uxy = means.reshape(b, 5, *means.shape[-2:]).unbind(dim=1)  # each (B, h, w)
    cov_norm = n / (n - 1)  # sample covariance, skimage's use_sample_covariance=True
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    value = s.flatten(1).mean(dim=1).mean()
    return _out(value, is_np, pred if isinstance(pred, torch.Tensor) else None)


@torch.no_grad()
def rmse_rad(pred: ArrayOrTensor, target: ArrayOrTensor, phase_range: float) -> float | torch.Tensor:
    """Root-mean-square phase error in rad: ``phase_range · √mean((pred − target)²)`` per image, batch mean.

    ``pred`` and ``target`` are normalised (phase / phase_range).
    """
    p, t, is_np = _pair(pred, target)
    value = (phase_range * ((p - t) ** 2).flatten(1).mean(dim=1).sqrt()).mean()
    return _out(value, is_np, pred if isinstance(pred, torch.Tensor) else None)
