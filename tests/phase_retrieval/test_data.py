"""Folder data sets, image reading, bad inputs, augmentation, synthetic writers and padding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from sparseconn_tasks.phase_retrieval.classical import find_sideband, retrieve_phase
from sparseconn_tasks.phase_retrieval.data import (
    PhaseFolderDataset,
    SyntheticPhaseDataset,
    dihedral_transforms,
)
from sparseconn_tasks.phase_retrieval.imageio_ import read_image
from sparseconn_tasks.phase_retrieval.prepare import make_ground_truth, write_synthetic
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate

from sparseconn.engine.inference import pad_to_multiple
from sparseconn.errors import DataError


def tiny_cfg() -> SimConfig:
    return SimConfig(size=64, n_cells=(1, 2), semi_axis=(8.0, 14.0), carrier_period=3.0,
                     tilt=0.5, defocus=0.5, astigmatism=0.3, coma=0.2, full_well=(10000.0, 30000.0))


def ramp(h: int = 24, w: int = 32) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) / (h * w - 1)).astype(np.float64)  # [0, 1]


@pytest.fixture
def mixed_root(tmp_path: Path) -> Path:
    """Four pairs, one per format: 8-bit PNG, 16-bit PNG, float TIFF, NPY."""
    holo, phase = tmp_path / "interferograms", tmp_path / "phases"
    holo.mkdir()
    phase.mkdir()
    r = ramp()
    Image.fromarray(np.round(r * 255).astype(np.uint8)).save(holo / "a8.png")
    Image.fromarray(np.round(r * 65535).astype(np.uint16)).save(holo / "b16.png")
    tifffile.imwrite(holo / "c32.tif", r.astype(np.float32))
    np.save(holo / "d.npy", r.astype(np.float32))
    for name in ("a8", "b16", "c32", "d"):
        tifffile.imwrite(phase / f"{name}.tif", (6.0 * r).astype(np.float32))  # 0..6 rad
    return tmp_path


def test_mixed_bit_depths_load(mixed_root: Path) -> None:
    ds = PhaseFolderDataset(mixed_root, "all", phase_range=12.0)
    assert ds.names == ["a8", "b16", "c32", "d"]
    for k in range(len(ds)):
        item = ds[k]
        assert item["input"].shape == (1, 24, 32) and item["input"].dtype == torch.float32
        np.testing.assert_allclose(item["input"][0].numpy(), ramp(), atol=1 / 255 / 2 + 1e-6)
        np.testing.assert_allclose(item["target"][0].numpy(), ramp() / 2, atol=1e-6)  # 6 rad / 12


def test_default_and_file_splits(mixed_root: Path) -> None:
    sizes = [len(PhaseFolderDataset(mixed_root, s)) for s in ("train", "val", "test")]
    assert sizes == [2, 1, 1]  # 80/10/10 of 4 sorted names, val and test keep one each
    (mixed_root / "splits").mkdir()
    (mixed_root / "splits" / "train.txt").write_text("d\n# a comment\nb16.png\n\n")
    assert PhaseFolderDataset(mixed_root, "train").names == ["d", "b16"]
    with pytest.raises(DataError, match=r"val\.txt: split file not found"):
        PhaseFolderDataset(mixed_root, "val")
    (mixed_root / "splits" / "test.txt").write_text("nope\n")
    with pytest.raises(DataError, match=r"test\.txt: 'nope' has no interferogram"):
        PhaseFolderDataset(mixed_root, "test")


def test_meta_phase_range(mixed_root: Path) -> None:
    (mixed_root / "meta.json").write_text(json.dumps({"phase_range": 6.0}))
    ds = PhaseFolderDataset(mixed_root, "all")
    assert ds.phase_range == 6.0
    np.testing.assert_allclose(ds[0]["target"][0].numpy(), ramp(), atol=1e-6)


def test_a_phase_map_above_the_range_is_refused_when_read(mixed_root: Path) -> None:
    """The target is clipped to the range: a map that goes past it (no meta.json, the 12 rad default) would
    train a network that tops out below the sample. One line naming the map, its largest phase and the fix;
    a few outlier pixels (unwrapping errors) pass."""
    tall = (20.0 * ramp()).astype(np.float32)  # 0..20 rad: 40% above 12
    tifffile.imwrite(mixed_root / "phases" / "d.tif", tall)
    ds = PhaseFolderDataset(mixed_root, "all")
    assert ds[0]["target"].shape == (1, 24, 32)  # the others load
    pattern = (r"^.*d\.tif: 40% of the phase map is above the phase range 12 rad \(the default: .*meta\.json sets "
               r"none; its largest phase is 20 rad\); set task\.phase_range or meta\.json's \"phase_range\" to at "
               r"least that$")
    with pytest.raises(DataError, match=pattern):
        ds[3]
    with pytest.raises(DataError, match=r"above the phase range 8 rad \(as set;"):
        PhaseFolderDataset(mixed_root, "all", phase_range=8.0)[3]
    (mixed_root / "meta.json").write_text(json.dumps({"phase_range": 20.0}))
    assert float(PhaseFolderDataset(mixed_root, "all")[3]["target"].max()) == pytest.approx(1.0)
    (mixed_root / "meta.json").write_text(json.dumps({"phase_range": 19.0}))
    with pytest.raises(DataError, match=r"range 19 rad \(from .*meta\.json;"):
        PhaseFolderDataset(mixed_root, "all")[3]
    outlier = np.zeros((24, 32), np.float32)
    outlier[3, 4] = 50.0  # one outlier pixel in 32 000 passes (its target is clipped)
    tifffile.imwrite(mixed_root / "phases" / "d.tif", np.pad(outlier, ((0, 1000 - 24), (0, 0))))
    np.save(mixed_root / "interferograms" / "d.npy", np.pad(ramp(), ((0, 1000 - 24), (0, 0))).astype(np.float32))
    assert float(PhaseFolderDataset(mixed_root, "all")[3]["target"].max()) == 1.0


def write_bad(path: Path, kind: str) -> None:
    if kind == "nan":
        tifffile.imwrite(path, np.array([[0.0, np.nan], [np.inf, 1.0]], np.float32))
    elif kind == "rgb_png":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    elif kind == "palette_png":
        rgb = np.zeros((8, 8, 3), np.uint8)
        rgb[:4, :, 0] = 255  # red top half
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    elif kind == "rgba_png":
        Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(path)
    elif kind == "rgb_tif":
        tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8))
    elif kind == "stack_npy":
        np.save(path, np.zeros((2, 8, 8), np.float32))
    elif kind == "corrupt":
        path.write_bytes(b"definitely not an image")
    elif kind == "pickle_npy":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize(("kind", "suffix", "pattern"), [
    ("nan", ".tif", "2 NaN or inf values"),
    ("rgb_png", ".png", "3 channels"),
    ("rgba_png", ".png", "alpha channel"),
    ("palette_png", ".png", "colour palette PNG"),
    ("rgb_tif", ".tif", "colour image"),
    ("stack_npy", ".npy", "expected a single 2-D image"),
    ("corrupt", ".tif", "cannot read the file"),
    ("corrupt", ".png", "cannot read the file"),
    ("corrupt", ".npy", "cannot read the file"),
    ("pickle_npy", ".npy", "cannot read the file"),
])
def test_bad_image_names_the_file(tmp_path: Path, kind: str, suffix: str, pattern: str) -> None:
    path = tmp_path / f"bad{suffix}"
    write_bad(path, kind)
    with pytest.raises(DataError, match=pattern) as err:
        read_image(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg


def test_grey_palette_and_bilevel_png(tmp_path: Path) -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey).convert("P").save(tmp_path / "p.png")
    np.testing.assert_allclose(read_image(tmp_path / "p.png"), grey / 255.0, atol=1e-6)
    Image.fromarray(grey > 100).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png"), (grey > 100).astype(np.float32))


def test_missing_unsupported_and_integer_phase(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.tif: file not found"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.jpg: unsupported file type '\.jpg'"):
        read_image(tmp_path / "x.jpg")
    np.save(tmp_path / "p.npy", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"p\.npy: phase maps must be floating-point"):
        read_image(tmp_path / "p.npy", integer_ok=False)


def test_folder_errors(mixed_root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "interferograms").mkdir(parents=True)
    with pytest.raises(DataError, match=rf"{empty / 'interferograms'}: no .* images \(it is empty\)"):
        PhaseFolderDataset(empty, "all")
    (mixed_root / "phases" / "d.tif").unlink()
    with pytest.raises(DataError, match=r"d\.tif: phase map not found for interferogram .*d\.npy"):
        PhaseFolderDataset(mixed_root, "all")
    tifffile.imwrite(mixed_root / "phases" / "d.tif", np.zeros((10, 10), np.float32))
    with pytest.raises(DataError, match=r"d\.npy: size 32x24 differs from .*d\.tif \(10x10\)"):
        PhaseFolderDataset(mixed_root, "all")  # found from the headers, before any training
    np.save(mixed_root / "interferograms" / "c32.npy", ramp())
    with pytest.raises(DataError, match=r"c32\.(npy|tif): ambiguous, c32\.(npy|tif) has the same name"):
        PhaseFolderDataset(mixed_root, "all")


def test_augmentation_reproducible_and_paired(tmp_path: Path) -> None:
    (tmp_path / "interferograms").mkdir()
    (tmp_path / "phases").mkdir()
    rng = np.random.default_rng(0)
    img = rng.random((40, 48)).astype(np.float32)
    tifffile.imwrite(tmp_path / "interferograms" / "x.tif", img)
    tifffile.imwrite(tmp_path / "phases" / "x.tif", 12.0 * img)  # target == input before clipping
    ds = PhaseFolderDataset(tmp_path, "all", crop=32, augment=True, symmetries="all", seed=3)
    seen = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        a, b = ds[0], ds[0]
        assert torch.equal(a["input"], b["input"])  # same (seed, epoch, index) -> same item
        assert a["input"].shape == (1, 32, 32)
        assert torch.allclose(a["input"], a["target"])  # identical transforms on both
        seen.add(a["input"].numpy().tobytes())
    assert len(seen) > 4
    centre = PhaseFolderDataset(tmp_path, "all", crop=(16, 32))[0]["input"][0].numpy()
    np.testing.assert_array_equal(centre, img[12:28, 8:40])
    with pytest.raises(DataError, match=r"x\.tif: image 48x40 is smaller than the crop 64x64"):
        PhaseFolderDataset(tmp_path, "all", crop=64)[0]


def transform(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k)
    return a[:, ::-1] if flip else a


@pytest.mark.parametrize("angle", [45.0, 30.0, 90.0])
def test_symmetries_keep_the_physics(angle: float) -> None:
    """The classical pipeline (fx > 0 convention) reads +φ exactly on the "half_plane" transforms."""
    cfg = SimConfig(size=64, n_cells=(1, 2), semi_axis=(8.0, 14.0), carrier_period=3.0, carrier_angle=angle,
                    tilt=0.5, defocus=0.5, astigmatism=0.3, coma=0.2, carrier_jitter=(0.0, 0.0))
    s = simulate(cfg, np.random.default_rng(0))
    half = dihedral_transforms("half_plane", cfg.carrier)
    same = dihedral_transforms("carrier", cfg.carrier)
    assert len(dihedral_transforms("all")) == 8 and len(half) == 4 and (0, False) in same
    for k, flip in dihedral_transforms("all"):
        holo, bg, truth = (transform(a, k, flip) for a in (s.hologram, s.background, s.phase))
        phase = retrieve_phase(holo, bg, sideband="+")  # "auto" reads +φ on all eight
        sign = 1.0 if (k, flip) in half else -1.0
        assert np.sqrt(np.mean((sign * phase - truth) ** 2)) < 0.1, (k, flip)
        if (k, flip) in same:
            assert find_sideband(holo) == pytest.approx(find_sideband(s.hologram))


def test_symmetries_from_meta_and_errors(tmp_path: Path) -> None:
    out = write_synthetic(tmp_path / "syn", 2, tiny_cfg())
    ds = PhaseFolderDataset(out, "all", augment=True, symmetries="carrier")
    assert sorted(ds.transforms) == [(0, False), (3, True)]  # 45°: identity and the transpose
    with pytest.raises(ValueError, match="unknown symmetries 'mirror'; available: all, carrier, half_plane, none"):
        PhaseFolderDataset(out, "all", augment=True, symmetries="mirror")


def test_synthetic_dataset_and_writer_agree(tmp_path: Path) -> None:
    cfg = tiny_cfg()
    ds = SyntheticPhaseDataset(cfg, length=5, seed=4)
    again = SyntheticPhaseDataset(cfg, length=5, seed=4)
    assert torch.equal(ds[2]["input"], again[2]["input"]) and not torch.equal(ds[2]["input"], ds[3]["input"])
    calls: list[int] = []
    out = write_synthetic(tmp_path / "syn", 5, cfg, seed=4, progress=calls.append)
    assert calls == [1, 2, 3, 4, 5]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["phase_range"] == 12.0 and meta["simulator"]["size"] == 64
    assert (out / "splits" / "train.txt").read_text().split() == ["sim_00000", "sim_00001", "sim_00002"]
    folder = PhaseFolderDataset(out, "all")
    for k in range(5):
        assert torch.equal(folder[k]["input"], ds[k]["input"])
        assert torch.allclose(folder[k]["target"], ds[k]["target"])
    assert len(list((out / "backgrounds").iterdir())) == 5
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind


def test_a_folder_refuses_holograms_without_fringes(mixed_root: Path) -> None:
    """Like infer and data truth: a hologram under 8x8 px is refused when the data set is made (its header
    tells), a constant one when it is read; one line naming the file either way."""
    holo, phase = mixed_root / "interferograms", mixed_root / "phases"
    np.save(holo / "k.npy", np.full((24, 32), 0.25, np.float32))
    tifffile.imwrite(phase / "k.tif", np.zeros((24, 32), np.float32))
    ds = PhaseFolderDataset(mixed_root, "all")
    assert ds.names[-1] == "k" and ds[0]["input"].shape == (1, 24, 32)  # the others load
    with pytest.raises(DataError, match=r"^.*k\.npy: is constant \(0\.25 everywhere\): no fringes to demodulate$"):
        ds[len(ds) - 1]
    np.save(holo / "t.npy", np.random.default_rng(0).random((3, 5), np.float32))
    tifffile.imwrite(phase / "t.tif", np.zeros((3, 5), np.float32))
    with pytest.raises(DataError, match=r"t\.npy: is 3x5 px \(H x W\); expected a hologram of at least 8x8$"):
        PhaseFolderDataset(mixed_root, "all")


def test_make_ground_truth(tmp_path: Path) -> None:
    cfg = tiny_cfg()
    syn = write_synthetic(tmp_path / "syn", 3, cfg, seed=1)
    raw = tmp_path / "raw"
    (raw / "interferograms").mkdir(parents=True)
    (raw / "backgrounds").mkdir()
    for k in range(3):
        name = f"sim_{k:05d}"
        holo = tifffile.imread(syn / "interferograms" / f"{name}.tif")
        Image.fromarray(np.round(holo * 65535).astype(np.uint16)).save(raw / "interferograms" / f"{name}.png")
        (raw / "backgrounds" / f"{name}.tif").write_bytes((syn / "backgrounds" / f"{name}.tif").read_bytes())
    out = make_ground_truth(raw, tmp_path / "gt")
    meta = json.loads((out / "meta.json").read_text())
    peaks = []
    for k in range(3):
        name = f"sim_{k:05d}"
        phase = tifffile.imread(out / "phases" / f"{name}.tif")
        truth = tifffile.imread(syn / "phases" / f"{name}.tif")
        assert phase.min() == 0.0
        assert np.sqrt(np.mean((phase - truth) ** 2)) < 0.1
        assert (out / "interferograms" / f"{name}.png").read_bytes() == \
            (raw / "interferograms" / f"{name}.png").read_bytes()
        peaks.append(phase.max())
    assert meta["phase_range"] == float(np.ceil(max(peaks)))
    assert len(PhaseFolderDataset(out, "all")) == 3


def test_make_ground_truth_failing_part_way_leaves_no_stale_meta(tmp_path: Path, monkeypatch) -> None:
    """A frame the pipeline fails on (after the inputs were checked): the earlier meta.json, which would
    describe maps already replaced, is gone; a folder with meta.json stays a complete one."""
    from sparseconn_tasks.phase_retrieval import prepare

    syn = write_synthetic(tmp_path / "syn", 3, tiny_cfg(), seed=1)
    make_ground_truth(syn, tmp_path / "gt")
    assert (tmp_path / "gt" / "meta.json").is_file()
    made = prepare.ground_truth_info
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise DataError("the pipeline failed on frame 2")
        return made(*args, **kwargs)

    monkeypatch.setattr(prepare, "ground_truth_info", failing)
    with pytest.raises(DataError, match="frame 2"):
        make_ground_truth(syn, tmp_path / "gt")
    assert not (tmp_path / "gt" / "meta.json").exists()


def test_make_ground_truth_size_mismatch(tmp_path: Path) -> None:
    (tmp_path / "interferograms").mkdir()
    (tmp_path / "backgrounds").mkdir()
    # (a hologram that is not constant: a constant one is refused before its background is read)
    tifffile.imwrite(tmp_path / "interferograms" / "a.tif", np.random.default_rng(0).random((32, 32), np.float32))
    tifffile.imwrite(tmp_path / "backgrounds" / "background.tif", np.zeros((16, 16), np.float32))
    with pytest.raises(DataError, match=r"a\.tif: size 32x32 differs from .*background\.tif \(16x16\)"):
        make_ground_truth(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("shape", [(1, 1, 250, 333), (2, 3, 40, 7)])
def test_pad_crop_round_trip(shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)
    padded, (h, w) = pad_to_multiple(x, 32)
    assert (h, w) == shape[-2:]
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert padded.shape[:-2] == x.shape[:-2]
    assert torch.equal(padded[..., :h, :w], x)
    if shape[-2:] == (250, 333):
        assert padded.shape[-2:] == (256, 352)
        assert torch.equal(padded[..., 250, :333], x[..., 248, :])  # reflect: row 250 mirrors row 248
