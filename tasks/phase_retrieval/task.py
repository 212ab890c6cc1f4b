"""The ``phase_retrieval`` task: NAS-PRNet's data, MixGE loss, metrics, I/O and classical baseline.

Configured by the ``task:`` section of a run config (see ``tasks/phase_retrieval.yaml``)::

    task:
      name: phase_retrieval
      phase_range: 12.0            # rad; the target is phase / phase_range in [0, 1]
      data:
        source: synthetic          # or folder (root: DIR, in the layout of tasks/phase_retrieval/data.py)
        train_size: 320            # synthetic only: items per split
        sim: {size: 128}           # SimConfig (tasks/phase_retrieval/simulate.py)
      loss: {lam: 0.1, operator: sobel}

Network outputs and targets are the normalised phase (B, 1, H, W) in [0, 1]; ``infer`` writes radians.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from sparseconn_tasks.phase_retrieval.classical import FourierPhaseRetrieval
from sparseconn_tasks.phase_retrieval.data import (
    DEFAULT_PHASE_RANGE,
    SYMMETRIES,
    PhaseFolderDataset,
    SyntheticPhaseDataset,
    read_meta,
)
from sparseconn_tasks.phase_retrieval.imageio_ import (
    count_frames,
    iter_frames,
    read_image,
    write_tiff,
    write_tiff_stack,
)
from sparseconn_tasks.phase_retrieval.losses import GRADIENT_OPERATORS, mixge
from sparseconn_tasks.phase_retrieval.metrics import psnr, rmse_rad, ssim
from sparseconn_tasks.phase_retrieval.simulate import SimConfig, cross_domain, simulate
from torch.utils.data import Dataset

from sparseconn.schema import StrictModel
from sparseconn.task import Task, TaskConfig, register_task, split_seeds


class DataConfig(StrictModel):
    source: Literal["synthetic", "folder"] = "synthetic"
    """``synthetic``: the simulator on the fly (no files); ``folder``: holograms and phases in ``root``."""
    root: Path | None = None
    """Folder data set (required for ``source: folder``); relative paths are from the working directory."""
    train_size: int = Field(320, ge=1)
    """Synthetic only: number of training items (fixed per run seed)."""
    val_size: int = Field(32, ge=1)
    test_size: int = Field(32, ge=1)
    seed: int = Field(0, ge=0)
    """Synthetic only: seed of the validation and test items (the same for every run seed)."""
    sim: SimConfig = Field(default_factory=SimConfig)
    """Simulator settings of the synthetic items (``size`` is the side in px)."""
    cross_domain_size: int = Field(16, ge=0)
    """Items of the built-in cross-domain test set (0: none), scored by ``evaluate`` beside ``test``:
    holograms simulated from other ranges than ``sim``
    (:func:`~sparseconn_tasks.phase_retrieval.simulate.cross_domain`), as the paper's white-blood-cell
    set came from another microscope."""
    cross_domain: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the cross-domain simulator settings (keys of ``sim``), on top of its built-in ranges."""
    cache: bool = True
    """Synthetic only: keep generated items in memory (each is made once per process)."""
    resample: bool = False
    """Synthetic only: draw new training fields every epoch (``train_size`` a epoch, never cached) instead
    of one fixed set; validation and test sets stay fixed."""
    crop: int | None = Field(None, ge=8)
    """Folder only: random square training crops of this side (None: full images)."""
    val_crop: int | None = Field(None, ge=8)
    """Folder only: centre crop of validation images (None: full size, padded to the stride)."""
    augment: bool = True
    """Folder only: random flips / 90° turns of training items from ``symmetries``."""
    symmetries: str = "half_plane"
    """Allowed flips/turns (see PhaseFolderDataset): half_plane, carrier, all or none."""

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.symmetries not in SYMMETRIES:
            raise ValueError(f"symmetries is {self.symmetries!r}; expected one of {', '.join(SYMMETRIES)}")
        if self.source == "folder" and self.root is None:
            raise ValueError("source 'folder' needs root: the data set folder (interferograms/, phases/, ...)")
        return self


class LossConfig(StrictModel):
    lam: float = Field(0.1, ge=0)
    """Weight λ of the gradient term of MixGE (Lu & Chen 2019: 0.1)."""
    operator: str = "sobel"
    """Gradient operator of MixGE: sobel, scharr or central."""

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        if self.operator not in GRADIENT_OPERATORS:
            raise ValueError(f"operator is {self.operator!r}; expected one of {', '.join(sorted(GRADIENT_OPERATORS))}")
        return self


