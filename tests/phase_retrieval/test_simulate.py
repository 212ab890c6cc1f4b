"""The hologram simulator: forward model, invariants, randomised ranges, determinism and the validator."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from pydantic import ValidationError
from sparseconn_tasks.phase_retrieval import optics
from sparseconn_tasks.phase_retrieval.cells import SHAPES
from sparseconn_tasks.phase_retrieval.classical import retrieve_phase
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, cross_domain, sample_phase, simulate

NO_ABERRATION = {"tilt": 0, "defocus": 0, "astigmatism": 0, "coma": 0, "trefoil": 0, "spherical": 0,
                 "secondary_astigmatism": 0, "quadrafoil": 0}
# A clean, flat, stray-free setup with fixed visibility and exposure: the forward model in closed form.
CLEAN = {"full_well": 0, "bit_depth": None, "debris_prob": 0, "envelope_width": 1e6, "parasitic_prob": 0,
         "dust_prob": 0, "visibility": 0.8, "exposure": 0.9, "dark_offset": 0}


def small(**overrides) -> SimConfig:
    """128 px fields with cells that leave background in view."""
    return SimConfig(**{"size": 128, "n_cells": (1, 3), "semi_axis": (10.0, 24.0), **overrides})


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_outputs_shapes_types_ranges() -> None:
    cfg = small()
    s = simulate(cfg, np.random.default_rng(0))
    for arr in (s.hologram, s.phase, s.background, s.aberration):
        assert arr.shape == (128, 128) and arr.dtype == np.float32
    assert 0.0 <= s.hologram.min() and s.hologram.max() <= 1.0
    assert 0.0 <= s.background.min() and s.background.max() <= 1.0
    assert np.hypot(*s.carrier) == pytest.approx(np.hypot(*cfg.carrier), rel=0.031)


@pytest.mark.parametrize("seed", range(6))
def test_phase_within_range_and_band(seed: int) -> None:
    cfg = small(phase_range=3.0, peak_phase=(2.0, None))
    phase = sample_phase(cfg, np.random.default_rng(seed))
    assert phase.min() == 0.0  # background is exactly 0 (cells and blur have compact support)
    assert 2.0 * 0.5 <= phase.max() <= 3.0 + 1e-9
    gy, gx = np.gradient(phase)
    assert np.hypot(gx, gy).max() <= 2 * math.pi * cfg.bandwidth * 0.8 * 1.01


def test_peaks_span_the_range() -> None:
    """Per-field peaks run from a fraction of a radian to near phase_range (at 256 px, where cells of
    the needed width fit); high drawn peaks are reached, not flattened by the band."""
    weak = SimConfig(size=256, peak_distribution="log_uniform")
    peaks = [float(sample_phase(weak, np.random.default_rng(i)).max()) for i in range(24)]
    assert min(peaks) < 1.0 and max(peaks) > 6.0
    # The default draws uniformly: strong objects are common, not rare (median well above log-uniform's).
    even = [float(sample_phase(SimConfig(size=256), np.random.default_rng(i)).max()) for i in range(24)]
    assert min(even) < 3.0 and max(even) > 8.0 and np.median(even) > np.median(peaks) + 1.0, (even, peaks)
    tall = SimConfig(size=256, peak_phase=(10.0, None))
    peaks = [float(sample_phase(tall, np.random.default_rng(i)).max()) for i in range(8)]
    assert max(peaks) >= 0.9 * tall.phase_range and max(peaks) <= tall.phase_range + 1e-9
    assert float(np.median(peaks)) > 7.0, peaks


@pytest.mark.parametrize("shape", SHAPES.names())
def test_each_shape_draws_a_field(shape: str) -> None:
    cfg = small(shapes={shape: 1.0}, n_cells=(1, 2), peak_phase=(3.0, 3.0))
    for seed in range(2):
        s = simulate(cfg, np.random.default_rng(seed))
        assert 0.5 * 3.0 <= s.phase.max() <= 3.0 + 1e-6, shape
        assert (s.phase == 0).mean() > 0.1  # background in view
        assert np.isfinite(s.hologram).all()


def test_unknown_shape_and_envelope_are_refused() -> None:
    with pytest.raises(ValidationError, match="did you mean 'ellipsoid'"):
        SimConfig(shapes={"elipsoid": 1.0})
    with pytest.raises(ValidationError, match="available: flat_top, gaussian"):
        SimConfig(envelope={"tophat": 1.0})
    with pytest.raises(ValidationError, match="at least one positive weight"):
        SimConfig(shapes={"round": 0.0})


def test_deterministic_by_seed() -> None:
    cfg = small()
    a = simulate(cfg, np.random.default_rng(7))
    b = simulate(cfg, np.random.default_rng(7))
    c = simulate(cfg, np.random.default_rng(8))
    for name in ("hologram", "phase", "background", "aberration"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.carrier == b.carrier and a.carrier != c.carrier
    assert not np.array_equal(a.phase, c.phase)


@pytest.mark.parametrize("convention", [1, -1])
def test_forward_model_and_sign(convention: int) -> None:
    """Noise-free, flat illumination: I ∝ |R|² + |O|² + 2|R||O| cos(2π f·r + s(φ + φ_ab))."""
    s = simulate(small(**CLEAN, convention=convention), np.random.default_rng(1))
    fx, fy = s.carrier
    y, x = np.mgrid[0:128, 0:128]
    r = (1 - math.sqrt(1 - 0.8**2)) / 0.8  # |O| / |R| for visibility 0.8
    gain = 0.9 / (1 + r) ** 2
    carrier = 2 * np.pi * (fx * x + fy * y)
    expected = gain * (1 + r * r + 2 * r * np.cos(carrier + convention * (s.phase + s.aberration)))
    np.testing.assert_allclose(s.hologram, expected, atol=2e-5)
    expected_bg = gain * (1 + r * r + 2 * r * np.cos(carrier + convention * s.aberration))
    np.testing.assert_allclose(s.background, expected_bg, atol=2e-5)


def test_mirrored_convention_is_the_hologram_of_minus_phi() -> None:
    """convention −1 gives the hologram of −φ, which is the standard hologram with the carrier −f."""
    base = small(**{**CLEAN, "dust_prob": 0.5, "debris_prob": 0.5})
    mirrored = simulate(base.model_copy(update={"convention": -1}), np.random.default_rng(3))
    flipped = simulate(base.model_copy(update={"carrier_angle": base.carrier_angle + 180}), np.random.default_rng(3))
    standard = simulate(base, np.random.default_rng(3))
    np.testing.assert_array_equal(mirrored.phase, standard.phase)
    np.testing.assert_allclose(mirrored.hologram, flipped.hologram, atol=2e-5)
    assert mirrored.carrier == pytest.approx(tuple(-f for f in flipped.carrier))
    assert rmse(mirrored.hologram, standard.hologram) > 0.01


def test_noise_quantisation_and_bit_depth_choice() -> None:
    s = simulate(small(bit_depth=8), np.random.default_rng(2))
    levels = s.hologram * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    cfg = small(bit_depth=(8, 12))
    seen = set()
    for seed in range(12):
        h = simulate(cfg, np.random.default_rng(seed)).hologram.astype(np.float64)
        on8 = np.allclose(h * 255, np.round(h * 255), atol=1e-3)
        assert on8 or np.allclose(h * 4095, np.round(h * 4095), atol=1e-2)
        seen.add(on8)
    assert seen == {True, False}


def test_scalars_still_fix_ranges_and_the_config_round_trips() -> None:
    cfg = SimConfig(full_well=0, envelope_width=0.8, bit_depth=None, read_noise=5.0)
    assert cfg.full_well == (0, 0) and cfg.envelope_width == (0.8, 0.8) and cfg.bit_depth == (None,)
    assert SimConfig.model_validate(cfg.model_dump()) == cfg
    assert SimConfig.model_validate(SimConfig().model_dump()) == SimConfig()
    with pytest.raises(ValidationError, match="log-uniformly"):
        SimConfig(full_well=(0, 1000))
    with pytest.raises(ValidationError, match="peak_phase"):
        SimConfig(peak_phase=(1.0, 20.0))


def test_camera_noise_scales_with_full_well() -> None:
    """Photon-starved frames are noisier than clean ones (hologram − background of a cell-free field)."""
    spread = []
    for fw in (1000.0, 30000.0):
        cfg = small(n_cells=(0, 0), full_well=fw, read_noise=2.0, bit_depth=None, exposure=0.8, dark_offset=0.0)
        s = simulate(cfg, np.random.default_rng(0))
        spread.append(float(np.std(s.hologram - s.background)))
    assert spread[0] > 3 * spread[1]


def test_carrier_jitter_is_the_carrier_used() -> None:
    """Sample.carrier stays within the jitter, varies per field and is where the fringes are."""
    cfg = small(**CLEAN, **NO_ABERRATION, carrier_jitter=(0.05, 5.0), carrier_period=4.0)
    periods, angles = [], []
    for seed in range(8):
        s = simulate(cfg, np.random.default_rng(seed))
        fx, fy = s.carrier
        periods.append(1 / math.hypot(fx, fy))
        angles.append(math.degrees(math.atan2(fy, fx)))
        # The background's fringes peak at Sample.carrier (within one FFT bin).
        spec = np.abs(np.fft.fft2(s.background - s.background.mean()))
        spec[:, 64:] = 0  # keep one order: fx ≥ 0
        iy, ix = np.unravel_index(int(np.argmax(spec)), spec.shape)
        assert abs(np.fft.fftfreq(128)[ix] - fx) <= 1 / 128 and abs(np.fft.fftfreq(128)[iy] - fy) <= 1 / 128
    assert all(4.0 * 0.95 <= p <= 4.0 * 1.05 for p in periods) and np.ptp(periods) > 0.05
    assert all(40.0 <= a <= 50.0 for a in angles) and np.ptp(angles) > 1.0
    fixed = simulate(small(carrier_jitter=(0.0, 0.0)), np.random.default_rng(0))
    assert fixed.carrier == pytest.approx(SimConfig().carrier)


def test_aberration_terms_are_the_zernike_polynomials() -> None:
    """Each term, drawn alone, is its polar definition (plus the piston) over the unit-radius field."""
    n = 64
    g = (np.arange(n) - (n - 1) / 2) / (n / math.sqrt(2.0))
    u, v = np.meshgrid(g, g)
    rho, th = np.hypot(u, v), np.arctan2(v, u)
    polar = {"tilt": [rho * np.cos(th), rho * np.sin(th)], "defocus": [2 * rho**2 - 1],
             "astigmatism": [rho**2 * np.cos(2 * th), rho**2 * np.sin(2 * th)],
             "coma": [(3 * rho**3 - 2 * rho) * np.cos(th), (3 * rho**3 - 2 * rho) * np.sin(th)],
             "trefoil": [rho**3 * np.cos(3 * th), rho**3 * np.sin(3 * th)],
             "spherical": [6 * rho**4 - 6 * rho**2 + 1],
             "secondary_astigmatism": [(4 * rho**4 - 3 * rho**2) * np.cos(2 * th),
                                       (4 * rho**4 - 3 * rho**2) * np.sin(2 * th)],
             "quadrafoil": [rho**4 * np.cos(4 * th), rho**4 * np.sin(4 * th)]}
    for k, name in enumerate(optics.ZERNIKE):
        amps = tuple(1.0 if j == k else 0.0 for j in range(len(optics.ZERNIKE)))
        ab = optics.aberration(amps, n, np.random.default_rng(k))
        basis = np.stack([np.ones(n * n)] + [z.ravel() for z in polar[name]], axis=1)
        coef, *_ = np.linalg.lstsq(basis, ab.ravel(), rcond=None)
        assert np.abs(basis @ coef - ab.ravel()).max() < 1e-9, name
        assert 0 < np.linalg.norm(coef[1:]) <= 1.0 + 1e-9, name  # magnitude ≤ amp


@pytest.mark.parametrize("size", [128, 256])
def test_aberration_band_bounds_every_draw(size: int) -> None:
    cfg = SimConfig(size=size)
    bound = cfg.band_estimate - cfg.bandwidth
    worst = 0.0
    for seed in range(200):
        ab = optics.aberration(cfg.aberration_amplitudes, size, np.random.default_rng(seed))
        gy, gx = np.gradient(ab)
        worst = max(worst, float(np.hypot(gx, gy).max()) / (2 * math.pi))
    assert worst <= bound and worst > 0.3 * bound  # a bound, and not a loose one


def _limit(message: str) -> float:
    return float(re.search(r"must be [≤>] ([0-9.]+) px", message).group(1))


def test_carrier_too_close_to_dc_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        SimConfig(carrier_period=20.0)
    msg = str(err.value)
    assert "too close to DC" in msg and "|f_c| ≥ 3B" in msg and "jitter" in msg
    band, rel = SimConfig().band_estimate, SimConfig().carrier_jitter[0]  # the band does not depend on the carrier
    assert _limit(msg) == pytest.approx(1 / (3 * band * (1 + rel)), abs=0.01)
    SimConfig(carrier_period=_limit(msg) - 0.01)  # just inside the named limit is accepted


def test_carrier_past_nyquist_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        SimConfig(carrier_period=2.0)
    msg = str(err.value)
    assert "past Nyquist" in msg and "f_c + B ≤ 0.5" in msg
    band, rel = SimConfig().band_estimate, SimConfig().carrier_jitter[0]
    assert _limit(msg) == pytest.approx(1 / ((0.5 - band) * (1 - rel)), abs=0.01)
    SimConfig(carrier_period=_limit(msg) + 0.01)


def test_jitter_counts_in_the_validator() -> None:
    SimConfig(size=128)  # the demo: 128 px, 3.5 px at 45°, default jitter and aberrations
    with pytest.raises(ValidationError, match="too close to DC"):
        SimConfig(size=128, carrier_jitter=(0.1, 3.0))


def test_band_grows_with_aberration_and_small_fields() -> None:
    base = SimConfig().band_estimate
    assert SimConfig(defocus=10.0, carrier_period=3.0, carrier_jitter=(0.0, 0.0)).band_estimate > base
    assert SimConfig(size=128).band_estimate > base
    assert SimConfig(**NO_ABERRATION).band_estimate == pytest.approx(0.06)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        SimConfig(carrier_perod=4.0)


@pytest.mark.parametrize("size", [128, 256])
def test_cross_domain_validates_and_differs(size: int) -> None:
    cfg = SimConfig(size=size)
    cross = cross_domain(cfg)
    assert SimConfig.model_validate(cross.model_dump()) == cross
    for same in ("size", "phase_range", "carrier_period", "carrier_angle", "bandwidth"):
        assert getattr(cross, same) == getattr(cfg, same)
    for other in ("shapes", "visibility", "envelope", "full_well", "bit_depth", "defocus", "spherical"):
        assert getattr(cross, other) != getattr(cfg, other), other
    assert cross.carrier_jitter[0] > cfg.carrier_jitter[0] and cross.carrier_jitter[1] > cfg.carrier_jitter[1]
    assert max(cross.shapes, key=cross.shapes.get) == "round"
    s = simulate(cross, np.random.default_rng(0))
    assert s.hologram.shape == (size, size)
    assert cross_domain(cfg, bit_depth=16, n_cells=(1, 2)).bit_depth == (16,)  # overrides on top
    with pytest.raises(ValidationError, match="extra"):
        cross_domain(cfg, bit_dpth=16)


@pytest.mark.parametrize("domain", ["train", "cross", "stray"])
def test_classical_pipeline_recovers_the_phase(domain: str) -> None:
    """Clean 256² fields of both domains (stray fringes, dust and debris kept): the Fourier method with
    the background and the field's own carrier gets the phase within 0.1 rad RMSE."""
    cfg = SimConfig(size=256, full_well=0, bit_depth=None)
    if domain == "cross":
        cfg = cross_domain(cfg).model_copy(update={"full_well": (0.0, 0.0), "bit_depth": (None,)})
    if domain == "stray":  # every field with the strongest stray light of both domains
        cfg = cfg.model_copy(update={"parasitic_prob": 1.0, "parasitic_strength": (0.12, 0.12), "dust_prob": 1.0,
                                     "dust_strength": (0.1, 0.1), "debris_prob": 1.0})
    for seed in range(3):
        s = simulate(cfg, np.random.default_rng(seed))
        phase = retrieve_phase(s.hologram, s.background, sideband=s.carrier)
        assert rmse(phase, s.phase) < 0.1, (domain, seed)
        assert s.phase.max() > 0.5
