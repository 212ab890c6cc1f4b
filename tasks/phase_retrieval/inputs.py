"""Input ops of the phase task: what the network sees of a hologram (``space.input``).

- ``hologram``: the paper's end-to-end input, standardised per image (mean 0, std 1), so 8-, 12- and
  16-bit frames, floats in any unit and a brighter or dimmer lamp give the network the same input.
- ``sideband``: a fixed Fourier layer does what every off-axis microscope's software does first —
  find the +1 order, window it, shift it to DC (Takeda; docs/reference.md §4) — and the network receives the
  demodulated field as ``cos θ, sin θ`` of its wrapped phase θ and the wrap-free phase gradient
  ``∂θ/∂x, ∂θ/∂y``. It learns what is hard (unwrapping, aberration removal, denoising) and is spared
  what is not (the carrier, the exposure, the fringe visibility and the illumination envelope, which
  all drop out of θ). A linear ramp and the piston are removed from θ first, so a carrier that is off
  the configured one by a fraction of a bin, or a tilted wavefront, reaches the network as the same θ;
  with ``detrend: n`` also a polynomial of degree n fitted to the background (:mod:`.detrend`), so
  defocus, astigmatism and coma of any size do too.

Both are exactly invariant to a gain and an offset of the hologram; ``sideband`` also to the carrier
(found per image unless fixed) and to the envelope.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from sparseconn_tasks.phase_retrieval import detrend
from sparseconn_tasks.phase_retrieval.detrend import fit_constants as detrend_fit_constants
from sparseconn_tasks.phase_retrieval.sideband_compiled import _correction, _step, compiled_parts

from sparseconn.errors import ConfigError
from sparseconn.inputs import InputOp, Standardise, export_tracing, register_input_op
from sparseconn.inputs import exporting as _exporting

_TAPER = 0.3  # raised-cosine edge of the sideband window, as a fraction of its radius (as classical.py)
_BOXED_MIN_PIXELS = 300 * 300
"""Images from this size on (or any size alone in its batch) take :meth:`SidebandInput._boxed` on the CPU;
smaller batched ones the batched full transforms (the per-image loop's overhead outweighs its savings:
6.4 against 3.2 ms for 16 images of 32², 14.4 against 18.6 ms for 4 of 320², 2 CPU cores)."""
_DC_EXCLUSION = 0.05  # cycles/px: carriers with periods above 20 px are not looked for (as classical.py)
_MAX_DETREND = 6  # the fit follows the cells more with each degree (4 already does on 128² fields)
_FADE = 0.5
"""rad: :meth:`SidebandInput.finish` corrects fully up to ``tolerance - _FADE`` and not at all from ``tolerance
+ _FADE`` (continuous, so float rounding between engines cannot flip a pixel by a whole correction)."""
_BACKGROUND = 0.3
"""rad: pixels the network puts below this are the background, whose mean offset from the measured phase
:meth:`SidebandInput.finish` takes as the measured phase's zero (all pixels where under 1% of them are), and
where its ``dead_zone`` holds (fully at 0 rad, fading out to this)."""
_CALIBRATION_FRAMES = 8  # frames SidebandInput.calibrate asks the classical pipeline about (a majority vote)


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


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x``, in float64 while the op is exported (``torch.export``, and ONNX through it): onnxruntime's
    float32 DFT on lengths that are not powers of two puts the output 3e-4 (128²) to 2e-3 (1024²) away
    from torch's; with float64 DFTs and sums, 1e-5 to 7e-5. Eager, compiled and TorchScript runs keep float32."""
    return x.double() if export_tracing() else x


def _total(x: torch.Tensor) -> torch.Tensor:
    """The float32 sum of (B, H, W) over each image, accumulated in float64 in an export: onnxruntime's
    float32 sum is off by ~1e-7 of the mean phase step, which is 1e-4 rad a thousand pixels away."""
    if export_tracing():
        return x.double().sum(dim=(-2, -1)).float()
    return x.sum(dim=(-2, -1))


def _hann(n: int, device: torch.device) -> torch.Tensor:
    """``torch.hann_window(n, periodic=False)``; written with arange (bit for bit the same) in an export,
    where ``hann_window`` would fix ``n``."""
    if not _exporting():
        return torch.hann_window(n, periodic=False, device=device)
    if n == 1:
        return torch.ones(1, device=device)
    k = torch.arange(n, device=device, dtype=torch.float32)
    return 0.5 - 0.5 * torch.cos(k * (2 * math.pi / (n - 1)))


