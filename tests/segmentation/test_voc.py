"""PASCAL VOC and SBD on tiny trees written here (labels, augmentation, train_aug, bad trees, the CLI), and the
shipped SparseMask VOC child (tasks/segmentation_voc_child.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from sparseconn_tasks.segmentation.data import IGNORE, MEAN, STD, voc_palette
from sparseconn_tasks.segmentation.task import SegmentationConfig, SegmentationTask
from sparseconn_tasks.segmentation.voc import (
    VOCSegmentationDataset,
    augment,
    read_label,
    train_split,
    voc_samples,
)

from sparseconn.architecture import Architecture
from sparseconn.config import validate
from sparseconn.errors import ConfigError, DataError
from sparseconn.network import build_child
from tests.clitools import cli, ok, one_line_error

ROOT = Path(__file__).resolve().parents[2]
VOC_CONFIG = ROOT / "tasks" / "segmentation_voc.yaml"
CHILD = ROOT / "tasks" / "segmentation_voc_child.json"
K = 4  # classes of the fake trees
COLOURS = np.array([[20, 20, 20], [230, 30, 30], [30, 230, 30], [30, 30, 230]], np.uint8)  # class c's RGB
SIZE = (40, 52)  # (H, W) of every fake image


# -- fake trees --------------------------------------------------------------------------------------------------
def scene(seed: int, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image of 8 px blocks coloured by class and its (H, W) label: the block's class, 255
    on every pixel whose 3x3 neighbourhood holds another class (so bilinear scaling never mixes classes
    under a scored pixel)."""
    h, w = size
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, K, (math.ceil(h / 8), math.ceil(w / 8)))
    label = np.kron(blocks, np.ones((8, 8), np.int64))[:h, :w]
    image = COLOURS[label]
    padded = np.pad(label, 1, mode="edge")
    mixed = np.zeros(label.shape, bool)
    for dy in range(3):
        for dx in range(3):
            mixed |= padded[dy:dy + h, dx:dx + w] != label
    return image, np.where(mixed, IGNORE, label)


def save_png_label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label.astype(np.uint8), mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    im.save(path)


def save_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95, subsampling=0)


def save_mat(path: Path, label: np.ndarray) -> None:
    """SBD's cls/NAME.mat: a struct GTcls with Segmentation (uint8 classes), Boundaries and CategoriesPresent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gt = {"Segmentation": label.astype(np.uint8), "Boundaries": np.empty((0, 1), object),
          "CategoriesPresent": np.unique(label).astype(np.uint8)}
    scipy.io.savemat(path, {"GTcls": gt})


def write_voc(root: Path, splits: dict[str, list[str]], seed: int = 0) -> Path:
    """VOC layout: JPEGImages/NAME.jpg, SegmentationClass/NAME.png (palette, 255 outlines), split files."""
    for split, names in splits.items():
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("\n".join(names) + "\n")
        for i, name in enumerate(names):
            image, label = scene(seed * 100 + i + 10 * len(split))
            save_jpeg(root / "JPEGImages" / f"{name}.jpg", image)
            save_png_label(root / "SegmentationClass" / f"{name}.png", label)
    return root


def write_sbd(root: Path, splits: dict[str, list[str]], fill: int = 1) -> Path:
    """SBD release layout: img/NAME.jpg, cls/NAME.mat (every pixel class ``fill``: told apart from VOC's
    labels), train.txt, val.txt."""
    root.mkdir(parents=True, exist_ok=True)
    for split, names in splits.items():
        (root / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            image, _ = scene(7)
            save_jpeg(root / "img" / f"{name}.jpg", image)
            save_mat(root / "cls" / f"{name}.mat", np.full(SIZE, fill, np.uint8))
    return root


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return write_voc(tmp_path / "VOC", {"train": ["a", "b", "c"], "val": ["d", "e"]})


def classify(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) normalised image -> (H, W) index of the nearest class colour."""
    centres = torch.from_numpy((COLOURS / 255.0 - MEAN) / STD).float()  # (K, 3)
    d = (x.permute(1, 2, 0)[..., None, :] - centres).norm(dim=-1)  # (H, W, K)
    return d.argmin(-1)


