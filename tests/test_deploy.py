"""``infer`` streamed in bounded batches and ``export`` for any size, on the toy task: the memory cap holds
(never more frames alive than it allows), every output equals ``predict``, frames of mixed sizes batch
correctly, ONNX and TorchScript run at sizes they were not traced at, and bad options are one line."""

from __future__ import annotations

import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

import sparseconn.engine.export as export_module
import sparseconn.engine.fastpath as fastpath
from sparseconn.engine.config import load_run_config
from sparseconn.engine.infer import MB, infer
from sparseconn.engine.inference import predict
from sparseconn.engine.loading import load_model
from sparseconn.engine.progress import CountProgress
from sparseconn.errors import SparseconnError
from sparseconn.network import build_supernet
from sparseconn.pruning import derive
from sparseconn.space import SearchSpace
from sparseconn.task import TASKS
from tests.clitools import cli, ok
from tests.clitools import one_line_error as assert_one_line
from tests.toy_task import TOY_YAML, write_toy_config

FRAME_BYTES = 64 * 64 * 4  # one 64x64 float32 toy frame


def one_line_error(*args: object, names: tuple[object, ...] = ()) -> str:
    """Run the CLI: it must fail with the one-line error and raise no warning on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cli(*args)
    assert not caught, [str(w.message) for w in caught]
    return assert_one_line(result, *names)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A toy child (every candidate kept) trained for two batches: a real run folder, in seconds. Its ground
    node pools to 3x3 as the paper's does: at most sizes the pooling bins differ in length, which an export
    must not fix at the traced size."""
    base = tmp_path_factory.mktemp("deploy")
    config = write_toy_config(base)
    config.write_text(TOY_YAML.replace("{name: G, source: -1, size: 1}", "{name: G, source: -1, size: 3}"))
    cfg = load_run_config(config)
    space = SearchSpace(cfg.space)
    arch = derive(space.graph, cfg.space, build_supernet(space).connections.snapshot(), threshold=0.3)
    arch.save(base / "architecture.json")
    ok("train", config, "--arch", base / "architecture.json", "--out", base / "T", "--fast-dev-run", "--device",
       "cpu", "--quiet")
    return base / "T"


