"""Synthetic shapes (determinism, classes, speed) and PASCAL VOC folders (loading, augmentation, bad files)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sparseconn_tasks.segmentation.data import (
    IGNORE,
    MEAN,
    STD,
    SyntheticShapesDataset,
    VOCSegmentationDataset,
    voc_palette,
)

from sparseconn.errors import DataError


def test_synthetic_items_are_deterministic_per_seed_and_index() -> None:
    a = SyntheticShapesDataset(48, 6, 10, seed=3)
    b = SyntheticShapesDataset(48, 6, 10, seed=3)
    x, y = a[4], b[4]
    assert torch.equal(x["input"], y["input"]) and torch.equal(x["target"], y["target"])
    assert not torch.equal(a[4]["target"], a[5]["target"])
    assert not torch.equal(a[4]["input"], SyntheticShapesDataset(48, 6, 10, seed=4)[4]["input"])
    assert x["input"].shape == (3, 48, 48) and x["input"].dtype == torch.float32
    assert x["target"].shape == (48, 48) and x["target"].dtype == torch.int64
    assert len(a) == 10


def test_synthetic_labels_cover_the_classes_with_ignore_outlines() -> None:
    ds = SyntheticShapesDataset(64, 4, 40, seed=0, ignore_border=1)
    labels = torch.stack([ds[i]["target"] for i in range(40)])
    values = set(labels.unique().tolist())
    assert values == {0, 1, 2, 3, IGNORE}
    assert 0.005 < float((labels == IGNORE).float().mean()) < 0.15
    assert float((labels == 0).float().mean()) > 0.3  # background is the largest class
    none = SyntheticShapesDataset(64, 4, 5, seed=0, ignore_border=0)
    assert IGNORE not in set(torch.stack([none[i]["target"] for i in range(5)]).unique().tolist())
    x = torch.stack([ds[i]["input"] for i in range(40)])
    assert abs(float(x.mean())) < 1.0 and 0.3 < float(x.std()) < 2.0  # roughly ImageNet-normalised


def test_synthetic_classes_differ_in_colour() -> None:
    ds = SyntheticShapesDataset(64, 4, 30, seed=1, ignore_border=0)
    means = {c: [] for c in (1, 2, 3)}
    for i in range(30):
        item = ds[i]
        for c in means:
            m = item["target"] == c
            if m.any():
                means[c].append(item["input"][:, m].mean(1))
    centres = torch.stack([torch.stack(v).mean(0) for v in means.values()])  # (3, 3)
    assert torch.cdist(centres, centres).add(torch.eye(3) * 9).min() > 0.3


def test_synthetic_is_fast() -> None:
    ds = SyntheticShapesDataset(64, 6, 50, seed=0)
    t0 = time.perf_counter()
    for i in range(50):
        ds[i]
    assert (time.perf_counter() - t0) / 50 < 0.01


def write_voc(root: Path, names: dict[str, list[str]], size: tuple[int, int] = (40, 52)) -> Path:
    """A tiny VOC tree: JPEG images, palette PNG labels (classes 0..2 and a 255 outline), split files."""
    h, w = size
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for split, items in names.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(items) + "\n")
        for i, name in enumerate(items):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
            label = np.zeros((h, w), np.uint8)
            label[5:20, 5 + i:30] = 1 + i % 2
            label[4, 5:30] = IGNORE
            im = Image.fromarray(label, mode="P")
            im.putpalette(voc_palette().reshape(-1).tolist())
            im.save(root / "SegmentationClass" / f"{name}.png")
    return root


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return write_voc(tmp_path / "VOC", {"train": ["a", "b", "c"], "val": ["d", "e"]})


def test_voc_val_items_at_full_size(voc: Path) -> None:
    ds = VOCSegmentationDataset(voc, "val", num_classes=3)
    assert len(ds) == 2
    item = ds[0]
    assert item["name"] == "d" and item["input"].shape == (3, 40, 52) and item["target"].shape == (40, 52)
    assert set(item["target"].unique().tolist()) == {0, 1, IGNORE}
    raw = np.asarray(Image.open(voc / "JPEGImages" / "d.jpg").convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(item["input"].numpy(), ((raw - MEAN) / STD).transpose(2, 0, 1), atol=1e-5)


def test_voc_training_crops_pad_and_flip_per_epoch(voc: Path) -> None:
    ds = VOCSegmentationDataset(voc, "train", num_classes=3, crop=48, augment=True, seed=1)
    item = ds[0]
    assert item["input"].shape == (3, 48, 48) and item["target"].shape == (48, 48)
    # 40 rows < 48: the bottom rows are padding (mean colour = 0, label 255)
    assert bool((item["target"][40:] == IGNORE).all()) and float(item["input"][:, 40:].abs().max()) == 0.0
    assert torch.equal(ds[0]["target"], item["target"])  # same epoch: same crop
    seen = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        seen.add(ds[0]["target"].numpy().tobytes())
    assert len(seen) > 1


@pytest.mark.parametrize("case", ["no_split", "missing_label", "rgb_label", "mismatch", "bad_value", "bad_jpeg"])
def test_voc_bad_input_is_one_line_naming_the_file(voc: Path, case: str) -> None:
    expect = ""
    if case == "no_split":
        (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()
        expect = "val.txt"
    elif case == "missing_label":
        (voc / "SegmentationClass" / "e.png").unlink()
        expect = "e.png"
    elif case == "rgb_label":
        Image.fromarray(np.zeros((40, 52, 3), np.uint8)).save(voc / "SegmentationClass" / "e.png")
        expect = "e.png"
    elif case == "mismatch":
        Image.fromarray(np.zeros((30, 52), np.uint8), mode="L").save(voc / "SegmentationClass" / "e.png")
        expect = "e.png"
    elif case == "bad_value":
        Image.fromarray(np.full((40, 52), 7, np.uint8), mode="L").save(voc / "SegmentationClass" / "e.png")
        expect = "e.png"
    elif case == "bad_jpeg":
        (voc / "JPEGImages" / "e.jpg").write_bytes(b"not a jpeg")
        expect = "e.jpg"
    with pytest.raises(DataError) as info:
        ds = VOCSegmentationDataset(voc, "val", num_classes=3)
        for i in range(len(ds)):
            ds[i]
    msg = str(info.value)
    assert "\n" not in msg and expect in msg, msg