# -- labels ---------------------------------------------------------------------------------------------------
def test_palette_png_values_are_class_indices_and_255_is_kept_as_ignore(voc: Path) -> None:
    _, expect = scene(0 + 10 * len("train"))
    label = read_label(voc / "SegmentationClass" / "a.png", K)
    np.testing.assert_array_equal(label, expect)  # the pixel values, not the palette's colours
    assert label.dtype == np.int64 and set(np.unique(label)) <= {0, 1, 2, 3, IGNORE} and IGNORE in label
    item = VOCSegmentationDataset(voc, "val", num_classes=K)[0]
    assert item["input"].shape == (3, *SIZE) and item["target"].shape == SIZE  # val: full size, unaugmented
    scored = item["target"] != IGNORE
    assert torch.equal(classify(item["input"])[scored], item["target"][scored])
    task = SegmentationTask(SegmentationConfig(data={"source": "voc", "root": voc, "num_classes": K}))
    logits = torch.zeros(1, K, *SIZE)
    logits[0, 0] = 10.0  # "background" everywhere: wrong on the scored non-background pixels only
    wrong = (item["target"][None] != 0) & (item["target"][None] != IGNORE)
    cm = task.confusion(logits, {"target": item["target"][None]})
    assert int(cm.sum()) == int(scored.sum()) and int(cm[1:, 0].sum()) == int(wrong.sum())


def test_sbd_mat_labels_are_read_with_loadmat(tmp_path: Path) -> None:
    label = np.arange(6, dtype=np.uint8).reshape(2, 3) % 3
    save_mat(tmp_path / "x.mat", label)
    np.testing.assert_array_equal(read_label(tmp_path / "x.mat", K), label)


# -- augmentation ---------------------------------------------------------------------------------------------
def test_scale_and_crop_keep_image_and_label_aligned(voc: Path) -> None:
    ds = VOCSegmentationDataset(voc, "train", num_classes=K, crop=32, augment=True, scale=(0.5, 2.0), seed=3)
    scored_fraction, sizes = [], set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            x, y = item["input"], item["target"]
            assert x.shape == (3, 32, 32) and y.shape == (32, 32) and y.dtype == torch.int64
            scored = y != IGNORE
            assert torch.equal(classify(x)[scored], y[scored]), (epoch, i)
            scored_fraction.append(float(scored.float().mean()))
            sizes.add(int((x.abs().sum(0) == 0).sum()))  # padded pixels: differ with the drawn scale
    assert np.mean(scored_fraction) > 0.2 and len(sizes) > 2
    again = VOCSegmentationDataset(voc, "train", num_classes=K, crop=32, augment=True, scale=(0.5, 2.0), seed=3)
    again.set_epoch(3)
    assert torch.equal(again[1]["input"], ds[1]["input"])  # per (seed, epoch, index)
    again.set_epoch(2)
    assert not torch.equal(again[1]["input"], ds[1]["input"])


