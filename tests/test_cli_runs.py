"""The ``sparseconn`` command end to end on the toy task: every run command's happy path, and bad input
refused with exit code 2, one line naming the bad value, and nothing in an existing run folder touched.

The search, prune and training runs are module-scoped (one each); a test that must damage a run works
on a copy.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseconn.architecture import Architecture
from sparseconn.engine.inference import predict
from sparseconn.engine.loading import load_model
from tests.clitools import cli, ok
from tests.toy_task import TOY_YAML, write_toy_config

PACKAGE = Path(__file__).resolve().parents[1] / "sparseconn"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and folder below ``folder`` with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def refused(*args: object, names: tuple[object, ...] = (), untouched: tuple[Path, ...] = (),
            absent: tuple[Path, ...] = ()) -> str:
    """Run a command that must fail cleanly; returns its one-line message."""
    before = [snapshot(f) for f in untouched]
    with warnings.catch_warnings(record=True) as caught:  # a warning would be a second line on stderr
        warnings.simplefilter("always")
        result = cli(*args)
    assert not caught, [str(w.message) for w in caught]
    assert result.exit_code == 2, (result.exit_code, result.output, repr(result.exception))
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    message = lines[0]
    assert message.startswith("error: ") and len(message) > len("error: "), message
    for name in names:
        assert str(name) in message, (name, message)
    for folder, snap in zip(untouched, before, strict=True):
        assert snapshot(folder) == snap, f"{folder} changed"
    for path in absent:
        assert not path.exists(), f"{path} was created"
    return message


# -- module-scoped runs ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def config(base) -> Path:
    return write_toy_config(base)


@pytest.fixture(scope="module")
def search_run(base, config) -> Path:
    run = base / "R"
    result = ok("search", config, "--fast-dev-run", "--out", run, "--device", "cpu", "--quiet")
    assert "search finished" in result.output
    return run


@pytest.fixture(scope="module")
def arch_file(search_run) -> Path:
    result = ok("prune", search_run)
    assert "connections kept" in result.output
    return search_run / "architecture.json"


@pytest.fixture(scope="module")
def train_run(base, config, arch_file) -> Path:
    run = base / "T"
    ok("train", config, "--arch", arch_file, "--out", run, "--fast-dev-run", "--device", "cpu", "--quiet")
    return run


@pytest.fixture(scope="module")
def other_run(base) -> Path:
    """A search of another architecture (decoder depth 4 instead of 8): same connections, other shapes."""
    folder = base / "other"
    folder.mkdir()
    cfg = folder / "other.yaml"
    cfg.write_text(TOY_YAML.replace("value: 8", "value: 4"))
    run = folder / "R"
    ok("search", cfg, "--fast-dev-run", "--out", run, "--device", "cpu", "--quiet")
    return run


@pytest.fixture(scope="module")
def odd_input(base) -> Path:
    path = base / "inputs" / "odd.npy"
    path.parent.mkdir()
    np.save(path, np.random.default_rng(0).random((37, 45), dtype=np.float32))
    return path


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def write_config(folder: Path, text: str, name: str = "bad.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# -- happy paths -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["search"], ["prune"], ["train"], ["evaluate"], ["pipeline"], ["infer"],
                                     ["export"], ["profile"], ["draw"]])
def test_every_command_has_help(command):
    result = ok(*command, "--help")
    assert "Usage" in result.output


def test_the_split_deploy_module_names_its_replacements():
    import sparseconn.cli

    with pytest.raises(AttributeError, match=r"^sparseconn\.cli\.deploy was split: .*sparseconn\.cli\.infer_export, "
                                             r"draw in sparseconn\.cli\.draw$"):
        _ = sparseconn.cli.deploy


def test_search_writes_the_run_folder(search_run):
    for name in ("config.yaml", "metrics.jsonl", "connections.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
                 "summary.json"):
        assert (search_run / name).is_file(), name
    records = [json.loads(x) for x in (search_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0]  # --fast-dev-run: one epoch
    summary = json.loads((search_run / "summary.json").read_text())
    assert summary["stage"] == "search" and summary["best"]["epoch"] == 0
    assert len(summary["final_connections"]) == summary["candidates"] == 7


def test_prune_writes_a_loadable_architecture(arch_file):
    arch = Architecture.load(arch_file)
    assert 0 < len(arch.connections) <= len(arch.candidates) == 7


def test_train_from_scratch_and_with_inherited_weights(base, config, search_run, arch_file, train_run):
    assert "--inherit" in ok("train", "--help").output
    for name in ("config.yaml", "metrics.jsonl", "architecture.json", "train_summary.json", "checkpoints/best.pt"):
        assert (train_run / name).is_file(), name
    lm = load_model(train_run)
    assert lm.kind == "child" and lm.checkpoint["edge_bias"] is False
    inherited = base / "T_inherit"
    ok("train", config, "--arch", arch_file, "--inherit", search_run / "checkpoints/best.pt", "--out", inherited,
       "--fast-dev-run", "--device", "cpu", "--quiet")
    assert load_model(inherited).checkpoint["edge_bias"] is True


def test_evaluate_writes_evaluation_json(train_run):
    ok("evaluate", train_run, "--device", "cpu", "--size", "32", "32")
    result = json.loads((train_run / "evaluation.json").read_text())
    assert result["latency_size"] == [32, 32] and result["test_items"] == 2
    (row,) = result["rows"]
    assert row["model"] == "child" and np.isfinite(row["mse"]) and row["latency_ms"] > 0


@pytest.mark.parametrize("model", ["checkpoint", "folder"])
def test_infer_keeps_an_odd_input_size(base, train_run, odd_input, model):
    out = base / f"pred_{model}"
    source = train_run / "checkpoints/best.pt" if model == "checkpoint" else train_run
    ok("infer", source, odd_input, "--out", out, "--device", "cpu", "--precision", "fp32")  # any CPU: fp32
    pred = np.load(out / "odd.npy")
    assert pred.shape == (1, 37, 45) and np.isfinite(pred).all()
    x = torch.from_numpy(np.load(odd_input))[None, None]
    expected = predict(load_model(train_run).net, x)[0].numpy()
    np.testing.assert_allclose(pred, expected, rtol=1e-5, atol=1e-6)


def test_export_torchscript_matches_the_eager_model(base, train_run):
    target = base / "export" / "model.ts.pt"
    ok("export", train_run, "--format", "torchscript", "--out", target, "--size", "64", "64")
    scripted = torch.jit.load(str(target))
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), load_model(train_run).net(x), rtol=1e-5, atol=1e-6)


def test_export_onnx_matches_the_eager_model(base, train_run):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    target = base / "export" / "model.onnx"
    ok("export", train_run, "--format", "onnx", "--out", target, "--size", "64", "64")
    import onnx

    onnx.checker.check_model(onnx.load(str(target)))
    ort = pytest.importorskip("onnxruntime")
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    (got,) = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, load_model(train_run).net(x).numpy(), rtol=1e-4, atol=1e-5)


def test_fast_dev_run_finds_a_task_defined_in_a_plugin_module(tmp_path, monkeypatch):
    """--fast-dev-run looks up the task's own shrink settings: its plugin module must be imported first."""
    from sparseconn.cli._runopts import load_config

    (tmp_path / "cli_plugin_task.py").write_text(
        "from tests.toy_task import ToyConfig, TASKS\n"
        "from sparseconn.task import register_task\n"
        "if 'cli_plugin_toy' not in TASKS:\n"
        "    @register_task('cli_plugin_toy')\n"
        "    class PluginToy(TASKS.get('toy')):\n"
        "        fast_dev_run = {'train_size': 5}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = TOY_YAML.replace("task: {name: toy}", "task: {name: cli_plugin_toy}").replace(
        "plugins: [tests.toy_task]", "plugins: [cli_plugin_task]")
    cfg = load_config(write_config(tmp_path, text), ["train.epochs=3"], None, fast=True)
    task_cfg = cfg.task
    assert task_cfg.train_size == 5 and cfg.search.epochs == 1 and cfg.train.epochs == 3  # --set wins


