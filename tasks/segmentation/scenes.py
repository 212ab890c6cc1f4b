"""Synthetic scenes where a pixel's class needs context at several scales (no download).

Objects come in three colour families (reds, greens, blues, each with jitter in hue, saturation and value)
and each family holds two classes that only a wider look tells apart (6 classes + background):

- **reds: striped or checkered** (a mid-scale cue): the same colours, told apart by the texture's layout
  over several of its periods;
- **greens: ellipse or rectangle** (a coarse cue): the same plain shaded fill, told apart by the outline of
  the whole object, often partly hidden;
- **blues: small or large** (the coarsest cue): the same shapes and fill at radius 5-9 % or 22-34 % of the
  image side (small ones in groups of 1-3); a pixel inside a large one looks like one inside a small one
  until the whole object is seen.

The background is low-saturation clutter with look-alikes of class 0: grey striped and checkered patches
and plain grey shapes, so that neither texture nor shape alone makes an object. Later objects cover
earlier ones (occlusion), and the label follows the outlines at full resolution (a fine cue);
``ignore_border`` px around each outline are 255 (not scored), as VOC's.

Colour finds the family at once, so a small network learns quickly; the six-way split needs deep (shape,
size) and middle (texture) features fused with shallow ones (edges), which is what makes the search's
choice of decoder connections visible (docs/sparsemask.md).

Item ``index`` depends on ``(seed, index)`` only; rendered items are kept in memory (a few hundred small
images are a few tens of MB), so epochs after the first cost no rendering.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
import torch
from sparseconn_tasks.segmentation.data import _outline, normalise
from sparseconn_tasks.segmentation.data import _smooth_noise as _smooth
from torch.utils.data import Dataset

from sparseconn.errors import DataError

IGNORE = 255
CLASS_NAMES = ("background", "striped red", "checkered red", "green ellipse", "green rectangle",
               "small blue", "large blue")
SCENE_CLASSES = len(CLASS_NAMES)
"""Background + two classes in each of three colour families: 7."""
_HUES = (0.0, 0.33, 0.62)  # red, green, blue family centres
SMALL, LARGE = (0.05, 0.09), (0.22, 0.34)
"""Radius ranges of the small and large blues, as fractions of the image side (everything else: 0.1-0.3)."""


def class_name(cls: int) -> str:
    """The name of a scene class index (``background``, ``striped red``, ..., ``large blue``)."""
    return CLASS_NAMES[cls]


def _family_colour(rng: np.random.Generator, family: int) -> np.ndarray:
    """An RGB colour (3,) in [0, 1] of a colour family, hue within +-0.05 of its centre."""
    h = (_HUES[family] + rng.uniform(-0.05, 0.05)) % 1.0
    return np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.55, 0.95), rng.uniform(0.45, 0.95)), dtype=np.float32)


def _grey(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation colour (3,) in [0, 1] of any hue (clutter)."""
    return np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.2), rng.uniform(0.2, 0.9)),
                    dtype=np.float32)


def _texture(rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """A two-level pattern in {0, 1} (H, W) float32: stripes or a checker, random period, angle, phase."""
    th = rng.uniform(0, np.pi)
    period = rng.uniform(0.14, 0.2) * size  # 9-13 px at 64 px
    u = (xx * np.cos(th) + yy * np.sin(th)) / period + rng.uniform(0, 1)
    if kind == "stripes":
        return (np.mod(u, 1.0) < 0.5).astype(np.float32)
    v = (-xx * np.sin(th) + yy * np.cos(th)) / period + rng.uniform(0, 1)
    return ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)


def _shape(rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray, size: int,
           radius: tuple[float, float]) -> np.ndarray:
    """A filled ellipse or rectangle of random radius (fraction of ``size``), aspect, angle, place: bool."""
    cy, cx = rng.uniform(0.05, 0.95, 2) * size
    r = rng.uniform(*radius) * size
    th = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
    aspect = rng.uniform(0.65, 1.0)
    if kind == "ellipse":
        return (u / r) ** 2 + (v / (r * aspect)) ** 2 <= 1
    return (np.abs(u) <= r) & (np.abs(v) <= r * aspect)


