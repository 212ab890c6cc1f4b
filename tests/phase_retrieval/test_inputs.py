"""The phase task's input ops: exposure-proof (``hologram``) and demodulating (``sideband``)."""

from __future__ import annotations

import math
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from skimage.restoration import unwrap_phase
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate

from sparseconn.errors import ConfigError
from sparseconn.inputs import build_input_op


def _clean(size: int = 128, seed: int = 0):
    cfg = SimConfig(size=size, full_well=0.0, bit_depth=None, debris_prob=0.0)
    return simulate(cfg, np.random.default_rng(seed))


def _quantise(h: np.ndarray, bits: int) -> np.ndarray:
    levels = 2**bits - 1
    return np.round(np.clip(h, 0, 1) * levels) / levels


def _rms(a: torch.Tensor) -> float:
    return float(a.pow(2).mean().sqrt())


@pytest.mark.parametrize("name", ["hologram", "sideband"])
def test_normalised_input_ignores_exposure_and_bit_depth(name):
    """Gain 0.3 or 3 and an offset leave the input unchanged; quantisation moves it by about its own
    error: one step of 2^-bits is ±0.5 step uniform (RMS step/√12) relative to the fringe's RMS."""
    holo = _clean(seed=1).hologram.astype(np.float64)
    op = build_input_op(name, 1, {}).eval()

    def net_input(h: np.ndarray) -> torch.Tensor:
        return op(torch.from_numpy(h.astype(np.float32))[None, None])

    ref = net_input(holo)
    for changed in (0.3 * holo, 3.0 * holo, holo + 0.2, 40000.0 * holo + 100.0):
        assert _rms(net_input(changed) - ref) < 1e-4
    signal = float(holo.std())
    for bits in (8, 12, 16):
        quant_rms = 2.0**-bits / math.sqrt(12)
        moved = _rms(net_input(_quantise(holo, bits)) - ref)
        # hologram: exactly quant/signal; sideband: the sideband keeps ~1/3 of the fringe's power and the
        # window passes a fraction of the (white) quantisation noise, so the same order, within 3x.
        assert moved < 3.0 * quant_rms / signal, (bits, moved, quant_rms / signal)


def _phase_of(y: torch.Tensor) -> np.ndarray:
    return np.arctan2(y[0, 1].numpy(), y[0, 0].numpy())


def _plane_residual(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    yy, xx = np.mgrid[:h, :w]
    basis = np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)], 1)
    coef, *_ = np.linalg.lstsq(basis, a.ravel(), rcond=None)
    return a - (basis @ coef).reshape(h, w)


@pytest.mark.parametrize("carrier", ["auto", "fixed"])
def test_sideband_demodulates_the_sample_and_aberration_phase(carrier):
    s = _clean(size=128, seed=2)
    params = {} if carrier == "auto" else {"carrier": list(s.carrier)}
    y = build_input_op("sideband", 1, params)(torch.from_numpy(s.hologram)[None, None])
    assert y.shape == (1, 4, 128, 128)
    assert torch.allclose(y[0, 0] ** 2 + y[0, 1] ** 2, torch.ones(128, 128), atol=1e-4)
    # Its phase, unwrapped, is φ_sample + φ_aberration up to the removed plane (ramp and piston).
    err = _plane_residual(unwrap_phase(_phase_of(y)) - (s.phase + s.aberration))[12:-12, 12:-12]
    assert np.sqrt(np.mean(err**2)) < 0.05
    # The gradient channels are the wrapped phase's neighbour differences (scaled by grad_scale = 4).
    theta = _phase_of(y)
    dx = np.angle(np.exp(1j * (theta[:, 1:] - theta[:, :-1])))
    assert np.allclose(y[0, 2, :, :-1].numpy(), 4.0 * dx, atol=1e-3)


def test_sideband_minus_sign_conjugates_and_a_rotated_hologram_keeps_the_carrier():
    s = _clean(size=128, seed=3)
    x = torch.from_numpy(s.hologram)[None, None]
    plus = build_input_op("sideband", 1, {})(x)
    minus = build_input_op("sideband", 1, {"sign": "-"})(x)
    assert torch.allclose(minus[:, 0], plus[:, 0], atol=1e-5) and torch.allclose(minus[:, 1], -plus[:, 1], atol=1e-5)
    # A 180° turn keeps the fringes' direction: the found carrier is the same.
    op = build_input_op("sideband", 1, {})
    fx, fy = op.find_carrier(x[:, 0] - x.mean())
    rx, ry = op.find_carrier(torch.flip(x[:, 0], dims=(-2, -1)) - x.mean())
    assert (float(fx), float(fy)) == pytest.approx((float(rx), float(ry)))
    assert (float(fx), float(fy)) == pytest.approx(s.carrier, abs=1.5 / 128)


