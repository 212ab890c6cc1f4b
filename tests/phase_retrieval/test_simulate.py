"""The hologram simulator: forward model, invariants, determinism and the carrier validator."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.phase_retrieval.simulate import SimConfig, sample_phase, simulate


def small(**overrides) -> SimConfig:
    """128 px fields with cells that leave background in view."""
    return SimConfig(**{"size": 128, "n_cells": (1, 3), "semi_axis": (10.0, 24.0), **overrides})


def test_outputs_shapes_types_ranges() -> None:
    cfg = small()
    s = simulate(cfg, np.random.default_rng(0))
    for arr in (s.hologram, s.phase, s.background, s.aberration):
        assert arr.shape == (128, 128) and arr.dtype == np.float32
    assert 0.0 <= s.hologram.min() and s.hologram.max() <= 1.0
    assert 0.0 <= s.background.min() and s.background.max() <= 1.0
    assert s.carrier == pytest.approx(cfg.carrier)


@pytest.mark.parametrize("seed", range(6))
def test_phase_within_range_and_band(seed: int) -> None:
    cfg = small(phase_range=3.0, thickness=(6.0, 12.0))  # cells taller than the range get flattened
    phase = sample_phase(cfg, np.random.default_rng(seed))
    assert phase.min() == 0.0  # background is exactly 0 (cells are cut at 3σ of their blur)
    assert phase.max() <= 3.0 + 1e-9
    gy, gx = np.gradient(phase)
    assert np.hypot(gx, gy).max() <= 2 * math.pi * cfg.bandwidth * 0.8 + 1e-9


def test_deterministic_by_seed() -> None:
    cfg = small()
    a = simulate(cfg, np.random.default_rng(7))
    b = simulate(cfg, np.random.default_rng(7))
    c = simulate(cfg, np.random.default_rng(8))
    for name in ("hologram", "phase", "background", "aberration"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.phase, c.phase)


def test_forward_model_and_sign() -> None:
    """Noise-free, flat illumination: I ∝ |R|² + |O|² + 2|R||O| cos(2π f·r + φ + φ_ab)."""
    cfg = small(full_well=0, bit_depth=None, debris_prob=0, envelope_width=1e6)
    s = simulate(cfg, np.random.default_rng(1))
    fx, fy = cfg.carrier
    y, x = np.mgrid[0:128, 0:128]
    r, o = cfg.ref_amplitude, cfg.obj_amplitude
    gain = 0.9 / (r + o) ** 2
    carrier = 2 * np.pi * (fx * x + fy * y)
    expected = gain * (r * r + o * o + 2 * r * o * np.cos(carrier + s.phase + s.aberration))
    np.testing.assert_allclose(s.hologram, expected, atol=1e-5)
    expected_bg = gain * (r * r + o * o + 2 * r * o * np.cos(carrier + s.aberration))
    np.testing.assert_allclose(s.background, expected_bg, atol=1e-5)


def test_noise_quantisation() -> None:
    s = simulate(small(bit_depth=8), np.random.default_rng(2))
    levels = s.hologram * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)


def _limit(message: str) -> float:
    return float(re.search(r"must be [≤>] ([0-9.]+) px", message).group(1))


def test_carrier_too_close_to_dc_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        SimConfig(carrier_period=20.0)
    msg = str(err.value)
    assert "too close to DC" in msg and "|f_c| ≥ 3B" in msg
    band = SimConfig().band_estimate  # the band does not depend on the carrier
    assert _limit(msg) == pytest.approx(1 / (3 * band), abs=0.01)
    SimConfig(carrier_period=_limit(msg) - 0.01)  # just inside the named limit is accepted


def test_carrier_past_nyquist_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        SimConfig(carrier_period=2.0)
    msg = str(err.value)
    assert "past Nyquist" in msg and "f_c + B ≤ 0.5" in msg
    band = SimConfig().band_estimate
    assert _limit(msg) == pytest.approx(1 / (0.5 - band), abs=0.01)
    SimConfig(carrier_period=_limit(msg) + 0.01)


def test_band_grows_with_aberration_and_small_fields() -> None:
    base = SimConfig().band_estimate
    assert SimConfig(defocus=10.0, carrier_period=3.0).band_estimate > base
    assert SimConfig(size=128).band_estimate > base
    assert SimConfig(tilt=0, defocus=0, astigmatism=0, coma=0).band_estimate == pytest.approx(0.05)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        SimConfig(carrier_perod=4.0)