# -- bad configs and options -----------------------------------------------------------------------------

def test_unknown_config_key_names_the_path_and_suggests_the_key(base, search_run, tmp_path):
    cfg = write_config(base, TOY_YAML.replace("search:\n  epochs: 2", "search:\n  epocs: 2"), "misspelt.yaml")
    for fast in ((), ("--fast-dev-run",)):
        message = refused("search", cfg, *fast, "--out", tmp_path / "never", "--device", "cpu",
                          names=("search.epocs", "'epochs'", cfg), absent=(tmp_path / "never",))
        assert "did you mean" in message
        # a run folder given as --out is left alone too
        refused("search", cfg, *fast, "--out", search_run, "--device", "cpu", names=("search.epocs",),
                untouched=(search_run,))


def test_wrong_type_names_the_key_path(base, tmp_path):
    cfg = write_config(base, TOY_YAML.replace("search:\n  epochs: 2", "search:\n  epochs: many"), "wrongtype.yaml")
    for fast in ((), ("--fast-dev-run",)):  # --fast-dev-run must not paper over the bad value
        refused("search", cfg, *fast, "--out", tmp_path / "never", "--device", "cpu",
                names=("search.epochs", "many"), absent=(tmp_path / "never",))


def test_an_architecture_of_another_space_is_refused_by_train(base, arch_file, tmp_path):
    """The child is built from the architecture alone: a config of another encoder (or input op, head,
    channels) would leave a run folder whose config.yaml describes a network it does not hold."""
    other = base / "other.yaml"
    toy = (base / "toy.yaml").read_text()
    encoder = "  encoder: {name: tiny"
    assert encoder in toy
    other.write_text(toy.replace(encoder, "  input: {name: standardise}\n" + encoder))
    refused("train", other, "--arch", arch_file, "--out", tmp_path / "never", "--fast-dev-run",
            names=("--arch", "input op is 'identity'", "'standardise'"), absent=(tmp_path / "never",))