def _far_from_dc(dist: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``dist >= max(DC exclusion, 3 / min(H, W))``; as three tests in an export (``max`` and ``min`` of
    sizes would fix them)."""
    if not _exporting():
        return dist >= max(_DC_EXCLUSION, 3.0 / min(h, w))
    return (dist >= _DC_EXCLUSION) & (dist >= 3.0 / h) & (dist >= 3.0 / w)


def _phasor(step: torch.Tensor, n: int, offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of ``step · k + offset`` for k = 0..n-1: (B, 1) -> two (B, n). The angle is
    reduced modulo 2π in float64: at k ~ 1000 a float32 angle of ~2000 rad would be off by ~1e-4 rad."""
    k = torch.arange(n, device=step.device, dtype=torch.float64)[None, :]
    angle = step.double() * k + (0.0 if offset is None else offset.double())
    angle = torch.remainder(angle, 2 * math.pi).float()
    return torch.cos(angle), torch.sin(angle)


def _window(d: torch.Tensor, r_in: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """The sideband window at distance ``d`` from the carrier: 1 inside ``r_in``, a raised cosine to 0 at
    ``r_out``, exactly 0 beyond."""
    win = ((r_out - d) / (r_out - r_in)).clamp(0, 1)
    return 0.5 - 0.5 * torch.cos(math.pi * win)


def _carrier_search(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For :meth:`SidebandInput.find_carrier`: the 2-D Hann window (H, W), which keeps the borders' leakage
    cross on the axes from being taken for the carrier, and the bins of the half spectrum (H, W // 2 + 1)
    searched for it (the half plane of the ``+`` order, away from DC)."""
    win = _hann(h, device)[:, None] * _hann(w, device)[None, :]
    fx, fy = _rfreqs(w, device)[None, :], _freqs(h, device)[:, None]
    half = (fx > 0) | ((fx == 0) & (fy > 0))
    return win, half & _far_from_dc(_hypot(fx, fy), h, w)


_carrier_search_cached = functools.lru_cache(maxsize=8)(_carrier_search)
""":func:`_carrier_search` made once per size and device, outside an export (where sizes are symbols)."""


def _piston(rr: torch.Tensor, ri: torch.Tensor, cy: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """The piston (B, 1): the phase of the field's sum once the ramp is gone, from the row sums ``rr + i·ri``
    (B, H) of the field turned by the W phasor, turned by the H phasor ``cy + i·sy`` (B, H)."""
    return torch.atan2((rr * sy + ri * cy).sum(dim=-1), (rr * cy - ri * sy).sum(dim=-1))[:, None]


_SMOOTH_NODES = 24  # nodes per axis of _smooth's two-step Gaussian (spacing side / 24 < its σ)


def _gauss_nodes(n: int, scale: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For :func:`_smooth` along a side of ``n`` px: the (k, n) weights that average the pixels around each
    of k evenly spaced nodes and the (n, k) weights that interpolate the nodes back, both Gaussians of σ /
    √2 (σ = ``scale`` × n) with rows summing to 1 (so the borders are averaged one-sided, not padded)."""
    k = _SMOOTH_NODES
    pos = torch.arange(n, device=like.device, dtype=like.dtype) + 0.5
    side = pos[-1] + 0.5  # n as a tensor (a symbol in an export)
    nodes = (torch.arange(k, device=like.device, dtype=like.dtype) + 0.5) * (side / k)
    g = torch.exp(-0.5 * ((nodes[:, None] - pos[None, :]) * (math.sqrt(2.0) / scale) / side) ** 2)  # (k, n)
    return g / g.sum(dim=1, keepdim=True), (g / g.sum(dim=0, keepdim=True)).t()


def _smooth(a: torch.Tensor, scale: float) -> torch.Tensor:
    """``a`` (B, K, H, W) smoothed by about a Gaussian of σ = ``scale`` × H along y and × W along x, in two
    steps through :data:`_SMOOTH_NODES`² nodes (two Gaussians of σ / √2 make one of σ): about 2·k·H·W
    multiply-adds, 0.05 GMAC at 1024², against 2·H·W·6σ for a direct separable blur."""
    h, w = a.shape[-2:]
    dy, uy = _gauss_nodes(h, scale, a)
    dx, ux = _gauss_nodes(w, scale, a)
    return uy @ (dy @ a @ dx.t()) @ ux.t()


@register_input_op("sideband")
class SidebandInput(InputOp):
    """FFT demodulation of the +1 order: (B, 1, H, W) hologram -> (B, 4, H, W) ``cos θ, sin θ, ∂xθ, ∂yθ``.

    Args:
        carrier: ``"auto"`` finds the carrier in each image (the spectrum's peak away from DC in the
            half plane of ``sign``); ``[fx, fy]`` (cycles/px) fixes it.
        sign: which of the two orders (``±f``, conjugate fields ``exp(±iφ)``) the network gets. ``"auto"``
            (the default): the one that holds +φ on the data, learned by :meth:`calibrate` (training calls
            it on the first training items, ``infer`` on its first frames) and kept as the buffer
            :attr:`reference`; each image then takes the order on ``reference``'s side (``f·reference >
            0``), which also holds for a carrier on an axis, where a fixed half plane splits frames. Until
            calibrated, as ``"+"``. ``"+"`` takes the order in the half plane ``fx > 0`` (or ``fx = 0, fy >
            0``), which holds ``+φ`` for ``I ∝ cos(2πf·r + φ)``; ``"-"`` the opposite order (the mirrored
            convention, or the image turned by 180°). With a fixed ``carrier``, ``"auto"`` takes that order.
        radius: window radius as a fraction of ``|f_c|`` (1/3 holds the object band when ``|f_c| ≥ 3B``).
        pad: zero padding (px) on each side before the FFT, so the circular FFT does not mix opposite
            borders (the window's kernel is about ``1 / radius`` px wide).
        grad_scale: the gradients are multiplied by this (rad/px → about unit range).
        detrend: degree of the polynomial phase removed from the field before the network sees it. 1 (the
            default, what older runs were trained with): the linear ramp and the piston. 2-6: also a
            polynomial of that degree fitted robustly to the background's phase gradient
            (:mod:`~tasks.phase_retrieval.detrend`), so an aberration of any size, not only the sizes
            seen in training, reaches the network as a flat background. The shipped configs use 3
            (defocus, astigmatism, coma, trefoil; docs/measurements.md compares 1 to 4).
        congruent: True: the prediction is made congruent with the measured phase in eval mode
            (:meth:`finish`): the network then only has to get each pixel's phase to within about
            ``tolerance`` of the truth (choose its multiple of 2π, i.e. unwrap, and find the background's
            zero), and the fine detail is the measurement's. The phase range that the network's output 1
            stands for is the buffer :attr:`target_scale`, which training sets from the task (a model not
            yet trained finishes nothing). False (the default): the network's output as it is.
        tolerance: the largest correction (rad) :meth:`finish` makes: full up to ``tolerance - 0.5``,
            fading to none at ``tolerance + 0.5``, where the network is taken to be more than a wrap away.
        field_scale: the correction's part smoother than a Gaussian of σ = ``field_scale`` × the side is
            left to the network (None: the whole correction is made). There the measured phase's own error
            is the polynomial fit's, which follows large cells; the network, which sees the field, mends it.
        dead_zone: where the network sees background (its phase near 0), corrections smaller than this
            (rad) are not made, and up to twice it only in part: there the measurement adds its noise, and
            only a larger difference (a missed object) is worth taking. 0: none.

    Run eagerly on the CPU, only the window's bounding box of the spectrum is transformed back
    (:meth:`_boxed`); traced for an export (ONNX, TorchScript) or on a GPU, full transforms (:meth:`_full`).
    Tests hold the two within float32 rounding of each other.
    """

    _parts: tuple[Callable[..., Any], ...] | None = None
    """The compiled plane arithmetic, once :meth:`compile_parts` has run (on the fast path's copy)."""

    compilable = False
    """Left out of ``torch.compile`` as a whole by the CPU fast path: the real arithmetic after the FFTs
    compiled in one piece measured slower than eager (36 against 19 ms at 1024² on 2 CPU cores: inductor
    fused it into one kernel whose image-wide sums ran on one thread). The engine compiles its parts that
    pay instead (:meth:`compile_parts`). On CUDA it compiles whole (the FFTs stay cuFFT calls)."""

    @classmethod
    def channels(cls, in_channels: int, **params) -> int:
        return 4

    def __init__(self, in_channels: int, carrier: Literal["auto"] | list[float] = "auto",
                 sign: Literal["auto", "+", "-"] = "auto", radius: float = 1.0 / 3.0, pad: int = 16,
                 grad_scale: float = 4.0, detrend: int = 1, congruent: bool = False,
                 tolerance: float = 2.0, field_scale: float | None = 0.125, dead_zone: float = 0.15) -> None:
        if in_channels != 1:
            raise ConfigError(f"input op 'sideband' demodulates one hologram channel; in_channels is {in_channels}")
        if sign not in ("auto", "+", "-"):
            raise ConfigError(f"input op 'sideband': sign is {sign!r}; expected 'auto', '+' or '-'")
        if carrier != "auto" and not (isinstance(carrier, list | tuple) and len(carrier) == 2):
            raise ConfigError(f"input op 'sideband': carrier is {carrier!r}; expected 'auto' or [fx, fy] in cycles/px")
        if not 0 < radius < 1:
            raise ConfigError(f"input op 'sideband': radius is {radius!r}; expected a fraction of |f_c| in (0, 1)")
        if isinstance(detrend, bool) or not isinstance(detrend, int) or not 1 <= detrend <= _MAX_DETREND:
            raise ConfigError(f"input op 'sideband': detrend is {detrend!r}; expected the degree of the polynomial "
                              f"phase removed, an integer from 1 (the linear ramp) to {_MAX_DETREND}")
        if not isinstance(congruent, bool):
            raise ConfigError(f"input op 'sideband': congruent is {congruent!r}; expected true (the prediction "
                              "made congruent with the measured phase) or false")
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) \
                or not _FADE < tolerance <= math.pi - _FADE:
            raise ConfigError(f"input op 'sideband': tolerance is {tolerance!r}; expected the largest correction "
                              f"in rad, from {_FADE:g} to π - {_FADE:g} = {math.pi - _FADE:.3f}")
        if field_scale is not None and (isinstance(field_scale, bool) or not isinstance(field_scale, int | float)
                                        or not 0 < field_scale <= 1):
            raise ConfigError(f"input op 'sideband': field_scale is {field_scale!r}; expected the smoothing σ as a "
                              "fraction of the side, in (0, 1], or null for the whole correction")
        if isinstance(dead_zone, bool) or not isinstance(dead_zone, int | float) or not 0 <= dead_zone < 1:
            raise ConfigError(f"input op 'sideband': dead_zone is {dead_zone!r}; expected the smallest correction "
                              "made in the background, in rad, from 0 (none) to under 1")
        super().__init__(in_channels)
        self.congruent = congruent
        self.dead_zone = float(dead_zone)
        if congruent:
            self.register_buffer("target_scale", torch.zeros(()))
            """The phase (rad) of the network's output 1, set by training (:meth:`set_target_scale`); 0: unset."""
        self.field_scale = None if field_scale is None else float(field_scale)
        self.tolerance = float(tolerance)
        self.carrier = carrier if carrier == "auto" else tuple(float(c) for c in carrier)
        # A fixed carrier names its order: "auto" then takes it as given (as "+").
        self.sign = "+" if sign == "auto" and carrier != "auto" else sign
        self.radius = float(radius)
        self.pad = int(pad)
        self.grad_scale = float(grad_scale)
        self.detrend = detrend
        # The fit's constant matrices, moved with the layer: made per call they would be a copy from the
        # host, which a CUDA graph cannot hold (not saved: they follow from the degree).
        constants = detrend_fit_constants(detrend) if detrend > 1 else ()
        self._fit_constants = tuple(f"fit_constant_{i}" for i in range(len(constants)))
        for name, c in zip(self._fit_constants, constants, strict=True):
            self.register_buffer(name, c, persistent=False)
        if self.sign == "auto":
            self.register_buffer("reference", torch.zeros(2))
            """(fx, fy) cycles/px of the order that holds +φ, as :meth:`calibrate` found it; zeros: not yet."""

    def upgrade_state(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        """A checkpoint written before ``sign: auto`` existed has no reference: it loads uncalibrated (as
        ``"+"``, what it was trained with). Called by :func:`sparseconn.engine.checkpoint.upgraded_state`."""
        if self.sign == "auto" and prefix + "reference" not in state:
            state[prefix + "reference"] = torch.zeros(2)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        self.upgrade_state(state_dict, prefix)  # plain load_state_dict of an old state too
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def calibrated(self) -> bool:
        return self.sign != "auto" or bool(self.reference.abs().sum() > 0)

    def calibrate(self, x: torch.Tensor) -> str | None:
        """Learn which order holds +φ from holograms (B, 1, H, W): the classical pipeline's choice on each
        of up to 8 of them (cells are optically denser than the medium: the sign that leaves them above the
        fitted background, :func:`~tasks.phase_retrieval.classical.retrieve_phase_info`), by majority; the
        mean carrier of the majority becomes :attr:`reference`. Nothing for ``sign`` ``"+"`` or ``"-"``."""
        if self.sign != "auto":
            return None
        from sparseconn_tasks.phase_retrieval.classical import retrieve_phase_info

        frames = x[:_CALIBRATION_FRAMES, 0].detach().cpu().double().numpy()  # (n, H, W)
        carriers = np.array([retrieve_phase_info(f, sideband="auto").sideband for f in frames])  # (n, 2)
        side = np.where(carriers @ carriers[0] >= 0, 1.0, -1.0)  # each +φ order on the first one's side?
        n, ahead = len(side), int((side > 0).sum())
        mean = (side[:, None] * carriers).mean(axis=0)  # the carriers, all turned to the first one's side
        ref = mean if 2 * ahead >= n else -mean  # ties go to the first frame's choice
        self.reference.copy_(torch.as_tensor(ref, dtype=self.reference.dtype))
        agree = "1 of 1 frame" if n == 1 else f"{max(ahead, n - ahead)} of {n} frames agree"
        return f"+φ order at ({ref[0]:+.4f}, {ref[1]:+.4f}) cycles/px ({agree})"

    # --- the +1 order -----------------------------------------------------------------------------------

    def find_carrier(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Carrier ``(fx, fy)`` cycles/px of each image of (B, H, W), each of shape (B,), on the FFT grid."""
        b, h, w = x.shape
        # The frequencies before the FFT: an exporter then takes the spectrum's width from W, not from the
        # complex spectrum (the ONNX exporter cannot read the shape of a complex tensor).
        fx = _rfreqs(w, x.device)[None, :]
        fy = _freqs(h, x.device)[:, None]
        win, keep = (_carrier_search if _exporting() else _carrier_search_cached)(h, w, x.device)
        spec = torch.fft.rfft2(_wide(x * win))  # (B, H, W // 2 + 1): a real image's spectrum is Hermitian
        # The power's peak is the magnitude's: squares of the parts, without abs()'s hypot on the complex
        # tensor (1.7 against 0.5 ms at 1024² on 2 CPU cores).
        power = (spec.real.square() + spec.imag.square()) * keep
        # The peak in two steps, each row's then the best row's: the first maximum in row-major order, as
        # one argmax over the flattened spectrum finds it, but a reduction that can run in parallel over
        # rows when compiled (inductor made the power spectrum and the flat argmax one reduction kernel,
        # 0.16 ms at 1024² on an H200).
        row_peak, row_arg = power.max(dim=2)  # (B, H)
        iy = row_peak.argmax(dim=1)  # (B,)
        ix = row_arg.gather(1, iy[:, None])[:, 0]
        cx, cy = fx[0, ix], fy[iy, 0]
        if self.sign == "auto":  # the order on the reference's side (zeros, not calibrated: as found, "+")
            turn = torch.where(cx * self.reference[0] + cy * self.reference[1] < 0, -1.0, 1.0)
            cx, cy = cx * turn, cy * turn
        return cx, cy

    def _order(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Holograms (B, H, W) less their means, the carriers ``cx, cy`` and the window's radii ``r_in,
        r_out`` (B,) each."""
        b = x.shape[0]
        x = x - x.mean(dim=(-2, -1), keepdim=True)
        if self.carrier == "auto":
            cx, cy = self.find_carrier(x)  # (B,), (B,)
        else:
            cx = torch.full((b,), self.carrier[0], device=x.device)
            cy = torch.full((b,), self.carrier[1], device=x.device)
        r = _hypot(cx, cy) * self.radius
        return x, cx, cy, r * (1 - _TAPER / 2), r * (1 + _TAPER / 2)

    def _full(self, x: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r_in: torch.Tensor,
              r_out: torch.Tensor) -> torch.Tensor:
        """The windowed order (B, H, W) complex, by full 2-D transforms of the padded holograms."""
        h, w = x.shape[-2:]
        p = self.pad
        xp = torch.nn.functional.pad(x, (p, p, p, p))  # (B, H + 2p, W + 2p), zeros = the mean
        hp, wp = xp.shape[-2:]
        fx, fy = _freqs(wp, x.device)[None, None, :], _freqs(hp, x.device)[None, :, None]
        d = torch.sqrt((fx - cx[:, None, None]) ** 2 + (fy - cy[:, None, None]) ** 2)  # (B, Hp, Wp) to the carrier
        win = _window(d, r_in[:, None, None], r_out[:, None, None])
        return torch.fft.ifft2(torch.fft.fft2(_wide(xp)) * win)[:, p:p + h, p:p + w]

    def _boxed(self, x: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r_in: torch.Tensor,
               r_out: torch.Tensor) -> torch.Tensor:
        """:meth:`_full` from the window's bounding box of the spectrum alone (eager, CPU): the same field
        within float32 rounding, in under half the time at 1024².

        The holograms are padded at the end rather than on both sides (the same circular neighbourhood);
        the half spectrum of the real FFT gives the box's bins (those with ``fx < 0`` as the conjugates of
        their mirrors); the inverse transform runs along H for the box's columns only, then along W for the
        H kept rows. An image whose box spans half the spectrum takes the full transforms."""
        b, h, w = x.shape
        hp, wp = h + 2 * self.pad, w + 2 * self.pad
        spec = torch.fft.rfft2(x, s=(hp, wp))  # (B, Hp, Wp // 2 + 1)
        fx_all, fy_all = _freqs(wp, x.device), _freqs(hp, x.device)
        out = []  # (H, W) each: for one image, a view of its last transform (no copy)
        for i in range(b):
            c_x, c_y, ro = float(cx[i]), float(cy[i]), float(r_out[i])
            ky = torch.arange(math.floor((c_y - ro) * hp), math.ceil((c_y + ro) * hp) + 1, device=x.device)
            kx = torch.arange(math.floor((c_x - ro) * wp), math.ceil((c_x + ro) * wp) + 1, device=x.device)
            if len(ky) > hp // 2 or len(kx) > wp // 2:
                out.append(self._full(x[i:i + 1], cx[i:i + 1], cy[i:i + 1], r_in[i:i + 1], r_out[i:i + 1])[0])
                continue
            ky, kx = ky % hp, kx % wp  # the bins of the full spectrum, each once
            direct = kx <= wp // 2  # columns the half spectrum holds; the rest are conj(X[-ky, -kx])
            rows = torch.where(direct[None, :], ky[:, None], ((hp - ky) % hp)[:, None])
            cols = torch.where(direct, kx, (wp - kx) % wp)[None, :].expand_as(rows)
            vals = spec[i][rows, cols]  # (ny, nx)
            vals = torch.where(direct[None, :], vals, vals.conj())
            d = torch.sqrt((fx_all[kx][None, :] - cx[i]) ** 2 + (fy_all[ky][:, None] - cy[i]) ** 2)
            vals = vals * _window(d, r_in[i], r_out[i])
            cols_h = torch.zeros((hp, len(kx)), dtype=spec.dtype, device=x.device)
            cols_h[ky] = vals
            cols_h = torch.fft.ifft(cols_h, dim=0)[:h]  # (H, nx): along H, the box's columns only
            rows_w = torch.zeros((h, wp), dtype=spec.dtype, device=x.device)
            rows_w[:, kx] = cols_h
            out.append(torch.fft.ifft(rows_w, dim=1)[:, :w])  # along W for the H kept rows
        return out[0][None] if b == 1 else torch.stack(out)

    # --- ramp, piston and gradients ----------------------------------------------------------------------

    def _field(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The +1-order field of holograms (B, H, W) (its conjugate for ``sign="-"``; for ``"auto"`` the
        order :meth:`find_carrier` turned to the reference's side) as contiguous real
        and imaginary float32 planes: real arithmetic on them exports to ONNX, and on the CPU it runs
        vectorised (on the complex tensor's interleaved parts every op took the slow strided path)."""
        h, w = x.shape[-2:]
        x, cx, cy, r_in, r_out = self._order(x)
        boxed = not _exporting() and x.device.type == "cpu" and (x.shape[0] == 1 or h * w >= _BOXED_MIN_PIXELS)
        field = self._boxed(x, cx, cy, r_in, r_out) if boxed else self._full(x, cx, cy, r_in, r_out)
        re, im = field.real, -field.imag if self.sign == "-" else field.imag  # "-": the conjugate order
        if re.dtype != torch.float32:  # exported: back to float32 after the float64 DFTs
            re, im = re.float(), im.float()
        return re.contiguous(), im.contiguous()

    def _corrected(self, x: torch.Tensor, steps: bool = True) -> tuple[torch.Tensor, ...]:
        """The +1-order field of holograms (B, H, W), ramp and piston removed, and (``steps``) its neighbour
        products along W and along H: the real and imaginary parts of each, six (B, H, W)-sized tensors (two
        without ``steps``)."""
        h, w = x.shape[-2:]
        re, im = self._field(x)
        # Shift the order to DC and remove the linear ramp in one step: the mean phase step between
        # neighbours, weighted by |field|², is the carrier (on the grid or not) plus the tilt. Cells rise
        # and fall, so their steps cancel. The correction is separable: (B, W) and (B, H) phasors.
        sxr, sxi = _step(re, im, -1)
        syr, syi = _step(re, im, -2)
        ax = torch.atan2(_total(sxi), _total(sxr))[:, None]  # (B, 1) rad per px
        ay = torch.atan2(_total(syi), _total(syr))[:, None]
        cx, sx = _phasor(-ax, w)  # (B, W)
        cy, sy = _phasor(-ay, h)  # (B, H)
        if self.detrend > 1:  # the polynomial and the piston from the ramp-free field, the steps anew
            pr, pi = _correction(cx, sx, cy, sy)
            fr, fi = self._detrended(re * pr - im * pi, re * pi + im * pr)
            return (fr, fi) if not steps else (fr, fi, *_step(fr, fi, -1), *_step(fr, fi, -2))
        # The piston: the phase of the field's sum once the ramp is gone.
        # (matrix-vector products: (B, H, W) @ (B, W, 1), no (B, H, W) temporaries)
        rr = (torch.matmul(re, cx[:, :, None]) - torch.matmul(im, sx[:, :, None]))[..., 0]  # (B, H)
        ri = (torch.matmul(re, sx[:, :, None]) + torch.matmul(im, cx[:, :, None]))[..., 0]
        cx, sx = _phasor(-ax, w, -_piston(rr, ri, cy, sy))
        pr, pi = _correction(cx, sx, cy, sy)
        if not steps:
            return re * pr - im * pi, re * pi + im * pr
        # The corrected field's neighbour products are the raw ones turned by the removed steps.
        tx, ty = torch.cos(ax)[:, :, None], torch.sin(ax)[:, :, None]
        uy, vy = torch.cos(ay)[:, :, None], torch.sin(ay)[:, :, None]
        return (re * pr - im * pi, re * pi + im * pr, sxr * tx + sxi * ty, sxi * tx - sxr * ty,
                syr * uy + syi * vy, syi * uy - syr * vy)

    def _table(self, br: torch.Tensor, bi: torch.Tensor, h: int, w: int,
               fitted_table: Callable[..., torch.Tensor] = detrend.fitted_table) -> torch.Tensor:
        """The polynomial phase fitted to an (H, W) ramp-free field from its block means ``br + i·bi``, with
        the piston of what is left, as a table (B, d + 1, d + 1) (:func:`~.detrend.fitted_table`, or its
        compiled twin)."""
        constants = tuple(getattr(self, name) for name in self._fit_constants)
        return fitted_table(br, bi, h, w, self.detrend, constants)

    def _detrended(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ramp-free field ``re + i·im`` (B, H, W) less its fitted polynomial phase and its piston."""
        h, w = re.shape[-2:]
        q = detrend.evaluate(self._table(*detrend.block_means(re, im), h, w), h, w)
        c, s = torch.cos(q), torch.sin(q)
        return re * c + im * s, im * c - re * s

    def _compiled_forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_forward` for CPU inference once :meth:`compile_parts` has run: the transforms and the
        image-wide sums eager, the arithmetic on whole planes compiled (row sums, which run in parallel
        over rows; the detrend's fit; the four channels in one pass, written as planes (NCHW))."""
        step_row_sums, piston_row_sums, channels, ramp_free_blocks, channels_detrended, fitted_table = self._parts
        h, w = x.shape[-2:]
        re, im = self._field(x[:, 0].float())
        sx_rows, sy_rows = step_row_sums(re, im)  # (B, 2, H), (B, 2, H - 1)
        sx_tot, sy_tot = sx_rows.sum(dim=-1), sy_rows.sum(dim=-1)  # (B, 2)
        ax = torch.atan2(sx_tot[:, 1], sx_tot[:, 0])[:, None]
        ay = torch.atan2(sy_tot[:, 1], sy_tot[:, 0])[:, None]
        cx, sx = _phasor(-ax, w)
        cy, sy = _phasor(-ay, h)
        if self.detrend > 1:
            br, bi = ramp_free_blocks(re, im, cx, sx, cy, sy, detrend.BLOCK)
            return channels_detrended(re, im, cx, sx, cy, sy, self._table(br, bi, h, w, fitted_table), self.grad_scale)
        rr, ri = piston_row_sums(re, im, cx, sx)
        cx, sx = _phasor(-ax, w, -_piston(rr, ri, cy, sy))
        return channels(re, im, cx, sx, cy, sy, ax, ay, self.grad_scale)

    # --- the layer --------------------------------------------------------------------------------------

    def demodulate(self, x: torch.Tensor) -> torch.Tensor:
        """The +1-order field, ramp and piston removed, as (B, 2, H, W) real and imaginary parts, from
        holograms (B, H, W)."""
        return torch.stack(self._corrected(x, steps=False), dim=1)

    def compile_parts(self) -> str:
        """Compile the layer's arithmetic on whole planes for CPU inference (the fast path's ``compiled``
        engine calls this on its copy of the model): sums along rows, which run in parallel over rows, the
        detrend's fit, and the four channels in one pass with a vectorised atan2. The FFTs and the
        image-wide totals of the row sums stay eager.

        The channels are written as planes (NCHW), not channels-last: inductor vectorises a kernel along
        its innermost axis, four channels would fill a quarter of a 16-lane vector, and the congruent
        finish reads two of them. The compiled demo child at 1024² on 2 cores, the two versions called in
        turn 25 times in one process: 101.0 / 114.9 ms (min / median) against 110.1 / 123.3 with the
        channels-last planes and the fit eager (docs/measurements.md)."""
        self._parts = compiled_parts()
        return "its plane arithmetic compiled"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A bf16 fast path runs under autocast: the phase arithmetic stays float32. (Autocast knows no "meta"
        # device, where MACs are counted.)
        if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def finish(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """With ``congruent`` set: the prediction ``y`` (B, K, H, W), phase / :attr:`target_scale`, made congruent
        with the measured phase θ = atan2(z₁, z₀) of this op's output ``z``. θ is known up to a multiple of
        2π at each pixel and up to one constant offset per image (the piston the op removes is the whole
        field's, cells included). The offset c is the circular mean of (prediction - θ) over the pixels the
        network puts in the background; each pixel then takes the prediction plus its wrapped difference r =
        wrap(θ + c - prediction), faded out where |r| nears ``tolerance`` (there the network is taken to be
        off by more than a wrap, which the measurement cannot mend), less the correction's smooth part at
        the ``field_scale`` (:func:`_smooth`), without small corrections where the network sees background
        (``dead_zone``), and is clipped to [0, target_scale]. On the independent simulator's base holograms the
        ``make demo`` child scored 0.098 rad RMSE alone and 0.068 finished (docs/measurements.md).
        Runs in float32 (also under a bf16 autocast)."""
        if not self.congruent:
            return y
        if y.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(y.device.type):
            with torch.autocast(y.device.type, enabled=False):
                out = self._congruent(y.float(), z.float())
        else:
            out = self._congruent(y.float(), z.float())
        # Until training has set the scale, the output as it is (a select, not a branch: exports trace it).
        return torch.where(self.target_scale > 0, out, y.float()).to(y.dtype)

    def set_target_scale(self, scale: float) -> None:
        if self.congruent:
            self.target_scale.fill_(float(scale))

    def _congruent(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        scale = self.target_scale
        p = y * scale  # (B, K, H, W) rad
        theta = torch.atan2(z[:, 1:2], z[:, 0:1])  # (B, 1, H, W)
        # The offset from every 4th pixel along each axis: as good a mean, a 16th of the sines and cosines.
        d = p[..., ::4, ::4] - theta[..., ::4, ::4]
        ground = (p[..., ::4, ::4] < _BACKGROUND).to(p.dtype)
        enough = ground.sum(dim=(2, 3), keepdim=True) >= 0.01 * d.shape[-2] * d.shape[-1]
        w = torch.where(enough, ground, torch.ones_like(ground))
        c = torch.atan2((w * torch.sin(d)).sum(dim=(2, 3), keepdim=True),
                        (w * torch.cos(d)).sum(dim=(2, 3), keepdim=True))
        r = c - (p - theta)
        r = r - (2 * math.pi) * torch.round(r / (2 * math.pi))  # wrapped to [-π, π]
        r = r * ((self.tolerance + _FADE - r.abs()) / (2 * _FADE)).clamp(0.0, 1.0)
        small = r.abs()
        if self.field_scale is not None:
            r = r - _smooth(r, self.field_scale)
        if self.dead_zone > 0:  # in the background (fully at phase 0, not from 0.3 rad), no small corrections
            background = (1.0 - p / _BACKGROUND).clamp(0.0, 1.0)
            r = r * (1.0 - background * (1.0 - ((small - self.dead_zone) / self.dead_zone).clamp(0.0, 1.0)))
        return torch.minimum((p + r).clamp_min(0.0), scale) / scale.clamp_min(1e-6)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._parts is not None and x.device.type == "cpu" and not x.requires_grad and not _exporting():
            return self._compiled_forward(x)
        re, im, xr, xi, yr, yi = self._corrected(x[:, 0].float())
        # Wrap-free gradients: the phase of the corrected field's neighbour products, zero at the far borders.
        if _exporting() or re.requires_grad:  # (writes into an output tensor have no gradient)
            mag = torch.sqrt(re * re + im * im).clamp_min(1e-12)
            dx = torch.nn.functional.pad(torch.atan2(xi, xr), (0, 1))
            dy = torch.nn.functional.pad(torch.atan2(yi, yr), (0, 0, 0, 1))
            return torch.stack([re / mag, im / mag, dx * self.grad_scale, dy * self.grad_scale], dim=1)
        # Eager inference: each channel written into the (B, 4, H, W) output, no padded or stacked copies.
        b, h, w = re.shape
        out = torch.empty((b, 4, h, w), device=re.device)
        inv = (re * re + im * im).clamp_min_(1e-24).rsqrt_()  # 1 / |field| (hypot is twice as slow)
        torch.mul(re, inv, out=out[:, 0])
        torch.mul(im, inv, out=out[:, 1])
        torch.atan2(xi, xr, out=out[:, 2, :, :-1])
        torch.atan2(yi, yr, out=out[:, 3, :-1, :])
        out[:, 2, :, -1] = 0
        out[:, 3, -1, :] = 0
        out[:, 2:].mul_(self.grad_scale)
        return out