def test_sideband_rejects_bad_settings():
    with pytest.raises(ConfigError, match="in_channels is 3"):
        build_input_op("sideband", 3, {})
    with pytest.raises(ConfigError, match="sign is 'x'"):
        build_input_op("sideband", 1, {"sign": "x"})
    with pytest.raises(ConfigError, match="carrier is 'fixed'"):
        build_input_op("sideband", 1, {"carrier": "fixed"})
    for bad in (0, 7, 2.0, True, "4"):
        with pytest.raises(ConfigError, match=rf"detrend is {bad!r}; expected the degree .* from 1 .* to 6"):
            build_input_op("sideband", 1, {"detrend": bad})


def _aberrated(sample, aberration: np.ndarray) -> torch.Tensor:
    """The clean ``sample``'s hologram made again with ``aberration`` (rad) in place of its own: (1, 1, H, W)."""
    h, w = sample.phase.shape
    yy, xx = np.mgrid[:h, :w]
    fx, fy = sample.carrier
    holo = 1 + 0.6 * np.cos(2 * np.pi * (fx * xx + fy * yy) + sample.phase + aberration)
    return torch.from_numpy(holo.astype(np.float32))[None, None]


def _third_order(h: int, w: int, scale: float) -> np.ndarray:
    """Defocus and astigmatism at 30°, ``scale`` rad each at the corners, and coma at 60°, half that."""
    yy, xx = np.mgrid[:h, :w]
    x, y = (xx - (w - 1) / 2) / (w / 2) / np.sqrt(2), (yy - (h - 1) / 2) / (h / 2) / np.sqrt(2)
    rho2, theta = x * x + y * y, np.arctan2(y, x)
    coma = (3 * rho2 - 2) * np.sqrt(rho2) * np.cos(theta - 1.0)
    return scale * ((2 * rho2 - 1) + rho2 * np.cos(2 * (theta - 0.5)) + 0.5 * coma)


def test_sideband_detrend_removes_aberrations_of_any_size():
    """``detrend: 3`` removes defocus, astigmatism and coma whatever their size (8 rad of defocus is five
    times the training range, 4 rad of coma ten times): what it passes on differs from the cells' own
    phase by the same small amount (the cells' pull on the fit, under 0.2 rad RMS once a plane is taken
    out) with 8 rad, 2 rad or none; ``detrend: 1`` (the ramp only) passes the aberration on."""
    s = _clean(size=256, seed=6)

    def error(degree: int, scale: float) -> float:
        op = build_input_op("sideband", 1, {"detrend": degree, "sign": "+"}).eval()
        with torch.no_grad():
            theta = unwrap_phase(_phase_of(op(_aberrated(s, _third_order(256, 256, scale)))))
        return float(np.sqrt(np.mean(_plane_residual(theta - s.phase)[8:-8, 8:-8] ** 2)))

    flat = error(3, 0.0)
    assert flat < 0.2
    for scale in (2.0, 8.0):
        assert abs(error(3, scale) - flat) < 0.02, scale
        assert error(1, scale) > 0.3 * scale, scale  # the aberration, less its plane, is still there


