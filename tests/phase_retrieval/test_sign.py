"""The sideband sign: "auto" reads +φ on the standard and the mirrored convention and on a 180° turn;
ground truth records the order used and what the clip at 0 took.

The holograms are written here from the simulator's cells and aberration with a clean forward model,
so these tests do not move with the simulator's camera, illumination or carrier jitter.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage
from sparseconn_tasks.phase_retrieval.classical import (
    FourierPhaseRetrieval,
    check_sideband,
    find_sideband,
    retrieve_phase,
    retrieve_phase_info,
)
from sparseconn_tasks.phase_retrieval.prepare import ClippedPhaseWarning, ground_truth_info, make_ground_truth
from sparseconn_tasks.phase_retrieval.simulate import Sample, SimConfig, simulate

CONVENTIONS = ("standard", "mirrored", "rot180")


def small() -> SimConfig:
    return SimConfig(size=128, n_cells=(1, 3), semi_axis=(10.0, 24.0))


def with_medium(cfg: SimConfig, n: int) -> list[Sample]:
    """The first ``n`` simulated fields with cells (peak > 1 rad) and medium around them (cells cover
    2–50% of the field): "auto" needs both (see ``retrieve_phase_info``)."""
    out: list[Sample] = []
    for seed in range(200):
        s = simulate(cfg, np.random.default_rng(seed))
        if s.phase.max() > 1.0 and 0.02 < float(np.mean(s.phase > 0.1)) < 0.5:
            out.append(s)
            if len(out) == n:
                return out
    raise AssertionError(f"fewer than {n} fields with cells and medium in 200 seeds")


def nominal_carrier(cfg: SimConfig) -> tuple[float, float]:
    """``(fx, fy)`` cycles/px of the configured period and angle (45°: half plane fx > 0)."""
    theta = math.radians(cfg.carrier_angle)
    return math.cos(theta) / cfg.carrier_period, math.sin(theta) / cfg.carrier_period


def hologram(phi: np.ndarray, carrier: tuple[float, float], noise: float = 0.0) -> np.ndarray:
    """``0.5 + 0.4·cos(2π f·r + phi)`` (H, W) float32, plus Gaussian noise of σ ``noise``."""
    h, w = phi.shape
    yy, xx = np.mgrid[:h, :w]
    out = 0.5 + 0.4 * np.cos(2 * np.pi * (carrier[0] * xx + carrier[1] * yy) + phi)
    if noise:
        out = out + np.random.default_rng(0).normal(0.0, noise, out.shape)
    return out.astype(np.float32)


def field(s: Sample, carrier: tuple[float, float], convention: str, noise: float = 0.0) -> Sample:
    """``s``'s cells φ and aberration φ_ab in ``convention``, carrier ``f`` in the half plane fx > 0.

    - ``standard``: ``I = 0.5 + 0.4·cos(2π f·r + φ + φ_ab)``, the background without φ.
    - ``mirrored``: ``I = 0.5 + 0.4·cos(2π f·r − (φ + φ_ab))``.
    - ``rot180``: the standard hologram, background, phase and aberration turned by 180°.
    """
    sign = -1.0 if convention == "mirrored" else 1.0
    out = replace(s, hologram=hologram(sign * (s.phase + s.aberration), carrier, noise),
                  background=hologram(sign * s.aberration, carrier, noise), carrier=carrier)
    if convention == "rot180":
        maps = ("hologram", "phase", "background", "aberration")
        out = replace(out, **{k: np.ascontiguousarray(np.rot90(getattr(out, k), 2)) for k in maps})
    return out


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_auto_reads_plus_phi_with_background(convention: str) -> None:
    cfg = small()
    f = nominal_carrier(cfg)
    for k, base in enumerate(with_medium(cfg, 3)):
        s = field(base, f, convention)
        got = retrieve_phase_info(s.hologram, s.background)
        assert rmse(got.phase, s.phase) < 0.05, k
        # The order used: +f for the standard convention, −f for the mirrored one and the 180° turn.
        expect = 1.0 if convention == "standard" else -1.0
        assert float(np.dot(got.sideband, f)) == pytest.approx(expect * float(np.dot(f, f)), rel=0.05)
        model = FourierPhaseRetrieval(s.background)  # the baseline's default is "auto" too
        assert rmse(model(s.hologram), s.phase) < 0.05
        if convention != "standard":  # what "+" (the old behaviour) did: −φ
            assert rmse(-retrieve_phase(s.hologram, s.background, sideband="+"), s.phase) < 0.05


@pytest.mark.parametrize("convention", ["mirrored", "rot180"])
def test_auto_without_background_matches_the_standard_convention(convention: str) -> None:
    """Without a background the polynomial fit leaves an error of its own under large cells, whatever
    the sign (see test_classical); the sign handling adds nothing to it: auto on the mirrored or turned
    field gives the standard field's "+" result, and that result is +φ, not −φ."""
    cfg = small()
    f = nominal_carrier(cfg)
    for k, base in enumerate(with_medium(cfg, 3)):
        ref = field(base, f, "standard", noise=0.02)
        s = field(base, f, convention, noise=0.02)
        plus = retrieve_phase(ref.hologram, sideband="+")
        if convention == "rot180":
            plus = np.rot90(plus, 2)
        got = retrieve_phase(s.hologram)
        assert rmse(got, plus) < 0.03, k
        assert 2 * rmse(got, s.phase) < rmse(-got, s.phase), k


