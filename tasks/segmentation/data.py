"""Segmentation data shared by every source: ImageNet normalisation, the VOC palette, image reading, and
the easy synthetic shapes (colour-coded classes on a cluttered background, no download; a smoke test).

Items are dicts ``{"input": (3, H, W) float32, "target": (H, W) int64, "name": str}``; inputs are
normalised with the ImageNet mean/std (the MobileNetV2 encoder's pre-training), targets hold class
indices with ``IGNORE`` (255) on pixels that are not scored (VOC's object outlines).

The harder synthetic scenes are in :mod:`sparseconn_tasks.segmentation.scenes`; PASCAL VOC and SBD, their
layouts and SparseMask's augmentation in :mod:`sparseconn_tasks.segmentation.voc`.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from sparseconn.errors import DataError

IGNORE = 255
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalise(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [0, 1] (or uint8) -> (3, H, W) float32, ImageNet mean/std."""
    x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(2, 0, 1))  # (3, H, W)


def denormalise(x: np.ndarray) -> np.ndarray:
    """(3, H, W) normalised -> (H, W, 3) in [0, 1] (for pictures)."""
    return np.clip(x.transpose(1, 2, 0) * STD + MEAN, 0, 1)


def voc_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map: (n, 3) uint8 (class c's colour from the bits of c)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        r = g = b = 0
        cid = c
        for j in range(8):
            r |= ((cid >> 0) & 1) << (7 - j)
            g |= ((cid >> 1) & 1) << (7 - j)
            b |= ((cid >> 2) & 1) << (7 - j)
            cid >>= 3
        pal[c] = (r, g, b)
    return pal


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (grey images are repeated); DataError naming the file. A
    floating-point image (a float TIFF) with NaN or inf pixels is refused, as the phase task refuses it:
    converting would turn them into arbitrary colours without a word."""
    try:
        with Image.open(path) as im:
            if im.mode == "F":
                values = np.asarray(im)
                bad = int(values.size - np.isfinite(values).sum())
                if bad:
                    raise DataError(f"{path}: {bad} NaN or inf values")
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot read the image ({exc.__class__.__name__})") from None


# -- synthetic shapes --------------------------------------------------------------------------------
def _class_colours(num_classes: int) -> np.ndarray:
    """Mean RGB in [0, 1] of each foreground class: hues spread evenly, fixed for every seed."""
    hues = (np.arange(num_classes) * 0.618034) % 1.0  # golden-ratio steps: neighbours differ
    return np.array([colorsys.hsv_to_rgb(h, 0.75, 0.85) for h in hues], dtype=np.float32).reshape(-1, 3)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    """Low-frequency noise: a (cells x cells) grid up-sampled bilinearly to (size, size, channels)."""
    grid = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    pos = np.linspace(0, cells - 1, size, dtype=np.float32)
    i0 = np.minimum(pos.astype(int), cells - 2)
    f = (pos - i0)[:, None]
    rows = grid[i0] * (1 - f[..., None]) + grid[i0 + 1] * f[..., None]  # (size, cells, C)
    return rows[:, i0] * (1 - f[None]) + rows[:, i0 + 1] * f[None]  # (size, size, C)


def _shape_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """A random filled ellipse, rotated rectangle or triangle: (H, W) bool."""
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    a, b = rng.uniform(0.1, 0.3, 2) * size
    kind = rng.integers(3)
    if kind == 2:  # triangle: three vertices around the centre, inside = same side of every edge
        ang = np.sort(rng.uniform(0, 2 * np.pi, 3))
        r = rng.uniform(0.12, 0.32, 3) * size
        vy, vx = cy + r * np.sin(ang), cx + r * np.cos(ang)
        pos = np.ones_like(yy, dtype=bool)
        neg = np.ones_like(yy, dtype=bool)
        for k in range(3):
            y0, x0, y1, x1 = vy[k], vx[k], vy[(k + 1) % 3], vx[(k + 1) % 3]
            side = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)  # (H, W) cross product
            pos &= side >= 0
            neg &= side <= 0
        return pos | neg  # either vertex orientation
    th = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
    if kind == 0:
        return (u / a) ** 2 + (v / b) ** 2 <= 1
    return (np.abs(u) <= a) & (np.abs(v) <= b)


class SyntheticShapesDataset(Dataset):
    """Filled shapes of classes 1..K-1 on a cluttered background (class 0), made on the fly.

    Item ``index`` depends on ``(seed, index)`` only. Each class has its own mean colour (with
    per-shape jitter, stripes and pixel noise); the background is low-frequency coloured clutter plus
    small grey distractor blobs. ``ignore_border`` px around every shape outline are ``IGNORE``, as VOC.
    """

    def __init__(self, size: int, num_classes: int, length: int, seed: int = 0, max_shapes: int = 4,
                 ignore_border: int = 1) -> None:
        if num_classes < 2:
            raise DataError(f"synthetic shapes need num_classes >= 2, got {num_classes}")
        self.size, self.num_classes, self.length, self.seed = size, num_classes, length, seed
        self.max_shapes, self.ignore_border = max_shapes, ignore_border
        self.colours = _class_colours(num_classes - 1)  # (K-1, 3): class c has colours[c - 1]
        self._yy, self._xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def __len__(self) -> int:
        return self.length

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) float32 RGB in [0, 1] and the (H, W) int64 label map of item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        s = self.size
        img = 0.45 + 0.12 * _smooth_noise(rng, s, 5, 3) + 0.06 * _smooth_noise(rng, s, 12, 1)  # (H, W, 3)
        for _ in range(rng.integers(2, 6)):  # background distractors: small grey-ish blobs, still class 0
            r = rng.uniform(0.03, 0.08) * s
            cy, cx = rng.uniform(0, s, 2)
            blob = (self._yy - cy) ** 2 + (self._xx - cx) ** 2 <= r * r
            img[blob] = rng.uniform(0.2, 0.8) + rng.normal(0, 0.04, 3)
        label = np.zeros((s, s), dtype=np.int64)
        for _ in range(rng.integers(1, self.max_shapes + 1)):
            cls = int(rng.integers(1, self.num_classes))
            mask = _shape_mask(rng, self._yy, self._xx, s)
            colour = self.colours[cls - 1] + rng.normal(0, 0.06, 3)
            period, phase = rng.uniform(4, 10), rng.uniform(0, 2 * np.pi)
            stripes = 0.06 * np.sin(2 * np.pi * (self._xx + self._yy) / period + phase)  # texture
            img[mask] = colour + stripes[mask][:, None]
            label[mask] = cls
        img = img + rng.normal(0, 0.03, img.shape)
        if self.ignore_border > 0:
            label[_outline(label, self.ignore_border)] = IGNORE
        return np.clip(img, 0, 1).astype(np.float32), label

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, label = self.render(index)
        return {"input": torch.from_numpy(normalise(img)), "target": torch.from_numpy(label),
                "name": f"shapes_{self.seed}_{index:05d}"}


def _outline(label: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` px (4-neighbourhood steps) of a label change: (H, W) bool."""
    edge = np.zeros(label.shape, dtype=bool)
    dy = label[1:] != label[:-1]
    dx = label[:, 1:] != label[:, :-1]
    edge[1:] |= dy
    edge[:, 1:] |= dx
    if width > 1:  # widen by one more step on each side
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge


# -- PASCAL VOC: moved to voc.py -----------------------------------------------------------------------
def __getattr__(name: str) -> Any:
    """``VOCSegmentationDataset`` and ``read_label`` live in :mod:`sparseconn_tasks.segmentation.voc` (which
    imports this module's image helpers); imported from here on first use, so old imports keep working."""
    if name in ("VOCSegmentationDataset", "read_label"):
        from sparseconn_tasks.segmentation import voc

        return getattr(voc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
