"""Pretrained encoder weights: a local file, ``imagenet`` and URLs through torch.hub's cache (hash-checked),
read at the first construction only (a checkpoint rebuilds without the file). No test touches the network:
URLs are ``file://`` ones, and ``imagenet``'s download is replaced by a local copy."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import torch.hub

from sparseconn.encoders import IMAGENET_URL, MobileNetV2, pretrained_file, skip_pretrained
from sparseconn.engine.config import load_run_config
from sparseconn.engine.jobs import RunOptions, prune, search, train
from sparseconn.engine.loading import load_model
from sparseconn.errors import CheckpointError, SparseconnError
from tests.clitools import cli, one_line_error
from tests.toy_task import write_toy_config

WIDTH = 0.35


def fake_weights(folder: Path, stem: str = "mobilenet_v2", *, hashed: bool = True, seed: int = 1) -> Path:
    """A torchvision-layout state dict of a randomly initialised encoder, named ``STEM-<sha256[:8]>.pth``
    as torchvision names its files (or ``STEM.pth``)."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "weights.tmp"
    torch.save(MobileNetV2(in_channels=3, width=WIDTH).state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / (f"{stem}-{digest[:8]}.pth" if hashed else f"{stem}.pth")
    tmp.rename(path)
    return path


def loaded_from(enc: torch.nn.Module, path: Path) -> bool:
    saved = torch.load(path, weights_only=True)
    return all(torch.equal(v, saved[k]) for k, v in enc.state_dict().items())


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("TORCH_HUB", raising=False)
    return home


def test_local_file(tmp_path) -> None:
    path = fake_weights(tmp_path / "w", hashed=False)
    assert loaded_from(MobileNetV2(in_channels=3, width=WIDTH, pretrained=str(path)), path)
    assert pretrained_file(path) == path  # a path is used where it is, never copied


def test_file_url_is_cached_under_torch_home(tmp_path, torch_home) -> None:
    path = fake_weights(tmp_path / "served")
    enc = MobileNetV2(in_channels=3, width=WIDTH, pretrained=path.as_uri())
    cached = torch_home / "hub" / "checkpoints" / path.name
    assert cached.is_file() and loaded_from(enc, path)
    assert [p.name for p in cached.parent.iterdir()] == [path.name]  # no partial file left behind
    path.unlink()  # the cache serves the next construction
    assert loaded_from(MobileNetV2(in_channels=3, width=WIDTH, pretrained=path.as_uri()), cached)


def test_url_without_hash_in_its_name_is_not_checked(tmp_path, torch_home) -> None:
    path = fake_weights(tmp_path / "served", "plain", hashed=False)
    enc = MobileNetV2(in_channels=3, width=WIDTH, pretrained=path.as_uri())
    assert loaded_from(enc, path) and (torch_home / "hub" / "checkpoints" / "plain.pth").is_file()


def test_hash_mismatch_is_one_line_and_caches_nothing(tmp_path, torch_home) -> None:
    good = fake_weights(tmp_path / "served")
    bad = good.with_name("mobilenet_v2-0123abcd.pth")
    shutil.copy(good, bad)
    with pytest.raises(CheckpointError) as err:
        MobileNetV2(in_channels=3, width=WIDTH, pretrained=bad.as_uri())
    msg = str(err.value)
    assert "\n" not in msg and "mobilenet_v2 pretrained" in msg and bad.as_uri() in msg
    assert "expected 0123abcd" in msg and f"SHA-256 {good.name[13:21]}" in msg
    assert not any((torch_home / "hub" / "checkpoints").iterdir())


def test_imagenet_downloads_torchvision_weights_into_the_cache(tmp_path, torch_home, monkeypatch) -> None:
    served = fake_weights(tmp_path / "served")
    urls = []

    def fake_download(url: str, dst: str, *args, **kwargs) -> None:  # what torch.hub would fetch, offline
        urls.append(url)
        shutil.copy(served, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(CheckpointError, match=r"^mobilenet_v2 pretrained 'imagenet': the file downloaded has "
                                              r"SHA-256 [0-9a-f]{8}\.\.\., expected b0353104\.\.\."):
        MobileNetV2(in_channels=3, width=WIDTH, pretrained="imagenet")  # our fake is not torchvision's file
    assert IMAGENET_URL == "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"  # IMAGENET1K_V1
    assert urls == [IMAGENET_URL]
    assert not any((torch_home / "hub" / "checkpoints").iterdir())


def test_imagenet_reads_a_cached_file_without_downloading(tmp_path, torch_home, monkeypatch) -> None:
    served = fake_weights(tmp_path / "served")
    prefix = served.name[13:21]
    monkeypatch.setattr("sparseconn.encoders.mobilenetv2.PRETRAINED_ALIASES",
                        {"imagenet": f"https://download.pytorch.org/models/mobilenet_v2-{prefix}.pth"})

    def no_download(*args, **kwargs) -> None:
        raise AssertionError("the cached file should have been used")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(served, cache / served.name)
    assert loaded_from(MobileNetV2(in_channels=3, width=WIDTH, pretrained="imagenet"), served)
    (cache / served.name).write_bytes(b"corrupted")
    with pytest.raises(CheckpointError, match="cached at .* \\(delete it to download again\\)"):
        MobileNetV2(in_channels=3, width=WIDTH, pretrained="imagenet")


@pytest.mark.parametrize("value, match", [
    ("ftp://host/mobilenet_v2.pth", "has scheme 'ftp'; expected 'imagenet', a local file path, or an https://"),
    ("https://host/", "names no file"),
    (3, "mobilenet_v2 pretrained is 3; expected 'imagenet'"),
    ("", "mobilenet_v2 pretrained is ''; expected"),
])
def test_bad_values_are_refused_before_anything_is_built(value, match) -> None:
    with pytest.raises(SparseconnError, match=match):
        MobileNetV2.feature_info(1, WIDTH, value)
    with pytest.raises(SparseconnError, match=match):
        MobileNetV2(in_channels=1, width=WIDTH, pretrained=value)


def test_missing_file_and_unreachable_url(tmp_path, torch_home) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(CheckpointError, match=f"^mobilenet_v2 pretrained '{missing}' is not a file; expected"):
        MobileNetV2(in_channels=1, width=WIDTH, pretrained=str(missing))
    with pytest.raises(CheckpointError, match="^mobilenet_v2 pretrained 'file:.*': cannot download") as err:
        MobileNetV2(in_channels=1, width=WIDTH, pretrained=missing.as_uri())
    assert "\n" not in str(err.value)
    with skip_pretrained():  # not read at all
        MobileNetV2(in_channels=1, width=WIDTH, pretrained=str(missing))


def test_wrong_layout_names_the_encoder_and_value(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv_stem.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=f"^mobilenet_v2 pretrained '{path}': checkpoint .* expected torch"):
        MobileNetV2(in_channels=1, width=WIDTH, pretrained=str(path))


def test_checkpoints_rebuild_without_the_pretrained_file(tmp_path) -> None:
    """Search (interrupted, then resumed), prune, retrain with inherited weights and load: after the first
    construction the pretrained file is gone, and nothing else needs it."""
    weights = fake_weights(tmp_path / "w", hashed=False)
    cfg = load_run_config(write_toy_config(tmp_path), [
        "task.train_size=4", "task.val_size=2", "search.epochs=2", "train.epochs=1",
        "space.encoder.name=mobilenet_v2", "space.encoder.features=[0, 1, 2]",
        f"space.encoder.params={{width: {WIDTH}, pretrained: '{weights}'}}",
    ])
    run = tmp_path / "run"

    def stop(epoch: int, record: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(cfg, run, RunOptions(progress=False, callbacks=(stop,)))
    weights.unlink()
    with pytest.raises(CheckpointError, match="mobilenet_v2 pretrained"):  # a first construction needs it
        search(cfg, tmp_path / "fresh", RunOptions(progress=False))
    search(cfg, run, RunOptions(progress=False, resume=True))
    arch = prune(run)
    assert load_model(run).kind == "supernet"
    train(cfg, arch, tmp_path / "child", RunOptions(progress=False), inherit_from=run / "checkpoints/best.pt")
    lm = load_model(tmp_path / "child")
    assert lm.kind == "child" and lm.net.encoder.out_channels[:3] == [16, 8, 8]


def test_train_gives_the_child_the_run_configs_starting_weights(tmp_path) -> None:
    """An architecture fixes the structure; the run config's ``pretrained`` says where the encoder starts
    (as ``train segmentation_voc.yaml --arch segmentation_voc_child.json`` relies on), with a warning."""
    from sparseconn.engine.jobs import starting_weights
    from sparseconn.network import build_child
    from sparseconn.sampling import random_architecture
    from sparseconn.space import SearchSpace

    weights = fake_weights(tmp_path / "w", hashed=False)
    enc = ["space.encoder.name=mobilenet_v2", "space.encoder.features=[0, 1, 2]"]
    bare = load_run_config(write_toy_config(tmp_path), [*enc, f"space.encoder.params={{width: {WIDTH}}}"])
    named = load_run_config(write_toy_config(tmp_path),
                            [*enc, f"space.encoder.params={{width: {WIDTH}, pretrained: '{weights}'}}"])
    arch = random_architecture(SearchSpace(bare.space), 3, seed=0)  # its encoder names no weights
    assert starting_weights(bare, arch) is arch  # nothing differs: the file as it is
    with pytest.warns(UserWarning, match=r"pretrained is '.*mobilenet_v2.pth' in the run config and None"):
        started = starting_weights(named, arch)
    assert started.space.encoder.params == {"width": WIDTH, "pretrained": str(weights)}
    assert started.connections == arch.connections and "pretrained" not in arch.space.encoder.params
    saved, child_enc = torch.load(weights, weights_only=True), build_child(started).encoder.state_dict()
    deeper = [k for k in child_enc if not k.startswith("features.0.")]  # the first conv takes 1 channel here
    assert deeper and all(torch.equal(child_enc[k], saved[k]) for k in deeper)
    assert not torch.equal(build_child(arch).encoder.state_dict()[deeper[0]], saved[deeper[0]])
    with pytest.warns(UserWarning, match=r"pretrained is None in the run config"):
        assert "pretrained" not in starting_weights(bare, started).space.encoder.params


@pytest.mark.filterwarnings("ignore:space.encoder.params.pretrained")
@pytest.mark.parametrize("command", ["search", "train"])
def test_a_missing_data_folder_fails_before_the_weights_download(command, tmp_path, torch_home, monkeypatch) -> None:
    """The data are checked before the network is built: a mistyped data root is a one-line error at once,
    not after fetching ImageNet weights (which may not be reachable either)."""
    def no_download(*args, **kwargs) -> None:
        raise AssertionError("the weights were fetched before the data were checked")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    root = tmp_path / "no_voc"
    config = Path(__file__).resolve().parents[1] / "tasks" / "segmentation_voc.yaml"
    extra = ["--arch", config.with_name("segmentation_voc_child.json")] if command == "train" else []
    result = cli(command, config, *extra, "--out", tmp_path / "run", "--device", "cpu",
                 "--set", f"task.data.root={root}")
    one_line_error(result, root, "no such folder")
    assert not (tmp_path / "run").exists()