def test_missing_config_file(base, arch_file, tmp_path):
    missing = base / "nope.yaml"
    refused("search", missing, "--out", tmp_path / "never", names=(missing,), absent=(tmp_path / "never",))
    refused("train", missing, "--arch", arch_file, "--out", tmp_path / "never", names=(missing,),
            absent=(tmp_path / "never",))
    refused("pipeline", missing, "--out", tmp_path / "never", names=(missing,), absent=(tmp_path / "never",))


@pytest.mark.parametrize(("option", "names"), [
    ("search.epocs=3", ("search.epocs", "'epochs'")),
    ("search.epochs=many", ("search.epochs", "many")),
    ("searchepochs", ("searchepochs", "KEY=VALUE")),
    ("=3", ("KEY=VALUE",)),
    ("search.epochs=[1", ("search.epochs", "[1")),
    ("seed.x=1", ("seed.x",)),
    ("space.edges.kernel=4", ("space.edges.kernel", "odd", "4")),
    ("space.decoder.stage_kernel=2", ("space.decoder.stage_kernel", "odd", "2")),
    ("evaluate.latency_size=[0, 32]", ("evaluate.latency_size", "positive")),
])
def test_bad_set_option(config, option, names, tmp_path):
    refused("search", config, "--set", option, "--out", tmp_path / "never", "--device", "cpu", names=names,
            absent=(tmp_path / "never",))


