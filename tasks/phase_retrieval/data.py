"""Phase-retrieval data sets: a folder of interferograms and phase maps, or the simulator on the fly.

Folder layout (``ROOT``)::

    ROOT/interferograms/NAME.{tif,tiff,png,npy}   8/16-bit integers (scaled to [0, 1]) or floats
    ROOT/phases/NAME.{tif,tiff,npy}               float32 radians: unwrapped, aberration-free, ≥ 0
    ROOT/backgrounds/NAME.* or background.*       optional sample-free holograms (classical baseline)
    ROOT/splits/{train,val,test}.txt              optional, one NAME per line ('#' starts a comment)
    ROOT/meta.json                                optional, e.g. {"phase_range": 12.0}

Without ``splits/`` the names, sorted, are cut 80/10/10 into train/val/test (so neighbouring frames
of one acquisition stay together); the split ``"all"`` is every name. An interferogram and its phase
map must have the same size, and the interferogram must hold fringes: one under 8x8 px is refused when
the data set is made (from its header), a constant one when it is read. The network's input is the
interferogram (1, H, W) and its target is ``phase / phase_range`` clipped to [0, 1] (the paper's
ReLU6(x) / 6 head cannot go beyond); a phase map with more than 0.1% of its pixels above the range is
refused when it is read, naming its largest phase.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from sparseconn_tasks.phase_retrieval.classical import find_sideband
from sparseconn_tasks.phase_retrieval.imageio_ import (
    IMAGE_SUFFIXES,
    PHASE_SUFFIXES,
    check_hologram,
    check_hologram_size,
    image_size,
    index_images,
    read_image,
)
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, simulate
from torch.utils.data import Dataset

from sparseconn.errors import DataError
from sparseconn.fileio import read_json_object

SPLITS = ("train", "val", "test")
SYMMETRIES = ("half_plane", "carrier", "all", "none")  # augmentation sets, see PhaseFolderDataset
DEFAULT_PHASE_RANGE = 12.0  # rad, the paper's data (docs/reference.md §1)
_RANGE_SLACK = 1e-3  # relative: a map written with phase_range = its rounded maximum stays within
_MAX_OVER_RANGE = 1e-3  # share of a phase map's pixels that may lie above the range (outliers) before it is refused


def default_split(names: list[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
                  ) -> dict[str, list[str]]:
    """Cut the sorted ``names`` into train/val/test by ``fractions``; val and test get ≥ 1 from 3 names."""
    names = sorted(names)
    n = len(names)
    n_val = round(fractions[1] * n)
    n_test = round(fractions[2] * n)
    if n >= 3:
        n_val, n_test = max(n_val, 1 if fractions[1] > 0 else 0), max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = n - n_val - n_test
    return {"train": names[:n_train], "val": names[n_train:n_train + n_val], "test": names[n_train + n_val:]}


def read_split(root: Path, split: str, names: list[str]) -> list[str]:
    """Names of ``split`` from ``root/splits/<split>.txt``, or :func:`default_split` of ``names``."""
    if split == "all":
        return list(names)
    split_dir = root / "splits"
    if not split_dir.is_dir():
        if split not in SPLITS:
            raise DataError(f"{split_dir}: no split files, so the split must be one of "
                            f"{', '.join(SPLITS)} or all; got {split!r}")
        return default_split(names)[split]
    path = split_dir / f"{split}.txt"
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    known = set(names)
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name
        if stem not in known:
            raise DataError(f"{path}: {stem!r} has no interferogram in {root / 'interferograms'}")
        out.append(stem)
    if not out:
        raise DataError(f"{path}: the split lists no names")
    return out


def read_meta(root: Path) -> dict:
    """``root/meta.json`` as a dict ({} when absent); DataError naming the file if it is not JSON."""
    path = root / "meta.json"
    if not path.is_file():
        return {}
    return read_json_object(path, DataError)


def background_path(root: Path, name: str) -> Path | None:
    """``root/backgrounds/NAME.*``, else the shared ``backgrounds/background.*``, else None."""
    folder = root / "backgrounds"
    if not folder.is_dir():
        return None
    for stem in (name, "background"):
        for suffix in IMAGE_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def dihedral_transforms(symmetries: str, carrier: tuple[float, float] | None = None) -> list[tuple[int, bool]]:
    """The flips/rotations ``(k, flip)`` — ``np.rot90(a, k)`` then, if ``flip``, a left-right flip —
    allowed by ``symmetries`` (see :class:`PhaseFolderDataset`) for the carrier ``(fx, fy)`` cycles/px.
    """
    if symmetries not in SYMMETRIES:
        raise ValueError(f"unknown symmetries {symmetries!r}; available: {', '.join(sorted(SYMMETRIES))}")
    every = [(k, flip) for flip in (False, True) for k in range(4)]
    if symmetries == "none":
        return [(0, False)]
    if symmetries == "all":
        return every
    if carrier is None:
        raise ValueError(f"symmetries {symmetries!r} needs the carrier (fx, fy)")
    fx, fy = float(carrier[0]), float(carrier[1])
    tol = 1e-6 * math.hypot(fx, fy)
    out = []
    for k, flip in every:
        gx, gy = fx, fy
        for _ in range(k):  # np.rot90 maps image(x, y) to image(−y, x): the carrier turns to (fy, −fx)
            gx, gy = gy, -gx
        if flip:
            gx = -gx
        same = abs(gx - fx) <= tol and abs(gy - fy) <= tol
        half = gx > tol or (abs(gx) <= tol and gy > 0)
        if same or (symmetries == "half_plane" and half):
            out.append((k, flip))
    return out


def _crop_size(crop: int | tuple[int, int] | None) -> tuple[int, int] | None:
    return (crop, crop) if isinstance(crop, int) else (tuple(crop) if crop is not None else None)


class PhaseFolderDataset(Dataset):
    """Interferogram -> normalised phase pairs from the folder layout above.

    Items are ``{"input": (1, H, W) float32, "target": (1, H, W) float32 in [0, 1], "name": str}``.
    ``crop`` (px, int or (h, w)) takes a random window when ``augment`` is on, else the centre one.
    ``augment`` also applies a random flip / 90° rotation (odd quarter turns only for square outputs)
    from the set ``symmetries`` names, identically to input and target:

    - ``"half_plane"`` (default): the transforms that keep the carrier in the half plane
      ``fx > 0``. They may turn the fringes (45° -> −45°) but keep the relation phase -> hologram.
    - ``"carrier"``: only those that map the carrier onto itself (45°: identity and transpose).
    - ``"all"``: all eight. Half of them send the carrier f to a direction equivalent to −f, i.e. a
      hologram of the phase −φ (a 180° rotation of cos(2πf·r + φ) is cos(2πf·r − φ')), while the
      target stays +φ: the network must then infer the sign from the cells being positive.
    - ``"none"``: random crop only.

    The carrier comes from ``meta.json`` (``"carrier": [fx, fy]`` cycles/px) or, if absent, from
    :func:`~sparseconn_tasks.phase_retrieval.classical.find_sideband` on the first interferogram of the split.
    Randomness comes from ``numpy.random.default_rng([seed, epoch, index])``: call :meth:`set_epoch`
    before each epoch (with ``persistent_workers`` the workers keep their own copy of the epoch).
    ``phase_range`` (rad) defaults to ``meta.json``'s ``phase_range``, else 12.
    """

    def __init__(self, root: str | Path, split: str = "train", crop: int | tuple[int, int] | None = None,
                 augment: bool = False, phase_range: float | None = None, *,
                 symmetries: str = "half_plane", seed: int = 0) -> None:
        if symmetries not in SYMMETRIES:
            raise ValueError(f"unknown symmetries {symmetries!r}; available: {', '.join(sorted(SYMMETRIES))}")
        self.root = Path(root)
        holos = index_images(self.root / "interferograms", IMAGE_SUFFIXES)
        phase_dir = self.root / "phases"
        phases = index_images(phase_dir, PHASE_SUFFIXES)
        self.names = read_split(self.root, split, list(holos))
        missing = [n for n in self.names if n not in phases]
        if missing:
            raise DataError(f"{phase_dir / (missing[0] + '.tif')}: phase map not found for interferogram "
                            f"{holos[missing[0]]} ({len(missing)} missing in split {split!r})")
        self.pairs = [(holos[n], phases[n]) for n in self.names]
        # Headers only: a bad pair or a hologram too small to demodulate fails now, not mid-training. A
        # constant hologram is refused when it is read (load): finding it here would take a whole pass
        # over the pixels of the data set before the first step.
        for holo_path, phase_path in self.pairs:
            a, b = image_size(holo_path), image_size(phase_path)
            if a is not None:
                check_hologram_size(a, holo_path)
            if a is not None and b is not None and a != b:
                raise DataError(f"{holo_path}: size {a[1]}x{a[0]} differs from {phase_path} ({b[1]}x{b[0]})")
        meta = read_meta(self.root)
        self.phase_range = float(phase_range if phase_range is not None
                                 else meta.get("phase_range", DEFAULT_PHASE_RANGE))
        self._range_source = ("as set" if phase_range is not None else
                              f"from {self.root / 'meta.json'}" if "phase_range" in meta else
                              f"the default: {self.root / 'meta.json'} sets none")
        self.crop = _crop_size(crop)
        self.augment = augment
        self.symmetries = symmetries
        self.transforms = [(0, False)]
        if augment and symmetries != "none":
            carrier = meta.get("carrier")
            if carrier is None and symmetries != "all":
                carrier = find_sideband(check_hologram(read_image(self.pairs[0][0]), self.pairs[0][0]))
            self.transforms = dihedral_transforms(symmetries, carrier)
        self.seed = seed
        self.epoch = 0
        # Evaluation items carry the sample-free hologram when every item has one (the classical
        # baseline with background compensation); training items never need it.
        bgs = [background_path(self.root, n) for n in self.names]
        self.backgrounds = bgs if not augment and all(p is not None for p in bgs) else None

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (reproducible per (seed, epoch, index))."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Full-size (H, W) interferogram in [0, 1] and phase in rad, sizes checked; a hologram with no
        fringes to demodulate (constant, or under 8x8 px: :func:`check_hologram`) is a DataError naming it."""
        holo_path, phase_path = self.pairs[index]
        holo = check_hologram(read_image(holo_path), holo_path)
        phase = read_image(phase_path, integer_ok=False)
        if holo.shape != phase.shape:
            raise DataError(f"{holo_path}: size {holo.shape[1]}x{holo.shape[0]} differs from "
                            f"{phase_path} ({phase.shape[1]}x{phase.shape[0]})")
        # The target is phase / phase_range clipped to [0, 1]: a map that goes past the range would train a
        # network that silently tops out below the sample (a few outliers, e.g. unwrapping errors, may).
        over = float(np.count_nonzero(phase > self.phase_range * (1 + _RANGE_SLACK))) / max(phase.size, 1)
        if over > _MAX_OVER_RANGE:
            raise DataError(f"{phase_path}: {100 * over:.2g}% of the phase map is above the phase range "
                            f"{self.phase_range:g} rad ({self._range_source}; its largest phase is "
                            f"{float(np.nanmax(phase)):.3g} rad); set task.phase_range or meta.json's "
                            f"\"phase_range\" to at least that")
        return holo, phase

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        holo, phase = self.load(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        full_shape, window = holo.shape, None
        if self.crop is not None:
            ch, cw = self.crop
            h, w = holo.shape
            if ch > h or cw > w:
                raise DataError(f"{self.pairs[index][0]}: image {w}x{h} is smaller than the crop {cw}x{ch}")
            top = int(rng.integers(0, h - ch + 1)) if self.augment else (h - ch) // 2
            left = int(rng.integers(0, w - cw + 1)) if self.augment else (w - cw) // 2
            holo, phase = holo[top:top + ch, left:left + cw], phase[top:top + ch, left:left + cw]
            window = (top, left, ch, cw)
        if len(self.transforms) > 1:
            square = holo.shape[0] == holo.shape[1]
            allowed = [t for t in self.transforms if square or t[0] % 2 == 0]  # odd turns swap H and W
            k, flip = allowed[int(rng.integers(0, len(allowed)))]
            holo, phase = np.rot90(holo, k), np.rot90(phase, k)
            if flip:
                holo, phase = holo[:, ::-1], phase[:, ::-1]
        target = np.clip(phase / self.phase_range, 0.0, 1.0)
        item = {
            "input": torch.from_numpy(np.ascontiguousarray(holo, dtype=np.float32))[None],  # (1, H, W)
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None],  # (1, H, W)
            "name": self.names[index],
        }
        if self.backgrounds is not None:
            bg = read_image(self.backgrounds[index])
            if bg.shape != full_shape:
                raise DataError(f"{self.backgrounds[index]}: size {bg.shape[1]}x{bg.shape[0]} differs from "
                                f"{self.pairs[index][0]} ({full_shape[1]}x{full_shape[0]})")
            if window is not None:
                top, left, ch, cw = window
                bg = bg[top:top + ch, left:left + cw]
            item["background"] = torch.from_numpy(np.ascontiguousarray(bg, dtype=np.float32))[None]  # (1, H, W)
        return item


class SyntheticPhaseDataset(Dataset):
    """Simulated items generated on the fly, deterministic per index.

    Item ``i`` is ``simulate(cfg, numpy.random.default_rng([seed, i]))`` (a seed sequence, so seed 0
    item 1 and seed 1 item 0 differ); same dict as :class:`PhaseFolderDataset`, name ``sim_{i:05d}``.
    ``phase_range`` defaults to ``cfg.phase_range``. ``with_background`` adds the sample-free hologram
    (1, H, W) as ``background`` (for the classical baseline; training does not need it). With
    ``resample`` every epoch draws new fields (item ``i`` of epoch ``e`` uses ``[seed, e, i]``; call
    :meth:`set_epoch`), so a randomised simulator shows the network ``length × epochs`` distinct fields.
    """

    def __init__(self, cfg: SimConfig, length: int, seed: int = 0, phase_range: float | None = None,
                 with_background: bool = False, resample: bool = False) -> None:
        self.cfg = cfg
        self.with_background = with_background
        self.resample = resample
        self.epoch = 0
        self.length = int(length)
        self.seed = int(seed)
        self.phase_range = float(cfg.phase_range if phase_range is None else phase_range)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the fields of ``epoch`` (only with ``resample``)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        key = [self.seed, self.epoch, index] if self.resample else [self.seed, index]
        sample = simulate(self.cfg, np.random.default_rng(key))
        target = np.clip(sample.phase / self.phase_range, 0.0, 1.0).astype(np.float32)
        item = {
            "input": torch.from_numpy(sample.hologram)[None],  # (1, H, W)
            "target": torch.from_numpy(target)[None],  # (1, H, W)
            "name": f"sim_{index:05d}",
        }
        if self.with_background:
            item["background"] = torch.from_numpy(sample.background)[None]  # (1, H, W)
        return item