def test_unscaled_crops_and_flips_keep_every_pixel_aligned() -> None:
    image, _ = scene(4)
    dense = np.abs(image[..., None, :].astype(int) - COLOURS.astype(int)).sum(-1).argmin(-1)  # no 255 outlines
    x = ((image / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)
    for seed in range(10):
        for crop in (32, 48):  # inside the 40x52 image, and padded
            out, lab = augment(x, dense, np.random.default_rng(seed), scale=(1.0, 1.0), crop=crop, flip=True)
            scored = torch.from_numpy(lab != IGNORE)
            assert int(scored.sum()) >= 32 * 32 * 0.5
            assert torch.equal(classify(torch.from_numpy(out))[scored], torch.from_numpy(lab)[scored]), (seed, crop)


def test_scaling_is_bilinear_for_the_image_and_nearest_for_the_label() -> None:
    image, label = scene(5)
    x = ((image / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)
    big, big_label = augment(x, label, np.random.default_rng(0), scale=(2.0, 2.0))
    assert big.shape == (3, 80, 104) and big_label.shape == (80, 104)
    assert set(np.unique(big_label)) <= set(np.unique(label))  # nearest: no new values
    mid = big[:, 1::2, 1::2] - x  # bilinear at x2: odd outputs sit 1/4 px from a source centre
    assert float(np.abs(mid).max()) > 0.1  # blended at colour edges (nearest would copy)
    np.testing.assert_array_equal(big_label[::2, ::2], label)


def test_padding_is_mean_colour_and_255() -> None:
    image, label = scene(1)
    x = ((image / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)
    out, lab = augment(x, label, np.random.default_rng(0), scale=(0.5, 0.5), crop=48)  # 20x26 -> padded to 48
    assert out.shape == (3, 48, 48) and lab.shape == (48, 48)
    pad = np.ones((48, 48), bool)
    pad[:20, :26] = False
    assert (lab[pad] == IGNORE).all() and not (lab[~pad] == IGNORE).all()
    assert float(np.abs(out[:, pad]).max()) == 0.0  # 0 after normalisation = the ImageNet mean colour
    assert float(np.abs(out[:, ~pad]).min(initial=9)) < 9 and float(np.abs(out[:, ~pad]).max()) > 0.5


def test_flip_flips_image_and_label_together() -> None:
    image, label = scene(2)
    x = ((image / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)
    flipped = 0
    for seed in range(12):
        out, lab = augment(x, label, np.random.default_rng(seed), flip=True)
        if np.array_equal(lab, label):
            np.testing.assert_array_equal(out, x)
        else:
            np.testing.assert_array_equal(lab, label[:, ::-1])
            np.testing.assert_array_equal(out, x[:, :, ::-1])
            flipped += 1
    assert 0 < flipped < 12
    out, lab = augment(x, label, np.random.default_rng(0), flip=False)
    assert np.array_equal(out, x) and np.array_equal(lab, label)


def test_scale_must_be_a_range() -> None:
    for bad in ([2.0, 0.5], [0.0, 1.0], [-1.0, 2.0]):
        with pytest.raises(ConfigError, match=r"task\.data\.scale: .*0 < lo <= hi"):
            validate(SegmentationConfig, {"data": {"source": "voc", "root": "x", "scale": bad}}, "cfg.yaml", "task")
    assert SegmentationConfig(data={"source": "voc", "root": "x", "scale": [0.5, 2.0]}).data.scale == (0.5, 2.0)


# -- train_aug --------------------------------------------------------------------------------------------------
def test_train_aug_from_the_sbd_release_merges_sbd_and_excludes_voc_val(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "VOC", {"train": ["a", "b"], "val": ["c", "d"]})
    _, g_label = scene(99)
    save_png_label(root / "SegmentationClass" / "g.png", g_label)  # a VOC label outside the VOC splits
    save_jpeg(root / "JPEGImages" / "g.jpg", scene(99)[0])
    sbd = write_sbd(tmp_path / "SBD", {"train": ["b", "c", "e"], "val": ["f", "d", "g", "e"]}, fill=2)
    ds = VOCSegmentationDataset(root, "train_aug", num_classes=K, sbd_root=sbd)
    assert ds.names == ["a", "b", "e", "f", "g"]  # VOC train, then SBD train, SBD val; c and d are VOC val
    by_name = {s.name: s for s in ds.samples}
    assert by_name["b"].label == root / "SegmentationClass" / "b.png"  # VOC's label wins
    assert by_name["g"].label == root / "SegmentationClass" / "g.png"
    assert by_name["e"].label == sbd / "cls" / "e.mat" and by_name["e"].image == sbd / "img" / "e.jpg"
    items = {n: ds[i] for i, n in enumerate(ds.names)}
    assert bool((items["e"]["target"] == 2).all())  # from the .mat
    np.testing.assert_array_equal(items["b"]["target"].numpy(), read_label(root / "SegmentationClass" / "b.png", K))
    assert IGNORE in items["b"]["target"] and not bool((items["b"]["target"] == 2).all())


def test_train_aug_pre_converted_layout(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "VOC", {"train": ["a"], "val": ["c"]})
    for i, name in enumerate(["a", "c", "x", "y"]):
        image, _ = scene(50 + i)
        save_jpeg(root / "JPEGImages" / f"{name}.jpg", image)
        save_png_label(root / "SegmentationClassAug" / f"{name}.png", np.full(SIZE, 3, np.uint8))
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text(
        "/JPEGImages/a.jpg /SegmentationClassAug/a.png\nc\nx\n\ny\n")  # DeepLab's path pairs or bare names
    samples = voc_samples(root, "train_aug")
    assert [s.name for s in samples] == ["a", "x", "y"]  # c is in VOC val
    assert samples[0].label == root / "SegmentationClass" / "a.png"  # VOC's label wins
    assert samples[1].label == root / "SegmentationClassAug" / "x.png"
    assert bool((VOCSegmentationDataset(root, "train_aug", K)[1]["target"] == 3).all())


def test_auto_train_split_rule_and_the_task(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "VOC", {"train": ["a", "b"], "val": ["c"]})
    sbd = write_sbd(tmp_path / "SBD", {"train": ["e"], "val": ["f"]})
    assert train_split(root) == "train" and train_split(root, "train_aug") == "train_aug"
    assert train_split(root, sbd_root=sbd) == "train_aug" and train_split(root, "train", sbd) == "train"

    def task(**data) -> SegmentationTask:
        cfg = {"source": "voc", "root": str(root), "num_classes": K, "crop": 32, "scale": [0.5, 2.0], **data}
        return SegmentationTask(SegmentationConfig(data=cfg))

    assert len(task().datasets(0)["train"]) == 2
    sets = task(sbd_root=str(sbd)).datasets(0)
    assert sets["train"].names == ["a", "b", "e", "f"] and sets["train"][3]["input"].shape == (3, 32, 32)
    assert sets["val"].names == ["c"] and sets["val"][0]["input"].shape == (3, *SIZE)
    assert len(task(sbd_root=str(sbd), train_split="train").datasets(0)["train"]) == 2
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("a\nb\nc\n")
    save_png_label(root / "SegmentationClassAug" / "a.png", np.zeros(SIZE, np.uint8))
    save_png_label(root / "SegmentationClassAug" / "b.png", np.zeros(SIZE, np.uint8))
    assert train_split(root) == "train_aug" and task().datasets(0)["train"].names == ["a", "b"]


# -- bad trees ---------------------------------------------------------------------------------------------------
@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    root = write_voc(tmp_path / "VOC", {"train": ["a"], "val": ["c"]})
    sbd = write_sbd(tmp_path / "SBD", {"train": ["e"], "val": ["f"]})
    return root, sbd


BAD = {  # case -> (damage, file the message must name, fails at construction)
    "missing_voc_label": (lambda r, s: (r / "SegmentationClass" / "a.png").unlink(), "a.png", True),
    "missing_voc_image": (lambda r, s: (r / "JPEGImages" / "a.jpg").unlink(), "a.jpg", True),
    "missing_sbd_image": (lambda r, s: (s / "img" / "e.jpg").unlink(), "e.jpg", True),
    "missing_sbd_mat": (lambda r, s: (s / "cls" / "f.mat").unlink(), "f.mat", True),
    "missing_sbd_split": (lambda r, s: (s / "val.txt").unlink(), "val.txt", True),
    "png_value_out_of_range": (lambda r, s: save_png_label(r / "SegmentationClass" / "a.png",
                                                           np.full(SIZE, 7, np.uint8)), "a.png", False),
    "mat_value_out_of_range": (lambda r, s: save_mat(s / "cls" / "e.mat", np.full(SIZE, 30, np.uint8)),
                               "e.mat", False),
    "mat_without_gtcls": (lambda r, s: scipy.io.savemat(s / "cls" / "e.mat", {"GTinst": {"Segmentation": 1}}),
                          "e.mat", False),
    "mat_not_matlab": (lambda r, s: (s / "cls" / "e.mat").write_bytes(b"not a mat file at all" * 20), "e.mat", False),
    "mat_wrong_size": (lambda r, s: save_mat(s / "cls" / "e.mat", np.zeros((30, 52), np.uint8)), "e.mat", False),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tree_is_a_one_line_data_error_naming_the_file(trees: tuple[Path, Path], case: str) -> None:
    root, sbd = trees
    damage, name, at_construction = BAD[case]
    damage(root, sbd)
    with pytest.raises(DataError) as info:
        ds = VOCSegmentationDataset(root, "train_aug", num_classes=K, sbd_root=sbd)
        assert not at_construction, "a missing file must fail when the split is built"
        for i in range(len(ds)):
            ds[i]
    msg = str(info.value)
    assert "\n" not in msg and name in msg, msg


def test_train_aug_without_sbd_names_the_missing_list(voc: Path) -> None:
    with pytest.raises(DataError, match=r"train_aug\.txt.*sbd_root") as info:
        VOCSegmentationDataset(voc, "train_aug", num_classes=K)
    assert "\n" not in str(info.value)


# -- the CLI -------------------------------------------------------------------------------------------------------
def test_cli_train_and_search_on_a_bad_tree_exit_2_naming_the_file(trees: tuple[Path, Path], tmp_path: Path) -> None:
    root, sbd = trees
    (sbd / "cls" / "f.mat").unlink()
    common = ["--set", f"task.data.root={root}", "--set", f"task.data.sbd_root={sbd}", "--device", "cpu", "--quiet",
              "--set", "space.encoder.params.pretrained=null"]  # the config's ImageNet start would download
    r = cli("train", VOC_CONFIG, "--arch", CHILD, "--out", tmp_path / "T", *common)
    one_line_error(r, sbd / "cls" / "f.mat")
    assert not (tmp_path / "T").exists()
    (sbd / "cls" / "f.mat").touch()
    (root / "JPEGImages" / "c.jpg").unlink()  # a VOC val image
    r = cli("search", VOC_CONFIG, "--out", tmp_path / "S", *common)
    one_line_error(r, root / "JPEGImages" / "c.jpg")
    r = cli("search", VOC_CONFIG, "--out", tmp_path / "S", "--set", "space.encoder.params.pretrained=null",
            "--set", f"task.data.root={tmp_path / 'nowhere'}", "--device", "cpu")
    one_line_error(r, tmp_path / "nowhere")


def test_cli_label_value_out_of_range_exits_2_naming_the_file(trees: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = trees
    save_png_label(root / "SegmentationClass" / "a.png", np.full(SIZE, 40, np.uint8))
    r = cli("train", VOC_CONFIG, "--arch", CHILD, "--out", tmp_path / "T", "--fast-dev-run", "--device", "cpu",
            "--quiet", "--set", f"task.data.root={root}", "--set", "task.data.crop=32", "--set", "train.num_workers=0",
            "--set", "space.encoder.params.pretrained=null")
    one_line_error(r, root / "SegmentationClass" / "a.png", "40")


# -- the shipped child ------------------------------------------------------------------------------------------------
PUBLISHED = {("E0", "D1"), ("G", "D1"), ("E2", "D2"), ("G", "D2"), ("E3", "D3"), ("G", "D3"),
             *{(s, "D8") for s in ("E0", "E1", "E2", "E3", "E8", "G", "D1", "D2", "D3")}}


def test_shipped_voc_child_has_the_15_published_connections_and_056m_parameters() -> None:
    arch = Architecture.load(CHILD)
    assert {(e.src, e.dst) for e in arch.edges if e.candidate} == PUBLISHED and len(arch.connections) == 15
    assert len(arch.candidates) == 90 and sorted(arch.removed_stages) == ["D0", "D4", "D5", "D6", "D7"]
    assert "pretrained" not in arch.space.encoder.params  # rebuilt offline
    net = build_child(arch)
    decoder_head = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("encoder."))
    # 1x1 edge convs to 64 channels, no bias: 64 * (D1: 1280 + 1280, D2: 160 + 1280, D3: 96 + 1280,
    # D8: 1280 + 320 + 160 + 96 + 32 + 1280 + 3 * 64) = 64 * 8736 = 559,104 (the paper's ~0.56M); BN of the 4
    # stages 4 * 128 = 512; head 64 * 21 + 21 = 1,365: 560,981 in all
    assert decoder_head == 560_981
    assert abs(decoder_head - 0.56e6) / 0.56e6 < 0.01


def test_make_voc_child_regenerates_the_shipped_file(tmp_path: Path) -> None:
    from sparseconn_tasks.segmentation.make_voc_child import main

    main(["--out", str(tmp_path / "child.json")])
    assert json.loads((tmp_path / "child.json").read_text()) == json.loads(CHILD.read_text())


def test_shipped_voc_child_trains_two_steps(tmp_path: Path) -> None:
    out = tmp_path / "R"
    ok("train", VOC_CONFIG, "--arch", CHILD, "--out", out, "--fast-dev-run", "--device", "cpu", "--quiet",
       "--set", "task.data.source=synthetic", "--set", "task.data.size=32", "--set", "train.num_workers=0",
       "--set", "space.encoder.params.pretrained=null")  # the config's ImageNet start would download
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    losses = {k: v for k, v in rec.items() if "loss" in k}
    assert losses and all(math.isfinite(v) for v in losses.values()), rec
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["connections"] == 15