@pytest.mark.parametrize("seed", ["-5", "-1"])
def test_a_negative_seed_is_refused_before_a_run_folder_is_made(config, seed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # without --out the run folder would be made in ./runs
    refused("search", config, "--seed", seed, "--fast-dev-run", "--device", "cpu", names=("seed", seed),
            absent=(tmp_path / "runs",))


@pytest.mark.parametrize("size", [("0", "0"), ("-5", "64"), ("32", "0")])
def test_evaluate_refuses_a_size_that_is_not_positive(train_run, size):
    refused("evaluate", train_run, "--device", "cpu", "--size", *size, names=("--size", " ".join(size)),
            untouched=(train_run,))


@pytest.mark.parametrize("threshold", ["nan", "-1", "inf"])
def test_prune_refuses_a_threshold_the_config_would_refuse(search_run, threshold):
    refused("prune", search_run, "--threshold", threshold, names=("--threshold", threshold),
            untouched=(search_run,))


def test_draw_and_profile_say_what_they_take_when_given_a_checkpoint(search_run, train_run):
    best = train_run / "checkpoints" / "best.pt"
    refused("draw", best, names=(best, "config YAML", "architecture.json"), untouched=(train_run,))
    refused("profile", best, names=(best, "config YAML", "architecture.json"), untouched=(train_run,))
    # a train run has no connection weights to draw: the message says what of it can be drawn
    refused("draw", train_run, names=(train_run, "search or pipeline run folder", "architecture.json"),
            untouched=(train_run,))


def test_bad_device_and_export_format(config, train_run, tmp_path):
    refused("search", config, "--device", "tpu", "--out", tmp_path / "never", names=("tpu",),
            absent=(tmp_path / "never",))
    refused("export", train_run, "--format", "tflite", "--out", tmp_path / "m.tflite", names=("tflite",),
            untouched=(train_run,), absent=(tmp_path / "m.tflite",))


# -- missing files and folders ---------------------------------------------------------------------------

def test_missing_run_folder(base, odd_input, tmp_path):
    missing = base / "no_such_run"
    refused("prune", missing, names=(missing,))
    refused("evaluate", missing, "--device", "cpu", names=(missing,))
    refused("infer", missing, odd_input, "--out", tmp_path / "never", "--device", "cpu", names=(missing,),
            absent=(tmp_path / "never",))
    refused("export", missing, "--format", "torchscript", "--out", tmp_path / "never.pt", names=(missing,),
            absent=(tmp_path / "never.pt",))
    refused("train", base / "toy.yaml", "--arch", missing / "architecture.json", "--out", tmp_path / "never",
            names=(missing / "architecture.json",), absent=(tmp_path / "never",))


def test_infer_on_a_missing_input(base, train_run, odd_input, tmp_path):
    missing = base / "inputs" / "missing.npy"
    out = tmp_path / "never"
    refused("infer", train_run, odd_input, missing, "--out", out, "--device", "cpu", names=(missing,),
            untouched=(train_run,), absent=(out,))


# -- run folders that already exist ----------------------------------------------------------------------

def test_resume_into_an_empty_folder(config, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused("search", config, "--resume", "--out", empty, "--fast-dev-run", "--device", "cpu",
            names=(empty, "--resume"))
    assert list(empty.iterdir()) == []


def test_an_existing_run_is_not_overwritten(config, search_run, arch_file, train_run):
    refused("search", config, "--out", search_run, "--fast-dev-run", "--device", "cpu", names=(search_run,),
            untouched=(search_run,))
    refused("train", config, "--arch", arch_file, "--out", train_run, "--fast-dev-run", "--device", "cpu",
            names=(train_run,), untouched=(train_run, search_run))
    refused("pipeline", config, "--out", search_run, "--fast-dev-run", "--device", "cpu", names=(search_run,),
            untouched=(search_run,))


# -- checkpoints that do not fit -------------------------------------------------------------------------

def test_a_checkpoint_of_another_architecture(config, search_run, arch_file, other_run, odd_input, tmp_path):
    run = copy_run(search_run, tmp_path / "R_foreign")
    foreign = run / "checkpoints/best.pt"
    shutil.copy2(other_run / "checkpoints/best.pt", foreign)
    out = tmp_path / "never"
    for args in (("prune", run), ("prune", run, "--checkpoint", "best"), ("evaluate", run, "--device", "cpu"),
                 ("infer", foreign, odd_input, "--out", out, "--device", "cpu"),
                 ("infer", run, odd_input, "--out", out, "--device", "cpu"),
                 ("export", foreign, "--format", "torchscript", "--out", out)):
        message = refused(*args, names=(foreign, "another architecture"), untouched=(run,), absent=(out,))
        assert "space.decoder.depth.value" in message
    # inheriting weights from a supernet of another space
    refused("train", config, "--arch", arch_file, "--inherit", other_run / "checkpoints/best.pt", "--out", out,
            "--fast-dev-run", "--device", "cpu", names=(other_run / "checkpoints/best.pt", "another architecture"),
            untouched=(search_run, other_run), absent=(out,))


def test_a_truncated_checkpoint(search_run, odd_input, tmp_path):
    run = copy_run(search_run, tmp_path / "R_truncated")
    best = run / "checkpoints/best.pt"
    data = best.read_bytes()
    best.write_bytes(data[: len(data) // 2])
    out = tmp_path / "never"
    for args in (("prune", run), ("evaluate", run, "--device", "cpu"),
                 ("infer", best, odd_input, "--out", out, "--device", "cpu")):
        refused(*args, names=(best, "truncated"), untouched=(run,), absent=(out,))


def test_a_checkpoint_with_corrupted_weights(search_run, odd_input, tmp_path):
    """Bytes changed inside the tensor data load without any error from torch; the checksum catches it."""
    run = copy_run(search_run, tmp_path / "R_corrupt")
    best = run / "checkpoints/best.pt"
    data = torch.load(best, weights_only=True)
    name = next(k for k, v in data["model"].items() if v.is_floating_point() and v.numel() > 1)
    data["model"][name].view(-1)[0] += 1.0  # one weight changed, the stored digest kept
    torch.save(data, best)
    out = tmp_path / "never"
    for args in (("evaluate", run, "--device", "cpu"), ("infer", best, odd_input, "--out", out, "--device", "cpu")):
        refused(*args, names=(best, "checksum"), untouched=(run,), absent=(out,))


class _Payload:
    """Unpickling this would create ``marker``: a checkpoint loader must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["random_bytes", "pickle", "torch_save_object", "torch_save_plain_dict",
                                  "empty"])
def test_a_file_that_is_not_a_checkpoint(search_run, odd_input, kind, tmp_path):
    run = copy_run(search_run, tmp_path / "R")
    marker = tmp_path / "unpickled"
    best = run / "checkpoints/best.pt"
    if kind == "random_bytes":
        best.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "pickle":
        best.write_bytes(pickle.dumps({"format": "sparseconn-checkpoint", "model": _Payload(marker)}))
    elif kind == "torch_save_object":
        buf = io.BytesIO()
        torch.save({"format": "sparseconn-checkpoint", "version": 1, "model": _Payload(marker)}, buf)
        best.write_bytes(buf.getvalue())
    elif kind == "torch_save_plain_dict":
        torch.save({"weights": torch.zeros(3)}, best)
    else:
        best.write_bytes(b"")
    assert not marker.exists()
    out = tmp_path / "never"
    for args in (("prune", run), ("evaluate", run, "--device", "cpu"),
                 ("infer", best, odd_input, "--out", out, "--device", "cpu")):
        refused(*args, names=(best,), untouched=(run,), absent=(out, marker))


# -- code rule ---------------------------------------------------------------------------------------------

# -- output paths: never written over, never a traceback -------------------------------------------------

def test_an_out_path_under_a_file_or_onto_a_folder_is_one_line_before_any_work(config, search_run, train_run,
                                                                               tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    empty = tmp_path / "emptydir"
    empty.mkdir()
    fast = ("--fast-dev-run", "--device", "cpu", "--quiet")
    refused("search", config, "--out", afile, *fast, names=(afile, "is a file"))
    refused("search", config, "--out", afile / "run", *fast, names=(afile, "is a file"))
    refused("pipeline", config, "--out", afile, *fast, names=(afile, "is a file"))
    refused("draw", search_run, "--out", afile, names=(afile, "is a file"), untouched=(search_run,))
    refused("prune", search_run, "--out", empty, names=(empty, "is a folder"), untouched=(search_run,))
    refused("export", train_run, "--format", "torchscript", "--out", empty, names=(empty, "is a folder"),
            untouched=(train_run,))
    assert afile.read_text() == "keep me" and list(empty.iterdir()) == []


def test_a_read_only_out_folder_is_one_line_before_any_work(config, search_run, train_run, odd_input, tmp_path,
                                                            monkeypatch):
    """A folder the process may not write into (as a user who does not own it; the tests run as anyone,
    so the permission check is made to say no for it) stops every writing command before its work."""
    from sparseconn import fileio

    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(fileio, "_writable", lambda folder: Path(folder).resolve() != ro.resolve())
    commands = [("search", config, "--fast-dev-run", "--device", "cpu", "--out", ro / "run"),
                ("infer", train_run, odd_input, "--device", "cpu", "--out", ro / "pred"),
                ("infer", train_run, odd_input, "--device", "cpu", "--out", ro),
                ("export", train_run, "--format", "torchscript", "--out", ro / "m.pt"),
                ("draw", search_run, "--out", ro / "figures"),
                ("prune", search_run, "--out", ro / "architecture.json")]
    for args in commands:
        refused(*args, names=("cannot write", ro, "Permission denied"), untouched=(search_run, train_run))
    assert list(ro.iterdir()) == []


def test_prune_out_refuses_an_existing_file_unless_forced(search_run, tmp_path):
    target = tmp_path / "mine.json"
    target.write_text("{}")
    refused("prune", search_run, "--out", target, names=(target, "already exists", "--force"),
            untouched=(search_run,))
    assert target.read_text() == "{}"
    ok("prune", search_run, "--out", target, "--force")
    assert Architecture.load(target).connections


def test_export_refuses_an_existing_file_unless_forced_and_its_own_checkpoint_always(train_run, tmp_path):
    run = copy_run(train_run, tmp_path / "R")
    best = run / "checkpoints" / "best.pt"
    refused("export", run, "--format", "torchscript", "--out", best, names=(best, "already exists", "--force"),
            untouched=(run,))
    refused("export", run, "--format", "torchscript", "--out", best, "--force", names=(best, "checkpoint"),
            untouched=(run,))
    # the default file is where the help says it is, and a second export does not replace it silently
    assert "model.torchscript.pt" in cli("export", "--help").output
    ok("export", run, "--format", "torchscript", "--size", "32", "32")
    exported = run / "model.torchscript.pt"
    first = exported.stat().st_ino
    refused("export", run, "--format", "torchscript", "--size", "32", "32", names=(exported, "--force"),
            untouched=(run,))
    ok("export", run, "--format", "torchscript", "--size", "32", "32", "--force")
    assert exported.stat().st_ino != first  # replaced (atomically: a new file renamed over the old)


def test_every_torch_load_is_weights_only():
    """``torch.load`` anywhere in the package passes ``weights_only=True`` (no pickled code is run)."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert "from torch import load" not in source, path
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                ok_kw = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                assert ok_kw, f"{path}:{node.lineno} calls torch.load without weights_only=True"
                calls.append(f"{path.name}:{node.lineno}")
    assert calls  # the checker did find the checkpoint loaders