def _blob(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """An irregular patch (thresholded smooth noise inside a soft disc): (H, W) bool."""
    cy, cx = rng.uniform(0, 1, 2) * size
    r = rng.uniform(0.12, 0.3) * size
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
    return (1.0 - d + 0.6 * _smooth(rng, size, 6, 1)[..., 0]) > 0.5


class SyntheticScenesDataset(Dataset):
    """Objects of three colour families, two classes each, occluding each other on grey look-alike clutter.

    ``num_classes`` is fixed by the scene grammar (:data:`SCENE_CLASSES`, 7); ``objects``: at most this
    many labelled objects an image (at least one); ``distractors``: at most this many grey textured
    patches and plain shapes in the background (class 0); ``scale``: radius range (fraction of the side)
    of every object but the blues; ``augment``: each training epoch shows every item in one of its 8 flips
    and quarter turns (drawn per seed, epoch and index), which keep every class.
    """

    def __init__(self, size: int, length: int, seed: int = 0, objects: int = 4, distractors: int = 4,
                 ignore_border: int = 1, scale: tuple[float, float] = (0.1, 0.3), cache: bool = True,
                 augment: bool = False) -> None:
        if size < 16:
            raise DataError(f"synthetic scenes need size >= 16 px, got {size}")
        self.size, self.length, self.seed = size, length, seed
        self.objects, self.distractors, self.ignore_border, self.scale = objects, distractors, ignore_border, scale
        self.num_classes = SCENE_CLASSES
        self._yy, self._xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None
        self.augment, self.epoch = augment, 0

    def set_epoch(self, epoch: int) -> None:
        """Re-seed the training augmentation (called by the trainer before every epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) float32 RGB in [0, 1] and the (H, W) int64 label map of item ``index``."""
        rng = np.random.default_rng([self.seed, index, 7])
        s, yy, xx = self.size, self._yy, self._xx
        img = _grey(rng) + 0.12 * _smooth(rng, s, 4, 1) + 0.04 * _smooth(rng, s, 8, 3)  # (H, W, 3)
        label = np.zeros((s, s), dtype=np.int64)
        layers: list[tuple[np.ndarray, np.ndarray, int]] = []  # (mask, colours (H, W, 3), class)
        for _ in range(int(rng.integers(1, self.distractors + 1))):  # class-0 look-alikes, low saturation
            a, b = _grey(rng), _grey(rng)
            if rng.random() < 0.6:
                mask = _blob(rng, yy, xx, s) if rng.random() < 0.5 else _shape(
                    rng, ("ellipse", "rectangle")[int(rng.integers(2))], yy, xx, s, self.scale)
                tex = _texture(rng, ("stripes", "checker")[int(rng.integers(2))], yy, xx, s)
            else:
                mask = _shape(rng, ("ellipse", "rectangle")[int(rng.integers(2))], yy, xx, s, self.scale)
                tex = np.clip(0.5 + 0.25 * _smooth(rng, s, 3, 1)[..., 0], 0, 1)  # plain, shaded
            layers.append((mask, a * (1 - tex[..., None]) + b * tex[..., None], 0))
        for _ in range(int(rng.integers(1, self.objects + 1))):
            cls = int(rng.integers(1, SCENE_CLASSES))
            family = (cls - 1) // 2
            a = _family_colour(rng, family)
            if family == 0:  # reds: striped or checkered, two shades of one red
                mask = _shape(rng, ("ellipse", "rectangle")[int(rng.integers(2))], yy, xx, s, self.scale)
                tex = _texture(rng, "stripes" if cls == 1 else "checker", yy, xx, s)
                b = a * rng.uniform(0.35, 0.6)
            else:  # greens by shape, blues by size: plain, shaded fill
                if family == 1:
                    mask = _shape(rng, "ellipse" if cls == 3 else "rectangle", yy, xx, s, self.scale)
                else:  # small blues come in groups of 1-3 (a large one covers ~10x the area of a small one)
                    mask = np.zeros((s, s), dtype=bool)
                    for _ in range(int(rng.integers(1, 4)) if cls == 5 else 1):
                        mask |= _shape(rng, ("ellipse", "rectangle")[int(rng.integers(2))], yy, xx, s,
                                       SMALL if cls == 5 else LARGE)
                tex = np.clip(0.5 + 0.25 * _smooth(rng, s, 3, 1)[..., 0], 0, 1)
                b = a * rng.uniform(0.6, 0.85)
            layers.append((mask, a * (1 - tex[..., None]) + b * tex[..., None], cls))
        for i in rng.permutation(len(layers)):  # clutter may lie on top of objects too: occlusion both ways
            mask, colours, cls = layers[i]
            img[mask] = colours[mask]
            label[mask] = cls
        img = img * rng.uniform(0.8, 1.15) + rng.normal(0, 0.04, img.shape)  # exposure, sensor noise
        if self.ignore_border > 0:
            label[_outline(label, self.ignore_border)] = IGNORE
        return np.clip(img, 0, 1).astype(np.float32), label

    def item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(3, H, W) ImageNet-normalised input and (H, W) int64 target of item ``index``."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        img, label = self.render(index)
        pair = torch.from_numpy(normalise(img)), torch.from_numpy(label)
        if self._cache is not None:
            self._cache[index] = pair
        return pair

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"item {index} of a {self.length}-item scene set")
        x, y = self.item(index)
        if self.augment:  # one of the 8 flips and quarter turns, per (seed, epoch, index): every class keeps its
            k = int(np.random.default_rng([self.seed, self.epoch, index]).integers(8))  # shape, size and texture
            x, y = torch.rot90(x, k % 4, (1, 2)), torch.rot90(y, k % 4, (0, 1))
            if k >= 4:
                x, y = x.flip(2), y.flip(1)
            x, y = x.contiguous(), y.contiguous()
        return {"input": x, "target": y, "name": f"scenes_{self.seed}_{index:05d}"}

