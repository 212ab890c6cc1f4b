"""The sideband op's finish (``congruent``): the network unwraps, the measured wrapped phase gives the detail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate

from sparseconn.errors import ConfigError
from sparseconn.inputs import build_input_op, finished_output

TASKS = Path(__file__).parents[2] / "tasks"
RANGE = 12.0


def _sample(seed: int = 4, size: int = 128):
    """A noise-free simulated field with a tall cell and aberrations, its hologram (1, 1, H, W)."""
    cfg = SimConfig(size=size, full_well=0.0, bit_depth=None, debris_prob=0.0, peak_phase=(6.0, 8.0))
    s = simulate(cfg, np.random.default_rng(seed))
    return s, torch.from_numpy(s.hologram)[None, None]


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


def _op(**params):
    """The sideband op with the congruent finish, its scale set as training sets it."""
    op = build_input_op("sideband", 1, {"detrend": 3, "congruent": True, **params})
    op.set_target_scale(RANGE)
    return op


def _finish(op, pred: np.ndarray, z: torch.Tensor) -> np.ndarray:
    y = torch.from_numpy((pred / RANGE).astype(np.float32))[None, None]
    return op.finish(y, z)[0, 0].double().numpy() * RANGE


def test_a_blurred_prediction_gets_the_measured_detail_back():
    """A prediction that lost the cells' texture and edges (the error a small network makes) comes back to
    within the measurement's error: the finish takes the detail from the measured phase."""
    s, x = _sample(size=256)
    op = _op()
    z = op(x)
    truth = s.phase
    pred = np.clip(gaussian_filter(truth, 4.0), 0, RANGE)
    out = _finish(op, pred, z)
    inner = (slice(8, -8), slice(8, -8))  # the demodulation's own border error aside
    before, after = _rms((pred - truth)[inner]), _rms((out - truth)[inner])
    assert before > 0.05
    assert after < 0.03 and after < before / 2.5, (before, after)
    assert out.min() >= 0.0 and out.max() <= RANGE + 1e-4


def test_the_smooth_part_of_the_correction_is_left_to_the_network():
    """With ``field_scale: null`` the finish replaces a cell's plateau error too; by default it leaves the
    part of the correction smoother than σ = side / 8 (where the polynomial fit's own error is) to the
    network: a prediction 0.4 rad high on every cell keeps most of that error, a blurred one does not."""
    s, x = _sample(size=256)
    truth = s.phase
    pred = np.clip(gaussian_filter(truth, 4.0) + 0.4 * (truth > 0.5), 0, RANGE)
    inner = (slice(8, -8), slice(8, -8))
    whole = _op(field_scale=None)
    fine = _op()
    err_whole = _rms((_finish(whole, pred, whole(x)) - truth)[inner])
    err_fine = _rms((_finish(fine, pred, fine(x)) - truth)[inner])
    assert err_whole < 0.06 < 0.1 < err_fine < 0.2, (err_whole, err_fine)


def test_a_prediction_more_than_the_tolerance_off_is_not_corrected():
    """Where the network is off by more than ``tolerance + 0.5`` the measurement cannot say by how many
    wraps: the pixel is not corrected (3 rad off stays about 3 rad off, not 2π - 3 the other way)."""
    s, x = _sample(size=256)
    op = _op(tolerance=2.0)
    z = op(x)
    truth = s.phase
    region = truth > 0.6 * truth.max()
    assert region.sum() > 200
    pred = truth + 3.0 * region  # 3 rad off: more than 2.5, less than π
    out = _finish(op, pred, z)
    off = out[region] - truth[region]
    assert off.min() > 2.3 and off.max() < 3.7, (off.min(), off.max())
    rest = ~region & (gaussian_filter(region.astype(float), 4.0) == 0)  # away from the step
    assert _rms((out - truth)[rest]) < 0.1


def test_without_congruent_or_a_scale_the_op_finishes_nothing_and_bad_settings_are_refused():
    y, z = torch.rand(1, 1, 16, 16), torch.rand(1, 4, 16, 16)
    assert build_input_op("sideband", 1, {"detrend": 3}).finish(y, z) is y
    unset = build_input_op("sideband", 1, {"detrend": 3, "congruent": True})  # not trained: no scale yet
    assert float(unset.target_scale) == 0 and torch.equal(unset.finish(y, z), y)
    for bad in (0, 12.0, "true", None):
        with pytest.raises(ConfigError, match=rf"congruent is {bad!r}; expected true"):
            build_input_op("sideband", 1, {"congruent": bad})
    for bad in (0.4, 3.0, "2"):
        with pytest.raises(ConfigError, match=rf"tolerance is {bad!r}; expected the largest correction in rad, "
                                              r"from 0.5 to π - 0.5 = 2.642"):
            build_input_op("sideband", 1, {"congruent": True, "tolerance": bad})
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match=rf"field_scale is {bad!r}; expected the smoothing σ as a fraction"):
            build_input_op("sideband", 1, {"congruent": True, "field_scale": bad})
    for bad in (-0.1, 1.0, True):
        with pytest.raises(ConfigError, match=rf"dead_zone is {bad!r}; expected the smallest correction made in "
                                              r"the background, in rad, from 0 \(none\) to under 1"):
            build_input_op("sideband", 1, {"congruent": True, "dead_zone": bad})


