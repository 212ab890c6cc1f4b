"""MixGE, the paper's phase reconstruction loss ``Loss_t`` (Eq. 2; docs/reference.md §3).

``MixGE = MSE(ŷ, y) + λ · mean((G(y) − G(ŷ))²)`` with the gradient magnitude
``G = √(Gx² + Gy² + eps)`` from 3×3 derivative kernels (Lu & Chen 2019, λ_G = 0.1, Sobel). The paper
cites Van Der Jeught et al. (2021, its ref. [20]) whose exact form was not found, so λ and the
operator are configurable; the defaults are Lu & Chen's.

Kernels are unnormalised, as in OpenCV and Lu & Chen: Sobel estimates 8× the derivative, Scharr 32×,
central differences 2×, so λ must be retuned when the operator changes. Borders use replicate
padding, which gives a zero gradient across the border instead of a false edge against zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_SOBEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SCHARR = ((-3.0, 0.0, 3.0), (-10.0, 0.0, 10.0), (-3.0, 0.0, 3.0))
_CENTRAL = ((0.0, 0.0, 0.0), (-1.0, 0.0, 1.0), (0.0, 0.0, 0.0))

# d/dx kernels (x = column); d/dy is the transpose.
GRADIENT_OPERATORS: dict[str, tuple[tuple[float, ...], ...]] = {
    "sobel": _SOBEL,
    "scharr": _SCHARR,
    "central": _CENTRAL,
}


def _kernels(operator: str, like: torch.Tensor) -> torch.Tensor:
    """(2, 1, 3, 3) stack of the d/dx and d/dy kernels in ``like``'s dtype and device."""
    try:
        kx = torch.tensor(GRADIENT_OPERATORS[operator], dtype=like.dtype, device=like.device)
    except KeyError:
        names = ", ".join(sorted(GRADIENT_OPERATORS))
        raise KeyError(f"unknown gradient operator {operator!r}; available: {names}") from None
    return torch.stack([kx, kx.t()])[:, None]


def gradient_magnitude(x: torch.Tensor, operator: str = "sobel", eps: float = 1e-6) -> torch.Tensor:
    """``√(Gx² + Gy² + eps)`` of (B, C, H, W) -> (B, C, H, W), per channel, replicate-padded.

    ``eps`` keeps the gradient of the square root finite where the image is flat (d√u/du = ∞ at 0).
    """
    b, c, h, w = x.shape
    flat = x.reshape(b * c, 1, h, w)  # channels as a batch: the kernels act per channel
    g = F.conv2d(F.pad(flat, (1, 1, 1, 1), mode="replicate"), _kernels(operator, x))  # (B·C, 2, H, W)
    return torch.sqrt((g * g).sum(dim=1) + eps).reshape(b, c, h, w)


def mixge(pred: torch.Tensor, target: torch.Tensor, lam: float = 0.1, operator: str = "sobel",
          eps: float = 1e-6) -> torch.Tensor:
    """Mixed gradient error of (B, C, H, W) tensors: ``MSE + lam · mean((G(target) − G(pred))²)``.

    Returns a 0-d tensor (mean over batch, channels and pixels).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    mse = F.mse_loss(pred, target)
    if lam == 0:
        return mse
    mge = F.mse_loss(gradient_magnitude(pred, operator, eps), gradient_magnitude(target, operator, eps))
    return mse + lam * mge


class MixGELoss(nn.Module):
    """Module form of :func:`mixge`; holds ``lam``, ``operator`` and ``eps``, no parameters."""

    def __init__(self, lam: float = 0.1, operator: str = "sobel", eps: float = 1e-6) -> None:
        super().__init__()
        if operator not in GRADIENT_OPERATORS:
            names = ", ".join(sorted(GRADIENT_OPERATORS))
            raise KeyError(f"unknown gradient operator {operator!r}; available: {names}")
        self.lam = lam
        self.operator = operator
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mixge(pred, target, self.lam, self.operator, self.eps)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, operator={self.operator!r}, eps={self.eps}"
