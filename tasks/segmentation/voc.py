"""PASCAL VOC 2012 and SBD (the ``train_aug`` set) with SparseMask's training augmentation.

Items are dicts ``{"input": (3, H, W) float32, "target": (H, W) int64, "name": str}`` as in
:mod:`sparseconn_tasks.segmentation.data`: ImageNet-normalised inputs, class indices with 255 = not scored.

Layouts (nothing is downloaded; every image and label a split lists is checked when the split is built,
so a missing file fails before training with its path)::

    VOC (task.data.root, e.g. VOCdevkit/VOC2012)
    ROOT/JPEGImages/NAME.jpg
    ROOT/SegmentationClass/NAME.png                palette (or grey) PNG: class indices, 255 = not scored
    ROOT/ImageSets/Segmentation/{train,val}.txt    one NAME per line

    SBD pre-converted to PNGs (DeepLab's SegmentationClassAug), inside ROOT
    ROOT/SegmentationClassAug/NAME.png             PNG as above; the images are ROOT/JPEGImages/NAME.jpg
    ROOT/ImageSets/Segmentation/train_aug.txt      one NAME (or "IMAGE_PATH LABEL_PATH") per line

    SBD release (task.data.sbd_root: the dataset/ folder of benchmark.tgz)
    SBD_ROOT/img/NAME.jpg
    SBD_ROOT/cls/NAME.mat                          MATLAB file, GTcls.Segmentation = (H, W) class indices
    SBD_ROOT/{train,val}.txt                       one NAME per line

``train_aug`` is VOC train + SBD train + SBD val minus every image of VOC val (10,582 images with the
full releases). Where an image has a VOC label (``ROOT/SegmentationClass/NAME.png``), that label is used
(with its 255 outlines) instead of SBD's. With ``sbd_root`` the SBD release is read; without it,
``ROOT/ImageSets/Segmentation/train_aug.txt`` and ``SegmentationClassAug/`` (VOC val names in that list
are dropped too). :func:`train_split` picks the training split of ``auto``.

Training augmentation as SparseMask trained (:func:`augment`), deterministic per (seed, epoch, index):
random scale in ``scale`` (image bilinear, label nearest), padding on the bottom/right to ``crop`` (image
with the mean colour, i.e. 0 after normalisation; label with 255), a random ``crop`` x ``crop`` window, a
random horizontal flip. Evaluation items are read at full size, unaugmented.

``.mat`` labels are read with :func:`scipy.io.loadmat` (MATLAB's format: nothing is unpickled).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from sparseconn_tasks.segmentation.data import IGNORE, normalise, read_rgb
from torch.utils.data import Dataset

from sparseconn.errors import DataError

SPLITS = ("ImageSets", "Segmentation")
"""Folder of VOC's split files under ROOT."""
TRAIN_AUG = "train_aug"


@dataclass(frozen=True)
class Sample:
    """One item of a split: its name and the files of its image and label (``.png`` or SBD ``.mat``)."""

    name: str
    image: Path
    label: Path