def write_frames(folder: Path, shapes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, shape in enumerate(shapes):
        paths.append(folder / f"f{i:02d}.npy")
        np.save(paths[-1], rng.random(shape, dtype=np.float32))
    return paths


def expected(run: Path, path: Path) -> np.ndarray:
    x = torch.from_numpy(np.load(path))[None, None]
    return predict(load_model(run).net, x)[0].numpy()


class Watch:
    """Counts the toy task's frames read and written (the frames alive in between) and the model's batches."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = self.writes = self.peak = 0
        self.batches: list[int] = []
        toy = TASKS.get("toy")
        read, write, optimize = toy.read_input, toy.write_output, fastpath.optimize

        def read_input(task, path):
            x = read(task, path)
            self.reads += 1
            self.peak = max(self.peak, self.reads - self.writes)
            return x

        def write_output(task, output, path):
            self.writes += 1
            return write(task, output, path)

        def recording_optimize(*args, **kwargs):
            fast = optimize(*args, **kwargs)
            inner = fast.fn

            def recorded(x):
                self.batches.append(x.shape[0])
                return inner(x)

            fast.fn = recorded
            return fast

        monkeypatch.setattr(toy, "read_input", read_input)
        monkeypatch.setattr(toy, "write_output", write_output)
        monkeypatch.setattr(fastpath, "optimize", recording_optimize)


def test_infer_holds_no_more_frames_than_the_memory_cap_allows(run, tmp_path, monkeypatch):
    files = write_frames(tmp_path / "in", [(64, 64)] * 12)
    watch = Watch(monkeypatch)
    lines = []
    cap = 2.5 * FRAME_BYTES / MB  # room for two frames, not three
    written = infer(run, [tmp_path / "in"], tmp_path / "out", batch_size=8, max_memory=cap,
                           engine="reference", log=lines.append)
    assert watch.batches == [2] * 6  # the batch of 8 shrank to the two frames that fit
    assert watch.peak == 2 and watch.reads == watch.writes == 12
    assert len(lines) == 1 and lines[0].startswith("engine: reference")
    assert [p.name for p in written] == [f.name for f in files]
    for f in files:
        np.testing.assert_allclose(np.load(tmp_path / "out" / f.name), expected(run, f), rtol=1e-5, atol=1e-6)


def test_infer_batches_consecutive_frames_of_one_size(run, tmp_path, monkeypatch):
    files = write_frames(tmp_path / "in", [(64, 64), (64, 64), (37, 45), (64, 64), (64, 64), (64, 64)])
    watch = Watch(monkeypatch)
    infer(run, [tmp_path / "in"], tmp_path / "out", batch_size=2, engine="reference")
    assert watch.batches == [2, 1, 2, 1] and watch.peak == 2
    for f in files:
        got = np.load(tmp_path / "out" / f.name)
        assert got.shape == (1, *np.load(f).shape)
        np.testing.assert_allclose(got, expected(run, f), rtol=1e-5, atol=1e-6)


class Delayed(fastpath.InFlight):
    """:class:`fastpath.InFlight` as CUDA runs it, on the CPU: each output comes back ``in_flight`` puts later."""

    def __init__(self, fast, in_flight=1):
        super().__init__(fast, in_flight)
        self.k, self.held, self.most = in_flight, deque(), 0

    def put(self, x):
        self.held.append(self.fast(x))
        self.most = max(self.most, len(self.held))
        return self.held.popleft() if len(self.held) > self.k else None

    def drain(self):
        while self.held:
            yield self.held.popleft()


@pytest.mark.parametrize("in_flight", [2, 3])
def test_infer_with_batches_in_flight_writes_every_file_in_order(run, tmp_path, monkeypatch, in_flight):
    """Outputs that come back late (as with several CUDA streams) still reach the right files: frames of
    mixed sizes in several files, batches cut by size, end marks between them."""
    pipes = []
    monkeypatch.setattr(fastpath, "InFlight", lambda fast, k: pipes.append(Delayed(fast, k)) or pipes[-1])
    files = write_frames(tmp_path / "in", [(64, 64), (64, 64), (37, 45), (64, 64), (50, 30), (50, 30), (64, 64)])
    written = infer(run, [tmp_path / "in"], tmp_path / "out", batch_size=2, engine="reference",
                           in_flight=in_flight)
    assert [p.name for p in written] == [f.name for f in files]
    assert len(pipes) == 1 and pipes[0].most == in_flight + 1  # the pipe did hold outputs back
    for f in files:
        np.testing.assert_allclose(np.load(tmp_path / "out" / f.name), expected(run, f), rtol=1e-5, atol=1e-6)


def test_the_python_api_infers_with_the_cli_s_options(run, tmp_path):
    import sparseconn as sc

    files = write_frames(tmp_path / "in", [(64, 64)] * 3)
    written = sc.infer(run, tmp_path / "in", tmp_path / "out", device="cpu", engine="reference", batch_size=2,
                       max_memory=1.5 * FRAME_BYTES / MB, in_flight=2)  # on the CPU: one at a time
    assert [p.name for p in written] == [f.name for f in files]
    for f in files:
        np.testing.assert_allclose(np.load(tmp_path / "out" / f.name), expected(run, f), rtol=1e-5, atol=1e-6)
    with pytest.raises(SparseconnError, match=r"--in-flight must be .*got '0'"):
        sc.infer(run, tmp_path / "in", tmp_path / "out2", device="cpu", in_flight=0)
    with pytest.raises(SparseconnError, match=r"--precision must be one of auto, fp32, bf16, got 'half'"):
        sc.infer(run, tmp_path / "in", tmp_path / "out2", device="cpu", precision="half")
    assert not (tmp_path / "out2").exists()
    written = sc.infer(run, tmp_path / "in", tmp_path / "out3", device="cpu", engine="eager", precision="fp32")
    for f in files:  # fp32 on any CPU, native bf16 or not
        np.testing.assert_allclose(np.load(tmp_path / "out3" / f.name), expected(run, f), atol=1e-4)


def test_infer_cli_prints_the_engine_once_and_matches_predict(run, tmp_path):
    files = write_frames(tmp_path / "in", [(37, 45), (37, 45), (50, 30)])
    result = ok("infer", run, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", "--engine", "eager",
                "--batch-size", "2", "--max-memory", "64", "--precision", "fp32", "--quiet")
    lines = result.output.splitlines()
    assert [line.split(" (")[0] for line in lines if line.startswith("engine:")] == ["engine: eager"]
    assert lines[-1] == f"wrote 3 file(s) to {tmp_path / 'out'}"
    for f in files:  # eager folds BatchNorm and runs channels-last: equal up to float rounding
        np.testing.assert_allclose(np.load(tmp_path / "out" / f.name), expected(run, f), atol=1e-4)


def test_a_frame_larger_than_the_cap_is_one_line_before_any_work(run, tmp_path):
    write_frames(tmp_path / "in", [(64, 64)])
    message = one_line_error("infer", run, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu",
                             "--max-memory", "0.01", names=("f00.npy", "64x64", "--max-memory 0.01 MB"))
    assert "0.0156 MB" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("option", "value"), [
    ("--engine", "fast"), ("--engine", "EAGER"),
    ("--max-memory", "0"), ("--max-memory", "-5"), ("--max-memory", "lots"), ("--max-memory", "nan"),
    ("--max-memory", "inf"), ("--batch-size", "0"), ("--batch-size", "two"), ("--batch-size", "1.5"),
    ("--in-flight", "0"), ("--in-flight", "many"), ("--in-flight", "1.5"), ("--precision", "fp16"),
])
def test_bad_infer_options_are_one_line(run, tmp_path, option, value):
    write_frames(tmp_path / "in", [(32, 32)])
    message = one_line_error("infer", run, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", option,
                             value, names=(option, repr(value)))
    if option == "--engine":
        assert "auto, reference, eager, compiled, onnxruntime" in message
    assert not (tmp_path / "out").exists()


def test_infer_precision_bf16_runs_where_native_and_is_one_line_elsewhere(run, tmp_path, monkeypatch):
    from sparseconn.engine import fastpath

    files = write_frames(tmp_path / "in", [(37, 45)])
    monkeypatch.setattr(fastpath, "cpu_has_fast_bf16", lambda: False)
    one_line_error("infer", run, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", "--precision", "bf16",
                   names=("--precision bf16", "cpu has no native bf16"))
    monkeypatch.setattr(fastpath, "cpu_has_fast_bf16", lambda: True)  # (runs on any CPU, only slowly)
    one_line_error("infer", run, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", "--precision", "bf16",
                   "--engine", "reference", names=("--precision bf16", "'reference' runs in fp32 only"))
    assert not (tmp_path / "out").exists()
    result = ok("infer", run, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", "--engine", "eager",
                "--precision", "bf16", "--quiet")
    assert "bf16" in result.output.splitlines()[0]
    got, want = np.load(tmp_path / "out" / files[0].name), expected(run, files[0])
    assert np.abs(got - want).max() <= fastpath.BF16_TOL * max(1.0, np.abs(want).max())


def test_every_input_is_checked_before_any_work(run, tmp_path):
    good = write_frames(tmp_path / "in", [(32, 32)])[0]
    (tmp_path / "notes.txt").write_text("not an image")
    one_line_error("infer", run, good, tmp_path / "notes.txt", "--out", tmp_path / "out", "--device", "cpu",
                   names=("notes.txt", ".txt", ".npy"))
    other = write_frames(tmp_path / "other", [(32, 32)])[0]  # the same name in another folder
    one_line_error("infer", run, good, other, "--out", tmp_path / "out", "--device", "cpu",
                   names=(good, other, "separate --out"))
    assert not (tmp_path / "out").exists()


def test_infer_never_writes_over_its_own_inputs_even_with_force(run, tmp_path):
    files = write_frames(tmp_path / "in", [(32, 32), (40, 24)])
    before = [f.read_bytes() for f in files]
    (tmp_path / "link").symlink_to(tmp_path / "in")  # the same folder by another name: paths are resolved
    for out in (tmp_path / "in", tmp_path / "link"):
        for force in ((), ("--force",)):
            one_line_error("infer", run, tmp_path / "in", "--out", out, "--device", "cpu", *force,
                           names=("f00.npy", "over the input", "another --out"))
    one_line_error("infer", run, files[1], "--out", tmp_path / "in", "--device", "cpu", names=("f01.npy", "input"))
    assert [f.read_bytes() for f in files] == before and sorted(p.name for p in (tmp_path / "in").iterdir()) == [
        "f00.npy", "f01.npy"]


def test_infer_replaces_existing_outputs_only_with_force(run, tmp_path):
    import sparseconn as sc

    files = write_frames(tmp_path / "in", [(32, 32), (40, 24)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "f01.npy").write_bytes(b"an earlier result")
    (out / "notes.txt").write_text("kept")
    one_line_error("infer", run, tmp_path / "in", "--out", out, "--device", "cpu",
                   names=(out / "f01.npy", "already exists", "--force"))
    assert (out / "f01.npy").read_bytes() == b"an earlier result" and not (out / "f00.npy").exists()
    with pytest.raises(SparseconnError, match="f01.npy already exists"):
        sc.infer(run, files, out, device="cpu")
    ok("infer", run, tmp_path / "in", "--out", out, "--device", "cpu", "--engine", "reference", "--force")
    for f in files:
        np.testing.assert_allclose(np.load(out / f.name), expected(run, f), rtol=1e-5, atol=1e-6)
    assert (out / "notes.txt").read_text() == "kept"
    written = sc.infer(run, files, out, device="cpu", engine="reference", force=True)
    assert [p.name for p in written] == ["f00.npy", "f01.npy"]


def test_a_prediction_with_nan_is_one_line_naming_the_file_and_nothing_is_written_for_it(run, tmp_path):
    """The toy task reads .npy files unchecked: a NaN pixel reaches the model, whose output must not be
    written as a map of NaN with exit code 0."""
    files = write_frames(tmp_path / "in", [(32, 32), (32, 32)])
    bad = np.load(files[1])
    bad[5, 7] = np.nan
    np.save(files[1], bad)
    result = cli("infer", run, tmp_path / "in", "--out", tmp_path / "out", "--device", "cpu", "--engine",
                 "reference", "--quiet")
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()  # the engine's line, printed when the first batch ran, then the error
    assert len(lines) == 2 and lines[0].startswith("engine: reference"), result.output
    assert lines[1] == (f"error: {files[1]}: the model's prediction holds 1024 NaN or inf values (is the input "
                        "degenerate?); nothing written for this file")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["f00.npy"]  # the file before it is kept


def test_infer_with_no_inputs_or_inputs_that_are_not_paths_is_one_line(run, tmp_path):
    import sparseconn as sc

    with pytest.raises(SparseconnError, match="^no inputs given"):
        sc.infer(run, [], tmp_path / "out", device="cpu")
    with pytest.raises(SparseconnError, match="^inputs must be a path or a list of paths.*got 5$"):
        sc.infer(run, 5, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


# -- export ----------------------------------------------------------------------------------------------

def eager(run: Path, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return load_model(run).net(x).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_runs_at_any_multiple_of_the_stride(run, tmp_path, fmt):
    target = tmp_path / f"model.{fmt}"
    result = ok("export", run, "--format", fmt, "--out", target, "--size", "40", "40", "--check")
    checks = [line for line in result.output.splitlines() if line.startswith("check ")]
    assert [c.split(":")[0] for c in checks] == ["check 40x40 (batch 1)", "check 60x60 (batch 2)"]
    assert all(float(c.split("max abs error ")[1].split()[0]) <= 1e-4 for c in checks)
    stride = load_model(run).net.stride
    x = torch.rand(3, 1, 7 * stride, 13 * stride, generator=torch.Generator().manual_seed(0))  # neither size
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    else:
        with torch.no_grad():
            got = torch.jit.load(str(target))(x).numpy()
    np.testing.assert_allclose(got, eager(run, x), atol=1e-4)


def test_fixed_size_onnx_takes_one_frame_of_its_size(run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    target = tmp_path / "fixed.onnx"
    result = ok("export", run, "--format", "onnx", "--out", target, "--size", "40", "40", "--check", "--fixed-size")
    checks = [line for line in result.output.splitlines() if line.startswith("check ")]
    assert [c.split(":")[0] for c in checks] == ["check 40x40 (batch 1)"]
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert [d for d in session.get_inputs()[0].shape] == [1, 1, 40, 40]
    x = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], eager(run, x), atol=1e-4)


def test_fixed_size_onnx_takes_a_raw_frame_of_a_size_that_is_no_multiple_of_the_stride(run, tmp_path):
    """The network pads after its input op, inside the file: the frame goes in as the camera gave it."""
    ort = pytest.importorskip("onnxruntime")
    target = tmp_path / "fixed.onnx"
    result = ok("export", run, "--format", "onnx", "--out", target, "--size", "37", "45", "--check", "--fixed-size")
    assert [c.split(":")[0] for c in result.output.splitlines() if c.startswith("check ")] == ["check 37x45 (batch 1)"]
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert [d for d in session.get_inputs()[0].shape] == [1, 1, 37, 45]
    x = torch.rand(1, 1, 37, 45, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], eager(run, x), atol=1e-4)


def test_export_check_failure_is_one_line_and_writes_nothing(run, tmp_path, monkeypatch):
    runner = export_module._runner
    monkeypatch.setattr(export_module, "_runner", lambda fmt, path: (lambda a: runner(fmt, path)(a) + 1e-3))
    target = tmp_path / "model.pt"
    one_line_error("export", run, "--format", "torchscript", "--out", target, "--size", "32", "32", "--check",
                   names=("export check failed", "32x32", "--tolerance 0.0001"))
    assert not target.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "names"), [
    (("--tolerance", "0"), ("--tolerance", "'0'")),
    (("--tolerance", "tiny"), ("--tolerance", "'tiny'")),
    (("--size", "0", "64"), ("--size", "0 64")),
])
def test_bad_export_options_are_one_line(run, tmp_path, args, names):
    one_line_error("export", run, "--format", "torchscript", "--out", tmp_path / "m.pt", *args, names=names)
    assert not (tmp_path / "m.pt").exists()


def test_the_old_deploy_module_still_offers_every_moved_name():
    """``sparseconn.engine.deploy`` was split into infer and export; old imports get the same objects."""
    import sparseconn.engine.deploy as old
    import sparseconn.engine.infer as infer_module

    homes = {name: module for module in (infer_module, export_module) for name in old.__all__
             if hasattr(module, name)}
    assert set(homes) == set(old.__all__)
    for name, module in homes.items():
        assert getattr(old, name) is getattr(module, name), name


def test_the_progress_bar_counts_frames_on_a_terminal_only():
    bar = CountProgress("infer frames", 5, enabled=True, tty=True)
    with bar.console.capture() as captured:
        bar.advance(2)
        bar.advance(3)
        bar.close()
    assert "5/5" in captured.get()
    silent = CountProgress("infer frames", None, enabled=True, tty=False)
    silent.advance(4)
    assert silent._progress is None