def test_baseline_model_chooses_per_hologram() -> None:
    cfg = small()
    f = nominal_carrier(cfg)
    a, b = with_medium(cfg, 2)
    samples = [field(a, f, "standard"), field(b, f, "mirrored")]
    batch = torch.from_numpy(np.stack([s.hologram for s in samples]))[:, None]  # (2, 1, H, W)
    backgrounds = [s.background for s in samples]
    out = FourierPhaseRetrieval(phase_range=cfg.phase_range)(batch)
    for k, s in enumerate(samples):
        got = out[k, 0].numpy() * cfg.phase_range
        # Positive cells, not clipped-away ones: the (clipped) output follows the phase, not −φ.
        assert float(np.sum(got * s.phase)) > 0.5 * float(np.sum(s.phase**2)), k
        single = FourierPhaseRetrieval(backgrounds[k])(s.hologram)
        assert rmse(single, s.phase) < 0.05, k


def test_explicit_and_minus_sidebands() -> None:
    cfg = small()
    s = field(with_medium(cfg, 1)[0], nominal_carrier(cfg), "standard")
    f = find_sideband(s.hologram)
    plus = retrieve_phase_info(s.hologram, s.background, sideband="+")
    minus = retrieve_phase_info(s.hologram, s.background, sideband="-")
    assert plus.sideband == f and minus.sideband == (-f[0], -f[1])
    # The conjugate field: −φ, up to the background level (fitted as a lower envelope of each sign).
    assert float(np.std(minus.phase + plus.phase)) < 1e-3
    given = retrieve_phase_info(s.hologram, s.background, sideband=(-f[0], -f[1]))
    assert given.sideband == (-f[0], -f[1]) and rmse(given.phase, minus.phase) < 1e-5


@pytest.mark.parametrize("bad", ["up", "", None, (0.0, 0.0), (0.7, 0.1), (0.1,), ("0.1", 0.1), (True, 0.1),
                                 (float("nan"), 0.1)])
def test_bad_sideband_is_one_line_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^sideband must be 'auto', '\+', '-' or \(fx, fy\) in cycles/px") as info:
        check_sideband(bad)
    assert repr(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="sideband must be"):
        FourierPhaseRetrieval(sideband=bad)  # type: ignore[arg-type]
    assert check_sideband([0.25, -0.1]) == (0.25, -0.1)


def _raw(root: Path, samples: dict[str, Sample]) -> Path:
    """A raw folder (interferograms/, backgrounds/) of float32 TIFFs."""
    for sub in ("interferograms", "backgrounds"):
        (root / sub).mkdir(parents=True)
    for name, s in samples.items():
        tifffile.imwrite(root / "interferograms" / f"{name}.tif", s.hologram)
        tifffile.imwrite(root / "backgrounds" / f"{name}.tif", s.background)
    return root


