"""``infer`` and ``export`` with the phase task: multi-page TIFF stacks in and out (streamed page by page),
single-page outputs unchanged, and the ``sideband`` network exported to ONNX with free sizes, checked
within 1e-4 of eager fp32 at two sizes (its DFTs run in float64 in the exported graph)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from sparseconn_tasks.phase_retrieval import imageio_, inputs
from sparseconn_tasks.phase_retrieval.inputs import _far_from_dc, _hann
from sparseconn_tasks.phase_retrieval.task import PhaseRetrievalTask
from typer.testing import CliRunner

import sparseconn.engine.export as export_module
from sparseconn.cli import app
from sparseconn.engine.checkpoint import load_checkpoint, save_checkpoint
from sparseconn.engine.config import load_run_config
from sparseconn.engine.infer import MB
from sparseconn.engine.inference import predict
from sparseconn.engine.loading import load_model, make_task
from sparseconn.inputs import build_input_op
from sparseconn.network import build_supernet
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace

RUNNER = CliRunner()
TINY = """
seed: 0
task:
  name: phase_retrieval
  data:
    train_size: 4
    val_size: 2
    test_size: 2
    cross_domain_size: 0
    sim: {size: 64, n_cells: [1, 2], semi_axis: [8.0, 14.0], carrier_period: 3.0, tilt: 0.5, defocus: 0.5,
          astigmatism: 0.3, coma: 0.2}
space:
  in_channels: 1
  input: {name: sideband, params: {detrend: 3, congruent: true}}
  encoder: {name: tiny, params: {channels: [8, 8], strides: [2, 4]}}
  ground: [{name: G, source: -1, size: 3}]
  decoder: {depth: {rule: constant, value: 8}}
  head: {name: regression, params: {out_channels: 1}}
train: {epochs: 1, batch_size: 2}
prune: {threshold: 0.3}
evaluate: {latency_size: [64, 64], latency_runs: 1}
"""


def cli(*args: object):
    return RUNNER.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny sideband child trained for two batches, its head biased into ReLU6's linear range (a fresh
    net's output is otherwise clipped to 0 and every comparison is trivially exact)."""
    base = tmp_path_factory.mktemp("phase_deploy")
    config = base / "tiny.yaml"
    config.write_text(TINY)
    cfg = load_run_config(config)
    space = SearchSpace(cfg.space)
    arch = derive(space.graph, cfg.space, build_supernet(space).connections.snapshot(), threshold=0.3)
    arch.save(base / "architecture.json")
    result = cli("train", config, "--arch", base / "architecture.json", "--out", base / "T", "--fast-dev-run",
                 "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    ckpt_path = base / "T" / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(ckpt_path)
    bias = next(k for k in ckpt["model"] if k.endswith("head.conv.bias"))
    ckpt["model"][bias] = torch.full_like(ckpt["model"][bias], 3.0)
    save_checkpoint(ckpt_path, {k: v for k, v in ckpt.items() if k not in ("format", "version", "model_digest")})
    return base / "T"


def holograms(run: Path, n: int, size: tuple[int, int] = (70, 90)) -> np.ndarray:
    """``n`` simulated 16-bit holograms (n, H, W) at an odd size (not a multiple of the stride)."""
    lm = load_model(run)
    task = make_task(lm.cfg)
    frames = [task.example_input(size, seed=i)[0] for i in range(n)]
    return np.stack([np.round(np.clip(f, 0, 1) * 65535) for f in frames]).astype(np.uint16)


def phase_of(run: Path, frame: np.ndarray) -> np.ndarray:
    """The phase (rad) that ``predict`` gives for one 16-bit frame (H, W)."""
    lm = load_model(run)
    x = torch.from_numpy(frame.astype(np.float32) / 65535.0)[None, None]
    return predict(lm.net, x)[0, 0].numpy() * make_task(lm.cfg).phase_range


def test_infer_calibrates_the_sideband_on_the_first_frames(run, tmp_path):
    """``infer`` fits the sideband op to the first frames (one microscope a call): turned by 180°, the same
    holograms' +φ order is found at -f; ``--no-calibrate`` keeps the model's own."""
    stack = holograms(run, 3)
    orders = []
    for name, frames in (("upright", stack), ("turned", stack[:, ::-1, ::-1])):
        folder = tmp_path / name
        folder.mkdir()
        for i, frame in enumerate(frames):
            tifffile.imwrite(folder / f"{i}.tif", np.ascontiguousarray(frame))
        result = cli("infer", run, folder, "--out", tmp_path / f"out-{name}", "--device", "cpu",
                     "--engine", "reference")
        assert result.exit_code == 0, result.output
        line = next(x for x in result.output.splitlines() if x.startswith("input op calibrated"))
        assert line.endswith("cycles/px (3 of 3 frames agree)"), line
        orders.append(np.array([float(v) for v in line.split("(")[1].split(")")[0].split(",")]))
    np.testing.assert_allclose(orders[1], -orders[0], atol=2 / 70)
    result = cli("infer", run, tmp_path / "turned", "--out", tmp_path / "kept", "--device", "cpu", "--no-calibrate")
    assert result.exit_code == 0 and "calibrated" not in result.output, result.output


def test_infer_on_a_tiff_stack_writes_a_stack_page_by_page(run, tmp_path, monkeypatch):
    stack = holograms(run, 3)
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "stack.tif", stack, photometric="minisblack")  # three pages
    tifffile.imwrite(folder / "single.tif", stack[1])
    with tifffile.TiffFile(folder / "stack.tif") as tif:
        assert len(tif.pages) == 3
    pages_written, reads = [], []
    write, frames = tifffile.TiffWriter.write, PhaseRetrievalTask.iter_frames

    def counted_write(self, data, *args, **kwargs):
        pages_written.append(data.shape)
        return write(self, data, *args, **kwargs)

    def counted_frames(self, path):
        for frame in frames(self, path):
            reads.append(len(reads) + 1 - len(pages_written))  # frames alive once this one is read
            yield frame

    monkeypatch.setattr(tifffile.TiffWriter, "write", counted_write)
    monkeypatch.setattr(PhaseRetrievalTask, "iter_frames", counted_frames)
    # (--no-calibrate: the calibration's pass reads a first frame that is never written, which this count
    # would take for a frame alive; test_infer_calibrates_the_sideband_on_the_first_frames covers it)
    result = cli("infer", run, folder, "--out", tmp_path / "out", "--device", "cpu", "--engine", "reference",
                 "--batch-size", "8", "--max-memory", str(1.5 * 70 * 90 * 4 / MB), "--no-calibrate")
    assert result.exit_code == 0, result.output
    assert max(reads) == 1 and len(pages_written) == 4  # one frame alive at a time; each page written at once
    with tifffile.TiffFile(tmp_path / "out" / "stack.tif") as tif:
        assert len(tif.pages) == 3
        got = [tif.pages[i].asarray() for i in range(3)]
    for page, frame in zip(got, stack, strict=True):
        assert page.dtype == np.float32 and page.shape == (70, 90)
        np.testing.assert_allclose(page, phase_of(run, frame), rtol=1e-5, atol=1e-5)
    single = tifffile.imread(tmp_path / "out" / "single.tif")
    assert single.shape == (70, 90)
    np.testing.assert_allclose(single, phase_of(run, stack[1]), rtol=1e-5, atol=1e-5)


