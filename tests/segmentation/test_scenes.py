"""The synthetic scene set: deterministic, every class present, and no class told apart by colour alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sparseconn_tasks.segmentation.scenes import SCENE_CLASSES, SyntheticScenesDataset, class_name

from sparseconn.errors import DataError


def test_items_are_deterministic_per_seed_and_index_and_cached() -> None:
    a, b = SyntheticScenesDataset(48, 6, seed=3), SyntheticScenesDataset(48, 6, seed=3, cache=False)
    x, y = a[4], b[4]
    assert torch.equal(x["input"], y["input"]) and torch.equal(x["target"], y["target"])
    assert a[4]["input"] is a[4]["input"]  # the second read comes from the cache
    assert not torch.equal(a[4]["target"], a[5]["target"])
    assert not torch.equal(a[4]["input"], SyntheticScenesDataset(48, 6, seed=4)[4]["input"])
    assert x["input"].shape == (3, 48, 48) and x["input"].dtype == torch.float32
    assert x["target"].shape == (48, 48) and x["target"].dtype == torch.int64
    with pytest.raises(IndexError):
        a[6]


def test_every_class_occurs_with_ignore_outlines_and_background_largest() -> None:
    ds = SyntheticScenesDataset(64, 60, seed=0)
    labels = torch.stack([ds[i]["target"] for i in range(len(ds))])
    assert set(labels.unique().tolist()) == {*range(SCENE_CLASSES), 255}
    share = [float((labels == c).float().mean()) for c in range(SCENE_CLASSES)]
    assert share[0] == max(share) and min(share[1:]) > 0.005  # no class is a rarity
    assert 0.01 < float((labels == 255).float().mean()) < 0.1
    assert [class_name(c) for c in (0, 1, 6)] == ["background", "striped red", "large blue"]


def test_colour_finds_the_family_but_not_the_class() -> None:
    """A nearest-mean classifier of each object's mean colour, fitted on half the images, finds the colour
    family of the other half's objects but is near chance (1 in 2) between the two classes of a family."""
    ds = SyntheticScenesDataset(48, 200, seed=1, ignore_border=0, cache=False)
    rows: list[tuple[int, int, np.ndarray]] = []  # (image, class, mean colour of its pixels)
    for i in range(len(ds)):
        img, label = ds.render(i)
        rows += [(i, c, img[label == c].mean(0)) for c in range(1, SCENE_CLASSES) if (label == c).sum() > 10]
    fit = [(c, x) for i, c, x in rows if i % 2 == 0]
    centres = np.stack([np.mean([x for c, x in fit if c == k], 0) for k in range(1, SCENE_CLASSES)])  # (6, 3)
    test = [(c, 1 + int(np.argmin(((centres - x) ** 2).sum(1)))) for i, c, x in rows if i % 2 == 1]
    family = np.mean([(c - 1) // 2 == (p - 1) // 2 for c, p in test])
    within = np.mean([c == p for c, p in test if (c - 1) // 2 == (p - 1) // 2])
    assert len(test) > 150 and family > 0.9 and within < 0.65, (len(test), family, within)


def test_background_holds_the_object_textures() -> None:
    """Class-0 clutter carries the same high-frequency textures as the objects (texture alone is no cue)."""
    ds = SyntheticScenesDataset(64, 40, seed=2, ignore_border=0, cache=False)
    bg, fg = [], []
    for i in range(len(ds)):
        img, label = ds.render(i)
        grey = img.mean(2)
        hf = np.abs(np.diff(grey, axis=1))  # (H, W-1) horizontal contrast
        edge = label[:, 1:] != label[:, :-1]
        bg.append(hf[(label[:, 1:] == 0) & ~edge])
        fg.append(hf[(label[:, 1:] > 0) & ~edge])
    q_bg, q_fg = np.quantile(np.concatenate(bg), 0.99), np.quantile(np.concatenate(fg), 0.99)
    assert q_bg > 0.5 * q_fg  # the background's strongest textures are as strong as the objects'


def test_bad_size_is_refused() -> None:
    with pytest.raises(DataError, match="size >= 16 px, got 8"):
        SyntheticScenesDataset(8, 4)


def test_training_augmentation_is_a_flip_or_quarter_turn_per_epoch() -> None:
    plain, aug = SyntheticScenesDataset(32, 4, seed=5), SyntheticScenesDataset(32, 4, seed=5, augment=True)
    x, y = plain[2]["input"], plain[2]["target"]
    views = {}
    for k in range(8):
        vx, vy = torch.rot90(x, k % 4, (1, 2)), torch.rot90(y, k % 4, (0, 1))
        views[k] = (vx.flip(2), vy.flip(1)) if k >= 4 else (vx, vy)
    seen = set()
    for epoch in range(12):
        aug.set_epoch(epoch)
        a = aug[2]
        match = [k for k, (vx, vy) in views.items() if torch.equal(a["input"], vx) and torch.equal(a["target"], vy)]
        assert len(match) >= 1  # image and label moved together
        seen.add(match[0])
        assert torch.equal(aug[2]["input"], a["input"])  # the same within an epoch
    assert len(seen) > 3  # and different across epochs