# -- labels ------------------------------------------------------------------------------------------------
def read_label(path: Path, num_classes: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """A label file (VOC PNG, or SBD ``.mat``) as (H, W) int64; DataError naming the file on anything a
    label must not be: unreadable, not single-channel, not the image's size, a value outside
    0..num_classes-1 other than 255."""
    path = Path(path)
    label = _read_mat(path) if path.suffix.lower() == ".mat" else _read_png(path)
    if size is not None and label.shape != tuple(size):
        raise DataError(f"{path}: label is {label.shape[1]}x{label.shape[0]} px but its image is {size[1]}x{size[0]}")
    bad = (label >= num_classes) & (label != IGNORE) | (label < 0)
    if bad.any():
        raise DataError(f"{path}: label value {int(label[bad][0])} is not a class (0..{num_classes - 1}) or {IGNORE}")
    return label


def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I;16", "I"):
                raise DataError(f"{path}: a label must be a single-channel (palette or grey) PNG, got mode {im.mode}")
            return np.asarray(im).astype(np.int64)
    except FileNotFoundError:
        raise DataError(f"{path}: no such label file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot read the label ({exc.__class__.__name__})") from None


def _read_mat(path: Path) -> np.ndarray:
    """SBD's ``cls/NAME.mat``: the (H, W) array ``GTcls.Segmentation``."""
    if not path.is_file():
        raise DataError(f"{path}: no such label file")
    try:
        mat = scipy.io.loadmat(path, simplify_cells=True)
    except NotImplementedError:  # MATLAB v7.3 (HDF5) files
        raise DataError(f"{path}: MATLAB v7.3 files are not read; expected SBD's v5 .mat "
                        "(GTcls.Segmentation)") from None
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as exc:
        raise DataError(f"{path}: cannot read the MATLAB file ({exc.__class__.__name__}); expected SBD's "
                        "cls/NAME.mat with GTcls.Segmentation") from None
    gt = mat.get("GTcls")
    seg = gt.get("Segmentation") if isinstance(gt, dict) else None
    if not isinstance(seg, np.ndarray) or seg.ndim != 2 or not np.issubdtype(seg.dtype, np.number):
        raise DataError(f"{path}: no 2-D GTcls.Segmentation array (SBD's class label layout)")
    if np.issubdtype(seg.dtype, np.floating) and not np.array_equal(seg, np.round(seg)):
        raise DataError(f"{path}: GTcls.Segmentation holds non-integer values; expected class indices")
    return seg.astype(np.int64)


# -- splits ------------------------------------------------------------------------------------------------
def read_names(listing: Path) -> list[str]:
    """The image names of a split file: the first word of each line (a path's file stem, as in DeepLab's
    ``IMAGE_PATH LABEL_PATH`` lists)."""
    if not listing.is_file():
        raise DataError(f"{listing}: no such split file")
    names = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        word = line.split()[0] if line.strip() else ""
        if word:
            names.append(Path(word).stem if "/" in word or word.endswith((".jpg", ".png")) else word)
    if not names:
        raise DataError(f"{listing}: the split lists no images")
    return names


def train_split(root: Path, split: str = "auto", sbd_root: Path | None = None) -> str:
    """The training split: ``split`` itself unless ``auto``, which is ``train_aug`` when SBD is given
    (``sbd_root``) or ``ROOT/ImageSets/Segmentation/train_aug.txt`` exists, else ``train``."""
    if split != "auto":
        return split
    has_aug = sbd_root is not None or (Path(root).joinpath(*SPLITS) / f"{TRAIN_AUG}.txt").is_file()
    return TRAIN_AUG if has_aug else "train"


def voc_samples(root: Path, split: str, sbd_root: Path | None = None) -> list[Sample]:
    """The samples of a VOC split (``train``, ``val``, ...), or of ``train_aug`` (module docstring)."""
    root = Path(root)
    if split == TRAIN_AUG:
        return _train_aug(root, sbd_root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected PASCAL VOC: JPEGImages/, SegmentationClass/, "
                        f"ImageSets/Segmentation/)")
    names = read_names(root.joinpath(*SPLITS) / f"{split}.txt")
    return [Sample(n, _voc_image(root, n), _voc_label(root, n)) for n in names]


def _voc_image(root: Path, name: str) -> Path:
    return root / "JPEGImages" / f"{name}.jpg"


def _voc_label(root: Path, name: str) -> Path:
    return root / "SegmentationClass" / f"{name}.png"


def _train_aug(root: Path, sbd_root: Path | None) -> list[Sample]:
    val = set(read_names(root.joinpath(*SPLITS) / "val.txt"))  # excluded, whatever the lists say
    out: dict[str, Sample] = {}
    if sbd_root is None:
        listing = root.joinpath(*SPLITS) / f"{TRAIN_AUG}.txt"
        if not listing.is_file():
            raise DataError(f"{listing}: no such split file; train_aug needs it (with SegmentationClassAug/) or "
                            "task.data.sbd_root (the SBD release)")
        for n in read_names(listing):
            voc = _voc_label(root, n)
            out.setdefault(n, Sample(n, _voc_image(root, n),
                                     voc if voc.is_file() else root / "SegmentationClassAug" / f"{n}.png"))
    else:
        sbd_root = Path(sbd_root)
        for n in read_names(root.joinpath(*SPLITS) / "train.txt"):
            out.setdefault(n, Sample(n, _voc_image(root, n), _voc_label(root, n)))
        for part in ("train", "val"):
            for n in read_names(sbd_root / f"{part}.txt"):
                if n in out:
                    continue
                voc = _voc_label(root, n)
                out[n] = (Sample(n, _voc_image(root, n), voc) if voc.is_file()
                          else Sample(n, sbd_root / "img" / f"{n}.jpg", sbd_root / "cls" / f"{n}.mat"))
    samples = [s for n, s in out.items() if n not in val]
    if not samples:
        raise DataError(f"{root}: train_aug is empty once the VOC val images are removed")
    return samples


# -- augmentation ------------------------------------------------------------------------------------------
def rescale(img: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(3, H, W) image bilinearly, (H, W) label by nearest neighbour (pixel centres aligned), to
    round(factor * H) x round(factor * W)."""
    h, w = label.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    if size == (h, w):
        return img, label
    x = F.interpolate(torch.from_numpy(np.ascontiguousarray(img))[None], size=size, mode="bilinear",
                      align_corners=False)[0]
    y = F.interpolate(torch.from_numpy(np.ascontiguousarray(label)).float()[None, None], size=size,
                      mode="nearest-exact")[0, 0]
    return x.numpy(), y.round().long().numpy()


def pad_crop(img: np.ndarray, label: np.ndarray, crop: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """Pad (3, H, W) / (H, W) on the bottom/right to at least ``crop`` (image 0 = the mean colour after
    normalisation, label IGNORE), then a random ``crop`` x ``crop`` window."""
    h, w = label.shape
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    if ph or pw:
        img = np.pad(img, ((0, 0), (0, ph), (0, pw)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE)
    top = int(rng.integers(0, label.shape[0] - crop + 1))
    left = int(rng.integers(0, label.shape[1] - crop + 1))
    return img[:, top:top + crop, left:left + crop], label[top:top + crop, left:left + crop]


def augment(img: np.ndarray, label: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] | None = None,
            crop: int | None = None, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """SparseMask's training augmentation of a normalised (3, H, W) image and its (H, W) label: random
    scale in ``scale`` (if given), pad and random crop to ``crop`` (if given), horizontal flip with
    probability 1/2 (if ``flip``). The draws come from ``rng`` in that order."""
    if scale is not None:
        img, label = rescale(img, label, float(rng.uniform(scale[0], scale[1])))
    if crop is not None:
        img, label = pad_crop(img, label, crop, rng)
    if flip and rng.random() < 0.5:
        img, label = img[:, :, ::-1], label[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(label)


# -- the dataset ---------------------------------------------------------------------------------------------
class VOCSegmentationDataset(Dataset):
    """A PASCAL VOC split (``train``, ``val``, ...) or ``train_aug`` (VOC + SBD, module docstring).

    Training items (``scale``, ``crop`` or ``augment`` set) get :func:`augment`, drawn from
    ``(seed, epoch, index)``: call :meth:`set_epoch` each epoch. Otherwise items are full size.
    """

    def __init__(self, root: Path, split: str, num_classes: int = 21, crop: int | None = None,
                 augment: bool = False, seed: int = 0, scale: tuple[float, float] | None = None,
                 sbd_root: Path | None = None) -> None:
        if scale is not None and not 0 < scale[0] <= scale[1]:
            raise DataError(f"scale {list(scale)} is not a range: expected [lo, hi] with 0 < lo <= hi")
        self.root, self.split, self.num_classes = Path(root), split, num_classes
        self.crop, self.augment, self.scale, self.seed, self.epoch = crop, augment, scale, seed, 0
        self.samples = voc_samples(self.root, split, sbd_root)
        for s in self.samples:  # fail before training, not in epoch 7
            for p in (s.image, s.label):
                if not p.is_file():
                    raise DataError(f"{p}: no such file (image {s.name!r} of split {split!r})")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        img = normalise(read_rgb(s.image))  # (3, H, W)
        label = read_label(s.label, self.num_classes, img.shape[1:])  # (H, W)
        if self.crop is not None or self.augment or self.scale is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            img, label = augment(img, label, rng, self.scale, self.crop, self.augment)
        return {"input": torch.from_numpy(np.ascontiguousarray(img)),
                "target": torch.from_numpy(np.ascontiguousarray(label)), "name": s.name}


__all__ = ["Sample", "VOCSegmentationDataset", "augment", "pad_crop", "read_label", "read_names", "rescale",
           "train_split", "voc_samples"]