def test_a_single_frame_is_written_exactly_as_write_output_writes_it(tmp_path):
    task = PhaseRetrievalTask(PhaseRetrievalTask.Config.model_validate({"phase_range": 10.0}))
    pred = np.random.default_rng(0).random((1, 33, 47), dtype=np.float32)
    a = task.write_output(pred, tmp_path / "a" / "x.png")
    b = task.write_frames(iter([pred]), tmp_path / "b" / "x.png")
    assert a.name == b.name == "x.tif" and a.read_bytes() == b.read_bytes()


def test_stack_pages_are_checked_like_images(tmp_path):
    bad = np.zeros((2, 16, 16), np.float32)
    bad[1, 3, 4] = np.nan
    tifffile.imwrite(tmp_path / "s.tif", bad, photometric="minisblack")
    assert imageio_.count_frames(tmp_path / "s.tif") == 2
    frames = imageio_.iter_frames(tmp_path / "s.tif")
    assert next(frames).shape == (16, 16)
    with pytest.raises(imageio_.DataError, match=r"s\.tif \(page 2\): 1 NaN"):
        next(frames)
    (tmp_path / "broken.tif").write_bytes(b"II*\0garbage")
    with pytest.raises(imageio_.DataError, match="broken.tif: cannot read"):
        imageio_.count_frames(tmp_path / "broken.tif")


@pytest.mark.parametrize(("frame", "reason"), [
    (np.full((64, 64), 0.5, np.float32), "is constant (0.5 everywhere): no fringes to demodulate"),
    (np.zeros((64, 64), np.uint16), "is constant (0 everywhere): no fringes to demodulate"),
    (np.random.default_rng(0).random((3, 5), dtype=np.float32), "is 3x5 px (H x W); expected a hologram of at "
                                                                  "least 8x8"),
    (np.random.default_rng(0).random((1, 1), dtype=np.float32), "is 1x1 px (H x W); expected a hologram of at "
                                                                  "least 8x8"),
])
@pytest.mark.parametrize("calibrate", ["--calibrate", "--no-calibrate"])
def test_infer_refuses_a_frame_without_fringes_naming_the_file(run, tmp_path, frame, reason, calibrate):
    """A constant or tiny frame has no sideband: the network would write NaN (and the calibration divide
    by zero); it is refused before anything is written."""
    path = tmp_path / "bad.npy"
    np.save(path, frame)
    result = cli("infer", run, path, "--out", tmp_path / "out", "--device", "cpu", "--engine", "reference",
                 calibrate)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {path}: {reason}"
    assert not (tmp_path / "out").exists()