def test_detrend_fit_recovers_a_polynomial_phase_and_solves_like_linalg():
    """The robust fit finds a known 4th-order polynomial (5 rad from end to end) under three cells of 4 rad
    (to 0.03 rad RMS, 0.1 at worst), and its Gauss-Jordan solve, by products (exports) or by slices (CUDA
    graphs), gives ``torch.linalg.solve``'s answer, in the whole fit too."""
    from sparseconn_tasks.phase_retrieval import detrend

    h, w = 192, 256
    g = torch.Generator().manual_seed(0)
    coef = torch.randn(1, len(detrend.terms(4)), generator=g)  # slopes up to ~0.1 rad/px
    poly = detrend.plane(coef, 4, h, w)[0]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cells = sum(4.0 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 18.0**2))
                for cx, cy in ((60, 50), (180, 120), (100, 150)))
    phase = poly + cells + 0.7  # the piston is not fitted
    br, bi = detrend.block_means(torch.cos(phase)[None], torch.sin(phase)[None])
    found = detrend.plane(detrend.fit(br, bi, h, w, 4), 4, h, w)[0]
    assert float((found - poly).abs().max()) < 0.1 and float((found - poly).pow(2).mean().sqrt()) < 0.03
    sliced = detrend.fit(br, bi, h, w, 4, constants=detrend.fit_constants(4), graph_safe=True)
    assert torch.allclose(sliced, detrend.fit(br, bi, h, w, 4), atol=1e-5)
    m = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    m = m @ m.transpose(1, 2) + 0.1 * torch.eye(6, dtype=torch.float64)
    v = torch.randn(3, 6, generator=g, dtype=torch.float64)
    for how in (False, True):
        assert torch.allclose(detrend._solve(m, v, sliced=how), torch.linalg.solve(m, v), atol=1e-9)


@pytest.mark.parametrize("detrend", [1, 3])
def test_sideband_exports_to_onnx_and_matches_eager(tmp_path, detrend):
    ort = pytest.importorskip("onnxruntime")  # the dev extras install it, so CI runs this
    from sparseconn_tasks.phase_retrieval import detrend as fit

    # The export is the fit's first call (its constants once were tensors cached while tracing: fake ones,
    # which broke every later call in the process; this test then passed only after another had run).
    fit._map_values.cache_clear()
    s = _clean(size=128, seed=4)
    op = build_input_op("sideband", 1, {"detrend": detrend}).eval()
    x = torch.from_numpy(s.hologram)[None, None]
    path = tmp_path / "sideband.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(op, (x,), str(path), input_names=["input"], output_names=["output"], dynamo=True,
                          external_data=False, verbose=False)
    got = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert np.abs(got - op(x).numpy()).max() < 1e-3