class BaselineConfig(StrictModel):
    classical: bool = True
    """Evaluate the classical FT + unwrapping pipeline beside the networks: without a background hologram
    (polynomial aberration fit) and, where the items have one, with it (the paper's ground-truth recipe)."""
    zero: bool = True
    """Evaluate a zero-phase "model": the floor any network must clear."""
    sideband: Literal["auto", "+", "-"] | tuple[float, float] = "auto"
    """Which +1 order the classical pipeline takes: ``auto`` (the sign that makes cells positive against
    the medium), ``+`` (half plane fx > 0), ``-`` (the other one) or explicit (fx, fy) in cycles/px."""
    poly_order: int = Field(3, ge=0, le=6)
    """Order of the polynomial fitted to background pixels for aberration compensation."""
    filter_radius: float | None = Field(None, gt=0)
    """Sideband window radius, cycles/px (None: half the carrier distance)."""


class PhaseRetrievalConfig(TaskConfig):
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    phase_range: float | None = Field(None, gt=0)
    """Phase (rad) that maps to 1. Default: ``data.sim.phase_range`` for synthetic data, the folder's
    ``meta.json`` for folder data (12 if absent). Set it for folder data to infer without the folder."""

    def resolved_phase_range(self) -> float:
        if self.phase_range is not None:
            return float(self.phase_range)
        if self.data.source == "synthetic":
            return float(self.data.sim.phase_range)
        root = self.data.root
        if root is not None and root.is_dir():
            return float(read_meta(root).get("phase_range", DEFAULT_PHASE_RANGE))
        return DEFAULT_PHASE_RANGE


class _ZeroPhase:
    """Zero phase everywhere, (1, H, W): the floor of any retrieval (a score, not a method to time)."""

    timed = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.zeros_like(x[:1], dtype=np.float32)


class _ClassicalWithBackground:
    """The classical baseline compensated with the item's own sample-free hologram (``background``)."""

    needs = ("background",)

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def __call__(self, x: np.ndarray, background: np.ndarray) -> np.ndarray:
        bg = np.asarray(background, dtype=np.float64)[0]  # (1, H, W) -> (H, W)
        return FourierPhaseRetrieval(bg, **self.kwargs)(x)