def test_make_ground_truth_records_sidebands_and_reads_plus_phi(tmp_path: Path, recwarn) -> None:
    cfg = small()
    f = nominal_carrier(cfg)
    base = with_medium(cfg, 1)[0]
    samples = {c: field(base, f, c) for c in CONVENTIONS}
    out = make_ground_truth(_raw(tmp_path / "raw", samples), tmp_path / "gt")
    assert not [w for w in recwarn if issubclass(w.category, ClippedPhaseWarning)]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sideband"] == "auto" and set(meta["frames"]) == set(CONVENTIONS)
    peak = 0.0
    for name, s in samples.items():
        phase = tifffile.imread(out / "phases" / f"{name}.tif")
        assert rmse(phase, s.phase) < 0.05, name
        frame = meta["frames"][name]
        sign = 1.0 if name == "standard" else -1.0
        assert np.dot(frame["sideband"], f) * sign > 0, name
        assert 0.0 <= frame["clipped_fraction"] < 0.01, name  # only background noise at the floor
        peak = max(peak, float(phase.max()))
    assert peak <= meta["phase_range"] == max(1.0, float(np.ceil(peak)))


def test_wrong_sign_warns_and_records_the_clip(tmp_path: Path) -> None:
    cfg = small()
    f = nominal_carrier(cfg)
    s = field(with_medium(cfg, 1)[0], f, "mirrored")
    with pytest.warns(ClippedPhaseWarning, match=r"mirrored\.tif: .*% of the pixels lay below the background"):
        out = make_ground_truth(_raw(tmp_path / "raw", {"mirrored": s}), tmp_path / "gt", sideband="+")
    meta = json.loads((out / "meta.json").read_text())
    frame = meta["frames"]["mirrored"]
    assert meta["sideband"] == "+" and np.dot(frame["sideband"], f) > 0
    # The cells came out negative and were clipped away: most of their area, rad deep.
    cells = float(np.mean(s.phase > 0.1))
    assert frame["clipped_fraction"] > 0.5 * cells > 0.01 and frame["clipped_depth"] > 0.5
    assert float(tifffile.imread(out / "phases" / "mirrored.tif").max()) < 0.2 * float(s.phase.max())


def test_negative_region_warns_with_the_right_sign(tmp_path: Path) -> None:
    """A true phase with a region well below the medium (a dip, e.g. a bubble): auto still reads the
    cells positive, the dip is clipped, and the frame warns."""
    cfg = small()
    f = nominal_carrier(cfg)
    base = with_medium(cfg, 1)[0]
    yy, xx = np.mgrid[:128, :128]
    # A 1-rad dip, 8 px σ, placed where the field is medium (the farthest pixel from any cell).
    far = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(base.phase < 0.05))), base.phase.shape)
    dip = -1.0 * np.exp(-((xx - far[1]) ** 2 + (yy - far[0]) ** 2) / (2 * 8.0**2))  # (H, W) rad
    s = field(replace(base, phase=(base.phase + dip).astype(np.float32)), f, "standard")
    truth = ground_truth_info(s.hologram, s.background)
    # Not an exact match: the dip's shallow tails sit in the background mask and lower the floor.
    assert np.corrcoef(truth.phase.ravel(), np.clip(s.phase, 0, None).ravel())[0, 1] > 0.95
    with pytest.warns(ClippedPhaseWarning, match=r"dip\.tif: .*clipped to 0"):
        out = make_ground_truth(_raw(tmp_path / "raw", {"dip": s}), tmp_path / "gt")
    frame = json.loads((out / "meta.json").read_text())["frames"]["dip"]
    assert np.dot(frame["sideband"], f) > 0  # the sign is still the cells' one
    assert frame["clipped_fraction"] == pytest.approx(truth.clipped_fraction, abs=1e-6)
    assert frame["clipped_fraction"] > 0.01 and frame["clipped_depth"] > 0.5


def test_auto_reads_plus_phi_under_all_eight_flips_and_turns() -> None:
    """"+" reads +φ on only the four transforms that keep the carrier in its half plane (test_data);
    "auto" on all eight, with the same error."""
    cfg = small()
    s = field(with_medium(cfg, 1)[0], nominal_carrier(cfg), "standard", noise=0.02)
    errors = []
    for k in range(4):
        for flip in (False, True):
            holo, bg, truth = (np.rot90(a, k)[:, ::-1] if flip else np.rot90(a, k)
                               for a in (s.hologram, s.background, s.phase))
            errors.append(rmse(retrieve_phase(np.ascontiguousarray(holo), np.ascontiguousarray(bg)), truth))
    assert max(errors) < 0.05 and max(errors) - min(errors) < 0.01, errors
