"""Input ops of the phase task: what the network sees of a hologram (``space.input``).

- ``hologram``: the paper's end-to-end input, standardised per image (mean 0, std 1), so 8-, 12- and
  16-bit frames, floats in any unit and a brighter or dimmer lamp give the network the same input.
- ``sideband``: a fixed Fourier layer does what every off-axis microscope's software does first —
  find the +1 order, window it, shift it to DC (Takeda; REFERENCE §4) — and the network receives the
  demodulated field as ``cos θ, sin θ`` of its wrapped phase θ and the wrap-free phase gradient
  ``∂θ/∂x, ∂θ/∂y``. It learns what is hard (unwrapping, aberration removal, denoising) and is spared
  what is not (the carrier, the exposure, the fringe visibility and the illumination envelope, which
  all drop out of θ). A linear ramp and the piston are removed from θ first, so a carrier that is off
  the configured one by a fraction of a bin, or a tilted wavefront, reaches the network as the same θ.

Both are exactly invariant to a gain and an offset of the hologram; ``sideband`` also to the carrier
(found per image unless fixed) and to the envelope.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from sparseconn.errors import ConfigError
from sparseconn.inputs import InputOp, Standardise, register_input_op

_TAPER = 0.3  # raised-cosine edge of the sideband window, as a fraction of its radius (as classical.py)
_DC_EXCLUSION = 0.05  # cycles/px: carriers with periods above 20 px are not looked for (as classical.py)


@register_input_op("hologram")
class HologramInput(Standardise):
    """The interferogram itself, standardised per image (the paper's input, exposure-proof)."""


def _freqs(n: int, device: torch.device) -> torch.Tensor:
    """``torch.fft.fftfreq(n)`` written with arange (the ONNX exporter has no fftfreq)."""
    k = torch.arange(n, device=device, dtype=torch.float32)
    return torch.where(k < (n + 1) // 2, k, k - n) / n


def _hypot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(a * a + b * b)  # torch.hypot has no ONNX translation


def _rfreqs(n: int, device: torch.device) -> torch.Tensor:
    """``torch.fft.rfftfreq(n)``."""
    return torch.arange(n // 2 + 1, device=device, dtype=torch.float32) / n


@register_input_op("sideband")
class SidebandInput(InputOp):
    """FFT demodulation of the +1 order: (B, 1, H, W) hologram -> (B, 4, H, W) ``cos θ, sin θ, ∂xθ, ∂yθ``.

    Args:
        carrier: ``"auto"`` finds the carrier in each image (the spectrum's peak away from DC in the
            half plane of ``sign``); ``[fx, fy]`` (cycles/px) fixes it.
        sign: ``"+"`` takes the order in the half plane ``fx > 0`` (or ``fx = 0, fy > 0``), which holds
            ``+φ`` for ``I ∝ cos(2πf·r + φ)``; ``"-"`` the opposite order (the mirrored convention).
        radius: window radius as a fraction of ``|f_c|`` (1/3 holds the object band when ``|f_c| ≥ 3B``).
        pad: zero padding (px) on each side before the FFT, so the circular FFT does not mix opposite
            borders (the window's kernel is about ``1 / radius`` px wide).
        grad_scale: the gradients are multiplied by this (rad/px → about unit range).
    """

    @classmethod
    def channels(cls, in_channels: int, **params) -> int:
        return 4

    def __init__(self, in_channels: int, carrier: Literal["auto"] | list[float] = "auto",
                 sign: Literal["+", "-"] = "+", radius: float = 1.0 / 3.0, pad: int = 16,
                 grad_scale: float = 4.0) -> None:
        if in_channels != 1:
            raise ConfigError(f"input op 'sideband' demodulates one hologram channel; in_channels is {in_channels}")
        if sign not in ("+", "-"):
            raise ConfigError(f"input op 'sideband': sign is {sign!r}; expected '+' or '-'")
        if carrier != "auto" and not (isinstance(carrier, list | tuple) and len(carrier) == 2):
            raise ConfigError(f"input op 'sideband': carrier is {carrier!r}; expected 'auto' or [fx, fy] in cycles/px")
        if not 0 < radius < 1:
            raise ConfigError(f"input op 'sideband': radius is {radius!r}; expected a fraction of |f_c| in (0, 1)")
        super().__init__(in_channels)
        self.carrier = carrier if carrier == "auto" else tuple(float(c) for c in carrier)
        self.sign = sign
        self.radius = float(radius)
        self.pad = int(pad)
        self.grad_scale = float(grad_scale)

    def find_carrier(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Carrier ``(fx, fy)`` cycles/px of each image of (B, H, W), each of shape (B,), on the FFT grid."""
        b, h, w = x.shape
        # A Hann window keeps the borders' leakage cross on the axes from being taken for the carrier.
        win = torch.hann_window(h, periodic=False, device=x.device)[:, None] * \
            torch.hann_window(w, periodic=False, device=x.device)[None, :]
        spec = torch.fft.rfft2(x * win).abs()  # (B, H, W // 2 + 1): a real image's spectrum is Hermitian
        fx = _rfreqs(w, x.device)[None, :]
        fy = _freqs(h, x.device)[:, None]
        half = (fx > 0) | ((fx == 0) & (fy > 0))
        keep = half & (_hypot(fx, fy) >= max(_DC_EXCLUSION, 3.0 / min(h, w)))  # (H, W // 2 + 1)
        spec = spec * keep
        idx = spec.flatten(1).argmax(dim=1)  # (B,)
        iy, ix = idx // spec.shape[-1], idx % spec.shape[-1]
        return fx[0, ix], fy[iy, 0]

    def demodulate(self, x: torch.Tensor) -> torch.Tensor:
        """The complex +1-order field (B, H, W), ramp and piston removed, from holograms (B, H, W)."""
        b, h, w = x.shape
        x = x - x.mean(dim=(-2, -1), keepdim=True)
        if self.carrier == "auto":
            cx, cy = self.find_carrier(x)  # (B,), (B,)
        else:
            cx = torch.full((b,), self.carrier[0], device=x.device)
            cy = torch.full((b,), self.carrier[1], device=x.device)
        p = self.pad
        xp = torch.nn.functional.pad(x, (p, p, p, p))  # (B, H + 2p, W + 2p), zeros = the mean
        hp, wp = xp.shape[-2:]
        fx, fy = _freqs(wp, x.device)[None, None, :], _freqs(hp, x.device)[None, :, None]
        cx, cy = cx[:, None, None], cy[:, None, None]  # (B, 1, 1)
        r = _hypot(cx, cy) * self.radius
        d = _hypot(fx - cx, fy - cy)  # (B, Hp, Wp) distance to the carrier
        r_in, r_out = r * (1 - _TAPER / 2), r * (1 + _TAPER / 2)
        win = ((r_out - d) / (r_out - r_in)).clamp(0, 1)
        win = 0.5 - 0.5 * torch.cos(math.pi * win)  # raised cosine: 1 inside r_in, 0 outside r_out
        field = torch.fft.ifft2(torch.fft.fft2(xp) * win)[:, p:p + h, p:p + w]  # (B, H, W) complex
        # Shift the order to DC: multiply by exp(−2πi f_c·r) (exact for any carrier, on the grid or not).
        xs = torch.arange(w, device=x.device, dtype=torch.float32)[None, None, :]
        ys = torch.arange(h, device=x.device, dtype=torch.float32)[None, :, None]
        field = field * torch.polar(torch.ones_like(d[:, :h, :w]), -2 * math.pi * (cx * xs + cy * ys))
        if self.sign == "-":
            field = field.conj()
        # Remaining linear ramp: the mean phase step between neighbours, weighted by |field|². Cells
        # rise and fall, so their steps cancel; the carrier's sub-bin remainder and the tilt do not.
        gx = torch.angle((field[:, :, 1:] * field[:, :, :-1].conj()).sum(dim=(-2, -1)))[:, None, None]
        gy = torch.angle((field[:, 1:, :] * field[:, :-1, :].conj()).sum(dim=(-2, -1)))[:, None, None]
        ramp = gx * xs + gy * ys  # (B, H, W) rad
        field = field * torch.polar(torch.ones_like(ramp), -ramp)
        piston = torch.angle(field.sum(dim=(-2, -1)))[:, None, None]
        return field * torch.polar(torch.ones_like(piston), -piston)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        field = self.demodulate(x[:, 0].float())  # (B, H, W) complex
        unit = field / field.abs().clamp_min(1e-12)  # exp(iθ)
        # Wrap-free gradients: the phase of the neighbour product, zero-padded at the far border.
        dx = torch.nn.functional.pad(torch.angle(unit[:, :, 1:] * unit[:, :, :-1].conj()), (0, 1))
        dy = torch.nn.functional.pad(torch.angle(unit[:, 1:, :] * unit[:, :-1, :].conj()), (0, 0, 0, 1))
        out = torch.stack([unit.real, unit.imag, dx * self.grad_scale, dy * self.grad_scale], dim=1)
        return out  # (B, 4, H, W)