class CachedDataset(Dataset):
    """Memoise a deterministic dataset's items (for the on-the-fly simulator)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self._items: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        if index not in self._items:
            self._items[index] = self.base[index]
        return self._items[index]


@register_task("phase_retrieval")
class PhaseRetrievalTask(Task):
    """Off-axis QPI: one interferogram in, the unwrapped, aberration-free phase / phase_range out."""

    Config = PhaseRetrievalConfig
    primary_metric = "psnr"
    higher_is_better = True
    metric_names = ("psnr", "ssim", "rmse_rad")
    output_suffix = ".tif"  # write_frames: a float32 TIFF of radians
    fast_dev_run = {"data.train_size": 8, "data.val_size": 2, "data.test_size": 2, "data.cross_domain_size": 2}
    metric_labels = {"psnr": "PSNR (dB)", "ssim": "SSIM", "rmse_rad": "RMSE (rad)"}
    display_names = {"supernet": "super-PRNet", "child": "NAS-PRNet"}
    baseline_aliases = {"classical": "FT + unwrap (classical)",
                        "classical_background": "FT + unwrap + background (classical)", "zero": "zero phase"}
    """Short names of the baselines for ``evaluate.baselines`` lists."""

    def __init__(self, cfg: PhaseRetrievalConfig) -> None:
        super().__init__(cfg)
        self.cfg: PhaseRetrievalConfig = cfg
        self.phase_range = cfg.resolved_phase_range()

    @property
    def target_scale(self) -> float:  # type: ignore[override]
        """The phase range: the sideband op's congruent finish reads the network's output in rad with it."""
        return self.phase_range

    # -- data ------------------------------------------------------------------------------------
    def datasets(self, seed: int) -> dict[str, Dataset]:
        d, pr = self.cfg.data, self.phase_range
        if d.source == "synthetic":
            def make(n: int, stream_seed: int, with_bg: bool = True) -> Dataset:
                ds = SyntheticPhaseDataset(d.sim, n, seed=stream_seed, phase_range=pr, with_background=with_bg)
                return CachedDataset(ds) if d.cache else ds
            seeds = split_seeds(seed, d.seed)
            train = (SyntheticPhaseDataset(d.sim, d.train_size, seed=seeds["train"], phase_range=pr, resample=True)
                     if d.resample else make(d.train_size, seeds["train"], False))
            return {"train": train, "val": make(d.val_size, seeds["val"]),
                    "test": make(d.test_size, seeds["test"])}
        root = d.root
        return {
            "train": PhaseFolderDataset(root, "train", crop=d.crop, augment=d.augment, phase_range=pr,
                                        symmetries=d.symmetries, seed=seed),
            "val": PhaseFolderDataset(root, "val", crop=d.val_crop, phase_range=pr),
            "test": PhaseFolderDataset(root, "test", phase_range=pr),
        }

    # -- loss and metrics (outputs and targets: (B, 1, H, W) normalised phase) -------------------
    def loss(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return mixge(output.float(), batch["target"].float(), lam=self.cfg.loss.lam, operator=self.cfg.loss.operator)

    def metrics(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, float]:
        pred, target = output.detach().float().clamp(0, 1), batch["target"].float()
        return {"psnr": float(psnr(pred, target)), "ssim": float(ssim(pred, target)),
                "rmse_rad": float(rmse_rad(pred, target, self.phase_range))}

    # -- inference I/O ---------------------------------------------------------------------------
    def read_input(self, path: Path) -> np.ndarray:
        return read_image(path)[None]  # (1, H, W) in [0, 1] for integer images

    def write_output(self, output: np.ndarray, path: Path) -> Path:
        """The phase map in radians as a float32 TIFF (``output`` is the normalised (1, H, W))."""
        return write_tiff(Path(path).with_suffix(".tif"), np.asarray(output, dtype=np.float32)[0] * self.phase_range)

    def iter_frames(self, path: Path) -> Iterator[np.ndarray]:
        """Each page of a multi-page TIFF as a frame (1, H, W), one at a time; any other file is one frame.
        A frame too small or constant to hold fringes is refused, naming the file and page
        (:func:`~sparseconn_tasks.phase_retrieval.imageio_.check_hologram`): the network would write NaN."""
        for frame in iter_frames(path, hologram=True):
            yield frame[None]

    def frame_count(self, path: Path) -> int:
        return count_frames(path)

    def write_frames(self, frames: Iterator[np.ndarray], path: Path) -> Path:
        """Phase maps in radians as one float32 TIFF, a page a frame in order, each written as it comes: a
        stack's predictions make a multi-page TIFF, a single frame the same file as :meth:`write_output`."""
        pages = (np.asarray(f, dtype=np.float32)[0] * self.phase_range for f in frames)
        return write_tiff_stack(Path(path).with_suffix(".tif"), pages)

    # -- baselines, latency input, pictures ------------------------------------------------------
    def baselines(self) -> dict[str, Callable[..., np.ndarray]]:
        b, pr = self.cfg.baseline, self.phase_range
        out: dict[str, Callable[..., np.ndarray]] = {}
        if b.classical:
            kw = {"filter_radius": b.filter_radius, "poly_order": b.poly_order, "sideband": b.sideband,
                  "phase_range": pr}
            out["FT + unwrap (classical)"] = FourierPhaseRetrieval(**kw)
            out["FT + unwrap + background (classical)"] = _ClassicalWithBackground(**kw)
        if b.zero:
            out["zero phase"] = _ZeroPhase()
        return out

    def eval_sets(self, seed: int) -> dict[str, Dataset]:
        d = self.cfg.data
        if d.source != "synthetic" or d.cross_domain_size == 0:
            return {}
        sim = cross_domain(d.sim, **d.cross_domain)
        # Its own stream (test seed + 7): fixed per data seed like the test split, never the same fields.
        ds = SyntheticPhaseDataset(sim, d.cross_domain_size, seed=split_seeds(seed, d.seed)["test"] + 7,
                                   phase_range=self.phase_range, with_background=True)
        return {"cross-domain": ds}

    def example_input(self, size: tuple[int, int], seed: int = 0) -> np.ndarray:
        """A simulated hologram of ``size``: a square field of side ≥ ``data.sim.size``, centre-cropped.

        Fields are never simulated below the configured size: the aberration's fringe band grows as
        the field shrinks, and the configured carrier is only known to separate it at that size.
        """
        h, w = size
        base = self.cfg.data.sim
        side = max(h, w, base.size)
        sim = base if side == base.size else SimConfig.model_validate({**base.model_dump(), "size": side})
        holo = simulate(sim, np.random.default_rng(seed)).hologram
        top, left = (side - h) // 2, (side - w) // 2
        return holo[top:top + h, left:left + w][None].astype(np.float32)  # (1, H, W)

    def panels(self, batch: dict[str, Any], outputs: dict[str, np.ndarray], scores: dict[str, str]) -> Any:
        from sparseconn_tasks.phase_retrieval.panels import phase_panels

        pr = self.phase_range
        return phase_panels(batch["input"][0, 0].numpy(), batch["target"][0, 0].numpy() * pr,
                            {name: out[0] * pr for name, out in outputs.items()}, phase_range=pr,
                            scores=scores, title=str(batch.get("name", [""])[0]))