def _fringes(h: int, w: int, carriers: list[tuple[float, float]], seed: int = 0) -> torch.Tensor:
    """(B, 1, H, W) holograms, one per carrier, each with a smooth random phase and noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    out = []
    for fx, fy in carriers:
        phase = 3.0 * torch.sin(xx / (0.3 * w) + torch.rand(1, generator=g).item() * 6) \
            * torch.cos(yy / (0.4 * h) + torch.rand(1, generator=g).item() * 6)
        fringe = 1 + 0.7 * torch.cos(2 * math.pi * (fx * xx + fy * yy) + phase)
        out.append(fringe + 0.05 * torch.randn(h, w, generator=g, dtype=torch.float64))
    return torch.stack(out)[:, None].float()


@pytest.mark.parametrize("sign", ["+", "-"])
def test_sideband_boxed_transforms_give_the_full_transforms_field(sign):
    """On the CPU the layer transforms back only the window's box of the half spectrum (bins with fx < 0
    from their mirrors); it gives the field of the full 2-D transforms: carriers off and near the axes,
    one near fx = 0 whose window takes both halves, a batch of different carriers, odd sizes."""
    op = build_input_op("sideband", 1, {"sign": sign})
    x = _fringes(90, 124, [(0.21, 0.13), (0.02, 0.27), (0.3, 0.0), (0.17, -0.22)])[:, 0]
    x, cx, cy, r_in, r_out = op._order(x)
    assert float(cx.abs().min()) < float(r_out.max())  # one window crosses fx = 0: mirrored bins are read
    boxed, full = op._boxed(x, cx, cy, r_in, r_out), op._full(x, cx, cy, r_in, r_out)
    assert boxed.shape == full.shape == (4, 90, 124)
    assert float((boxed - full).abs().max()) < 1e-5 * float(full.abs().max())


@pytest.mark.parametrize("detrend", [1, 3])
def test_sideband_layer_is_the_same_eager_and_in_its_export_form(monkeypatch, detrend):
    """The eager layer (in-place output; boxed transforms for an image alone in its batch, batched full
    transforms for a batch of small ones) and the form an exporter traces (full transforms, stacked output)
    agree within float32 rounding; a window as wide as half the spectrum (radius 0.9 on a small image)
    takes the full transforms in the boxed path too."""
    import sparseconn_tasks.phase_retrieval.inputs as inputs

    for params, x in [({}, _fringes(128, 96, [(0.02, 0.27)], seed=1)),
                      ({}, _fringes(128, 96, [(0.21, 0.13), (0.02, 0.27)], seed=1)),
                      ({"radius": 0.9, "pad": 4}, _fringes(24, 24, [(0.3, 0.2)], seed=2))]:
        op = build_input_op("sideband", 1, {**params, "detrend": detrend})
        with torch.no_grad():
            eager, field = op(x), op.demodulate(x[:, 0])
            monkeypatch.setattr(inputs, "_exporting", lambda: True)
            exported, field_exported = op(x), op.demodulate(x[:, 0])
            monkeypatch.undo()
        assert eager.shape == exported.shape == (x.shape[0], 4, *x.shape[-2:])
        assert float((eager - exported).abs().max()) < 1e-4
        # The fitted polynomial carries the two forms' float32 differences on: 3e-5 rad of phase.
        tolerance = 1e-5 if detrend == 1 else 3e-5
        assert float((field - field_exported).abs().max()) < tolerance * float(field.abs().max())


def test_sideband_layer_keeps_float32_under_bf16_autocast():
    """A bf16 fast path runs the network under autocast; the layer's phase arithmetic (its piston is a
    matrix product, which autocast would take to bf16) stays float32: the same output as without autocast."""
    op = build_input_op("sideband", 1, {})
    x = _fringes(64, 64, [(0.21, 0.13)], seed=3)
    with torch.inference_mode():
        plain = op(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = op(x)
    assert cast.dtype == torch.float32 and torch.equal(cast, plain)


@pytest.mark.parametrize("detrend", [1, 3])
def test_sideband_compiled_parts_give_the_eager_output(detrend):
    """The compiled engine's form of the layer (``compile_parts``: the plane arithmetic and the detrend's fit
    compiled) gives the eager layer's channels within float32 rounding (a batch of two holograms of the
    conjugate order at an odd size; one shape, as each new one compiles again)."""
    op = build_input_op("sideband", 1, {"sign": "-", "detrend": detrend})
    x = _fringes(41, 50, [(0.17, -0.22), (0.02, 0.27)], seed=5)
    with torch.inference_mode():
        eager = op(x)
        assert op.compile_parts() and op._parts is not None
        with mock.patch.object(op, "_compiled_forward", wraps=op._compiled_forward) as compiled_forward:
            compiled = op(x)
    assert compiled_forward.call_count == 1  # the compiled form ran
    assert compiled.shape == eager.shape and compiled.is_contiguous()  # planes: see compile_parts
    assert float((compiled - eager).abs().max()) < 2e-5


def test_the_polynomial_atan2_of_the_compiled_layer():
    """``_atan2_poly`` (vectorised by inductor, unlike its atan2) stays within 3.5e-7 rad of float64 atan2
    at every scale, in every quadrant and on the axes, and carries NaN through."""
    from sparseconn_tasks.phase_retrieval.sideband_compiled import _atan2_poly

    generator = torch.Generator().manual_seed(0)
    for scale in (1e-30, 1e-3, 1.0, 1e3, 1e30):
        y, x = (torch.randn(200_000, generator=generator) * scale for _ in range(2))
        error = (_atan2_poly(y, x).double() - torch.atan2(y.double(), x.double())).abs().max()
        assert float(error) < 3.5e-7
    y = torch.tensor([0.0, 1.0, -1.0, 0.0, 2.0, -2.0, float("nan"), 1.0])
    x = torch.tensor([1.0, 0.0, 0.0, -1.0, -2.0, -2.0, 1.0, float("nan")])
    expected = torch.atan2(y, x)
    got = _atan2_poly(y, x)
    assert torch.allclose(got[:6], expected[:6], atol=3e-7, rtol=0) and got[6:].isnan().all()


def _cos_sin(y: torch.Tensor) -> torch.Tensor:
    return y[:, :2]  # (B, 2, H, W): cos θ, sin θ of the demodulated field


def test_sideband_auto_sign_learns_the_order_that_holds_plus_phi_on_a_turned_or_mirrored_microscope():
    """Turned by 180°, a hologram's +φ order sits at -f: the fixed half plane fx > 0 gives the conjugate
    field (the demo child then scored below the zero-phase floor); calibrated on such frames, ``auto`` takes
    the +φ order, so the network sees the field it was trained on."""
    frames = [_clean(size=128, seed=10 + i) for i in range(3)]
    x = torch.stack([torch.from_numpy(s.hologram) for s in frames])[:, None]  # (3, 1, 128, 128)
    turned = torch.flip(x, dims=(-2, -1))
    op = build_input_op("sideband", 1, {}).eval()
    assert op.sign == "auto" and not op.calibrated and op.state_dict()["reference"].abs().sum() == 0
    plus = build_input_op("sideband", 1, {"sign": "+"}).eval()
    assert torch.equal(op(x), plus(x))  # not calibrated: as "+"

    note = op.calibrate(x)
    assert op.calibrated and "(3 of 3 frames agree)" in note
    assert tuple(op.reference.tolist()) == pytest.approx(frames[0].carrier, abs=1.5 / 128)
    assert torch.equal(op(x), plus(x))  # the simulator's convention is "+"

    op.calibrate(turned)
    assert tuple(op.reference.tolist()) == pytest.approx(tuple(-c for c in frames[0].carrier), abs=1.5 / 128)
    back = torch.flip(_cos_sin(op(turned)), dims=(-2, -1))
    wrong = torch.flip(_cos_sin(plus(turned)), dims=(-2, -1))
    inner = (..., slice(16, -16), slice(16, -16))  # away from the borders' leakage
    assert float((back - _cos_sin(plus(x)))[inner].abs().mean()) < 0.05  # the +φ field, turned back
    assert float((wrong - _cos_sin(plus(x)))[inner].abs().mean()) > 0.2  # "+": the conjugate


def test_sideband_auto_sign_is_kept_by_checkpoints_and_old_states_load_uncalibrated():
    from sparseconn.engine.checkpoint import upgraded_state

    op = build_input_op("sideband", 1, {})
    op.calibrate(torch.from_numpy(_clean(size=128, seed=4).hologram)[None, None])
    fresh = build_input_op("sideband", 1, {})
    fresh.load_state_dict(op.state_dict())
    assert fresh.calibrated and torch.equal(fresh.reference, op.reference)
    old = upgraded_state(fresh, {})  # a state written before the op had a reference
    assert torch.equal(old["reference"], torch.zeros(2))
    fresh.load_state_dict({})
    assert not fresh.calibrated
    # "+" and "-", and a fixed carrier (which names its order), have nothing to calibrate.
    for params in ({"sign": "+"}, {"sign": "-"}, {"carrier": [0.2, 0.2]}):
        fixed = build_input_op("sideband", 1, params)
        assert fixed.calibrated and fixed.calibrate(torch.zeros(1, 1, 64, 64)) is None and not fixed.state_dict()


def test_train_refuses_an_architecture_whose_sideband_is_set_up_differently():
    """The child is built from the architecture alone: the shipped demo child (``detrend: 3``) trained with
    a config of ``detrend: 1`` would run the ramp-only layer under a config.yaml that says 3. Settings that
    build the same op (``{}`` and the default written out) are the same."""
    from pathlib import Path

    from sparseconn.architecture import Architecture
    from sparseconn.engine.config import load_run_config
    from sparseconn.engine.jobs import check_same_space
    from sparseconn.errors import SparseconnError

    tasks = Path(__file__).parents[2] / "tasks"
    cfg = load_run_config(tasks / "phase_retrieval.yaml")
    arch = Architecture.load(tasks / "phase_retrieval" / "architectures" / "demo_child.json")
    check_same_space(cfg, arch)  # the shipped pair agrees

    def with_input(params: dict):
        space = arch.space.model_copy(update={"input": arch.space.input.model_copy(update={"params": params})})
        return arch.model_copy(update={"space": space})

    with pytest.raises(SparseconnError, match=r"input op 'sideband' is set up differently \(congruent: False in the "
                                              r"architecture, True in the config, detrend: 1 in the architecture, 3 "
                                              r"in the config\)"):
        check_same_space(cfg, with_input({}))
    ramp = cfg.model_copy(update={"space": cfg.space.model_copy(update={
        "input": cfg.space.input.model_copy(update={"params": {}})})})
    check_same_space(ramp, with_input({"detrend": 1}))