def test_the_background_keeps_the_network_against_the_measurement_s_noise_but_not_a_missed_cell():
    """Where the network sees background (phase 0), differences under ``dead_zone`` are the measurement's
    noise and are not taken; a cell the network missed (a difference of a radian) is."""
    cfg = SimConfig(size=256, full_well=2000.0, debris_prob=0.0, peak_phase=(1.0, 1.0), n_cells=(1, 1))
    s = simulate(cfg, np.random.default_rng(7))
    x = torch.from_numpy(s.hologram)[None, None]
    truth = s.phase
    cell = truth > 0.5
    # The network right about the background, blind to the cell (its whole body 0 rad).
    pred = np.where(truth > 0.05, 0.0, truth)
    inner = (slice(8, -8), slice(8, -8))
    background = (truth == 0)[inner]
    outs = {}
    for dz in (0.0, 0.15):
        op = _op(dead_zone=dz)
        outs[dz] = _finish(op, pred, op(x))[inner]
    err = {dz: _rms(o[background]) for dz, o in outs.items()}
    assert err[0.0] > 0.005 and err[0.15] < err[0.0] / 2, err  # the background stays the network's
    missed, want = cell[inner], truth[inner][cell[inner]]
    before = _rms(pred[inner][missed] - want)
    after = {dz: _rms(o[missed] - want) for dz, o in outs.items()}
    # The missed cell is taken from the measurement as without the dead zone (what is left of the error is
    # the cell's smooth part, which field_scale leaves to the network).
    assert abs(after[0.15] - after[0.0]) < 0.01 and after[0.15] < before / 2, (before, after)


def test_the_network_finishes_in_eval_mode_only_and_trains_on_its_own_output():
    """Training mode returns the head's output (its gradient intact); eval mode the congruent one, also for
    an input whose size is not a multiple of the stride (the op's output is cropped like the head's)."""
    from sparseconn.engine.config import load_run_config
    from sparseconn.network import build_supernet
    from sparseconn.space import SearchSpace

    cfg = load_run_config(TASKS / "phase_retrieval_tiny.yaml")
    assert cfg.space.input.params["congruent"] is True
    torch.manual_seed(0)
    net = build_supernet(SearchSpace(cfg.space))
    _, x = _sample()
    x = x[..., :100, :100].contiguous()
    op = net.input_op
    op.set_target_scale(RANGE)
    net.train()
    y = net(x)
    y.mean().backward()
    assert y.shape == (1, 1, 100, 100) and net.head.conv.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        finished = net(x)
        op.congruent = False
        raw = net(x)
        op.congruent = True
        z = op(x)
    assert finished.shape == raw.shape == (1, 1, 100, 100)
    assert not torch.allclose(finished, raw)
    padded = torch.nn.functional.pad(z, (0, 28, 0, 28))
    again = finished_output(op, torch.nn.functional.pad(raw, (0, 28, 0, 28)), padded, (100, 100), training=False)
    assert torch.allclose(again, finished, atol=1e-6)


def test_training_sets_the_scale_from_the_task_and_checkpoints_keep_it(tmp_path):
    """The phase range comes from the data (a folder's meta.json): training hands the task's to the op,
    and the run's checkpoint, loaded for inference, finishes with it."""
    from typer.testing import CliRunner

    from sparseconn.api import load_model
    from sparseconn.cli import app

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["search", str(TASKS / "phase_retrieval_tiny.yaml"), "--out", str(out), "--quiet",
                                  "--fast-dev-run", "--device", "cpu", "--set", "task.phase_range=7.5"])
    assert r.exit_code == 0, r.output
    assert float(load_model(out).net.input_op.target_scale) == 7.5


def test_the_finish_runs_in_float32_under_bf16_autocast():
    s, x = _sample()
    op = _op()
    z = op(x)
    y = torch.from_numpy((np.clip(gaussian_filter(s.phase, 3.0), 0, RANGE) / RANGE).astype(np.float32))[None, None]
    want = op.finish(y, z)
    assert not torch.allclose(want, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = op.finish(y.bfloat16(), z)
    assert got.dtype == torch.bfloat16
    # Only the final cast to bf16 rounds (its relative step is 2^-8 of the value).
    assert float((got.float() - want).abs().max()) * RANGE < RANGE * 2**-8


@pytest.mark.parametrize("engine", ["eager", "compiled"])
def test_the_fast_path_keeps_the_finish_within_the_fp32_tolerance(engine):
    """The fast path (BN folded, channels-last; compiled) finishes as eager fp32 does: on a real hologram, with
    the scale set, where the finish changes the output."""
    from sparseconn.engine.config import load_run_config
    from sparseconn.engine.fastpath import FP32_TOL, optimize
    from sparseconn.network import build_supernet
    from sparseconn.space import SearchSpace

    torch.manual_seed(0)
    net = build_supernet(SearchSpace(load_run_config(TASKS / "phase_retrieval_tiny.yaml").space))
    with torch.no_grad():
        net.head.conv.bias.fill_(3.0)  # into ReLU6's linear range: outputs of a few rad, not 0
    net.input_op.set_target_scale(RANGE)
    net.eval()
    _, x = _sample()
    with torch.no_grad():
        want = net(x)
        net.input_op.congruent = False
        raw = net(x)
        net.input_op.congruent = True
    assert float((want - raw).abs().max()) * RANGE > 0.1  # the finish is at work
    fast = optimize(net, engine=engine, example=x, bf16=False)
    assert fast.engine == engine and fast.fallback is None
    assert float((fast(x) - want).abs().max()) <= FP32_TOL