def test_a_constant_page_of_a_stack_is_named_by_its_number(run, tmp_path):
    stack = holograms(run, 3, (64, 64))
    stack[1] = 0
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    result = cli("infer", run, tmp_path / "stack.tif", "--out", tmp_path / "out", "--device", "cpu",
                 "--engine", "reference")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {tmp_path / 'stack.tif'} (page 2): is constant (0 everywhere): no " \
                                    "fringes to demodulate"
    assert not (tmp_path / "out" / "stack.tif").exists()


def test_the_export_forms_of_the_sideband_search_are_the_eager_ones_bit_for_bit(monkeypatch):
    cpu = torch.device("cpu")
    eager = {n: _hann(n, cpu) for n in (1, 2, 3, 64, 96, 250, 333, 1024)}
    dist = torch.rand(97, 65) * 0.3
    eager_mask = {size: _far_from_dc(dist, *size) for size in ((32, 128), (128, 32), (96, 333), (1024, 1024))}
    monkeypatch.setattr(inputs, "_exporting", lambda: True)
    for n, window in eager.items():
        assert torch.equal(_hann(n, cpu), window), n
    for size, mask in eager_mask.items():
        assert torch.equal(_far_from_dc(dist, *size), mask), size


def test_sideband_exports_with_free_sizes_within_1e4_of_eager(tmp_path):
    """The op alone, exported by ``export``'s path once at 128 and run at 128, 160 and 192 x 256 (DFT lengths
    160, 192, 224, 288: not powers of two). In float32, onnxruntime's DFT is 2.6e-4 to 5e-4 off here; the
    float64 DFTs and sums of the exported graph keep it within 1e-4."""
    ort = pytest.importorskip("onnxruntime")
    op = build_input_op("sideband", 1, {}).eval()
    task = PhaseRetrievalTask(PhaseRetrievalTask.Config.model_validate({}))
    x = torch.from_numpy(np.stack([task.example_input((128, 128), seed=s) for s in range(2)]))
    export_module._export_onnx(op, x, 32, tmp_path / "sideband.onnx")
    session = ort.InferenceSession(str(tmp_path / "sideband.onnx"), providers=["CPUExecutionProvider"])
    for size in ((128, 128), (160, 160), (192, 256)):
        h = torch.from_numpy(task.example_input(size, seed=3))[None]
        got = session.run(None, {"input": h.numpy()})[0]
        assert got.shape == (1, 4, *size)
        assert np.abs(got - op(h).numpy()).max() < 1e-4, size


def test_export_check_of_the_sideband_network_at_two_sizes(run, tmp_path):
    pytest.importorskip("onnxruntime")
    target = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = cli("export", run, "--format", "onnx", "--out", target, "--size", "70", "90", "--check")
    assert result.exit_code == 0, result.output
    checks = [line for line in result.output.splitlines() if line.startswith("check ")]
    assert [c.split(":")[0] for c in checks] == ["check 72x92 (batch 1)", "check 108x136 (batch 2)"]
    assert all(float(c.split("max abs error ")[1].split()[0]) <= 1e-4 for c in checks)
    assert result.output.splitlines()[-1] == f"wrote {target}"


def test_every_shipped_phase_network_can_be_held_by_a_cuda_graph() -> None:
    """The shipped demo child (detrend 3, congruent finish) and every phase config's model have nothing in
    their forward that a CUDA graph cannot hold: the CUDA fast path captures them (it failed on an H200,
    2026-11-27, on the detrend fit's constants made from Python values and its linalg.solve)."""
    from sparseconn.architecture import Architecture
    from sparseconn.engine.fastpath import host_round_trips
    from sparseconn.models import build_model
    from sparseconn.network import build_child

    tasks = Path(__file__).resolve().parents[2] / "tasks"
    nets = {"demo child": build_child(Architecture.load(tasks / "phase_retrieval/architectures/demo_child.json"))}
    for config in sorted(tasks.glob("phase_retrieval*.yaml")):
        cfg = load_run_config(config)
        nets[config.name] = (build_model(cfg.model.name, cfg.model.params, cfg.space) if cfg.model is not None
                             else build_supernet(SearchSpace(cfg.space)))
    for name, net in nets.items():
        op = getattr(net, "input_op", None)
        if op is not None:
            op.set_target_scale(12.0)  # the finish runs, as after training
        assert host_round_trips(net, (1, 1, 128, 128)) == [], name
