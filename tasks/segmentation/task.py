"""The ``segmentation`` task: SparseMask's semantic segmentation (cross-entropy, mIoU), on synthetic
shapes (no download) or PASCAL VOC.

Configured by the ``task:`` section of a run config (see ``tasks/segmentation.yaml``)::

    task:
      name: segmentation
      data:
        source: synthetic          # or voc (root: data/VOC2012; layouts in tasks/segmentation/voc.py)
        num_classes: 6             # must equal space.head.params.num_classes (VOC: 21)
        size: 64                   # synthetic only: image side in px
      loss: {ignore_index: 255}

Network outputs are class logits (B, K, H, W); targets are (B, H, W) int64 with 255 = not scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field, field_validator, model_validator
from sparseconn_tasks.segmentation.data import (
    IGNORE,
    SyntheticShapesDataset,
    denormalise,
    normalise,
    read_rgb,
    voc_palette,
)
from sparseconn_tasks.segmentation.metrics import confusion_matrix, mean_iou, pixel_accuracy
from sparseconn_tasks.segmentation.scenes import SCENE_CLASSES, SyntheticScenesDataset
from sparseconn_tasks.segmentation.voc import VOCSegmentationDataset, train_split
from torch.utils.data import Dataset

from sparseconn.errors import ConfigError
from sparseconn.fileio import atomic_path
from sparseconn.heads import head_channels
from sparseconn.schema import StrictModel
from sparseconn.task import Task, TaskConfig, register_task, split_seeds

CONFUSION = "confusion"
"""Key of the summed (K, K) confusion matrix in :meth:`SegmentationTask.metric_sums`."""


class DataConfig(StrictModel):
    source: Literal["synthetic", "scenes", "voc"] = "synthetic"
    """``scenes``: three colour families of objects, each split in two by texture, shape or size, with
    occlusion and look-alike clutter, so that classes need context at several scales
    (:mod:`sparseconn_tasks.segmentation.scenes`; 7 classes); ``synthetic``: the easy
    colour-coded shapes (a smoke test); ``voc``: PASCAL VOC in ``root``. The synthetic sets are made on the fly."""
    root: Path | None = None
    """VOC folder (``JPEGImages/``, ``SegmentationClass/``, ``ImageSets/Segmentation/``); required for voc.
    Relative paths are read from the working directory."""
    sbd_root: Path | None = None
    """VOC only: the SBD release's ``dataset/`` folder (``img/``, ``cls/*.mat``, ``train.txt``, ``val.txt``),
    merged into the ``train_aug`` split. Not needed for SBD pre-converted into ``root``
    (``SegmentationClassAug/``, ``ImageSets/Segmentation/train_aug.txt``)."""
    train_split: Literal["auto", "train", "train_aug"] = "auto"
    """VOC only: the training split. ``train_aug``: VOC train + SBD train + SBD val minus VOC val (10,582
    images, the usual VOC training set); ``auto``: ``train_aug`` when ``sbd_root`` is set or
    ``root/ImageSets/Segmentation/train_aug.txt`` exists, else ``train``."""
    num_classes: int | None = Field(None, ge=2, le=255)
    """Classes including the background 0; must equal ``space.head.params.num_classes``.
    Default: 21 for voc, 7 for scenes (fixed by the scene grammar), 6 for synthetic."""
    size: int = Field(64, ge=16)
    """Synthetic only: image side in px."""
    train_size: int = Field(256, ge=1)
    """Synthetic only: number of training items (fixed per run seed)."""
    val_size: int = Field(32, ge=1)
    test_size: int = Field(32, ge=1)
    seed: int = Field(0, ge=0)
    """Synthetic only: seed of the validation and test items (the same for every run seed)."""
    max_shapes: int = Field(4, ge=1)
    """Synthetic and scenes: at most this many labelled shapes an image."""
    distractors: int = Field(4, ge=1)
    """Scenes only: at most this many class-0 look-alikes an image (textured patches, plain shapes)."""
    ignore_border: int = Field(1, ge=0, le=2)
    """Synthetic and scenes: px around each shape outline labelled 255 (not scored), like VOC's outlines."""
    crop: int | None = Field(None, ge=16)
    """VOC only: random square training crops of this side, padded where the (scaled) image is smaller:
    image with the mean colour, label with 255 (paper: 513)."""
    scale: tuple[float, float] | None = None
    """VOC only: ``[lo, hi]``, each training item first scaled by a random factor in this range (image
    bilinear, label nearest; ``segmentation_voc.yaml``: ``[0.5, 2.0]``). Default: no scaling."""
    augment: bool = True
    """VOC: random horizontal flips of training items; scenes: random flips and quarter turns."""
    test_split: str = "val"
    """VOC only: the split scored by ``evaluate`` (VOC's test labels are not public)."""

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.source == "voc" and self.root is None:
            raise ValueError("source 'voc' needs root: the VOC folder (JPEGImages/, SegmentationClass/, ...)")
        if self.source == "scenes" and self.num_classes not in (None, SCENE_CLASSES):
            raise ValueError(f"source 'scenes' has {SCENE_CLASSES} classes (background + 3 colour families x 2); "
                             f"num_classes is {self.num_classes}")
        return self

    @field_validator("scale")
    @classmethod
    def _check_scale(cls, scale: tuple[float, float] | None) -> tuple[float, float] | None:
        if scale is not None and not 0 < scale[0] <= scale[1]:
            raise ValueError(f"{list(scale)} is not a range: expected [lo, hi] with 0 < lo <= hi, e.g. [0.5, 2.0]")
        return scale

    @property
    def classes(self) -> int:
        if self.num_classes is not None:
            return self.num_classes
        return {"voc": 21, "scenes": SCENE_CLASSES}.get(self.source, 6)


class LossConfig(StrictModel):
    ignore_index: int = IGNORE
    """Target value that is neither trained on nor scored (VOC: 255 on object outlines)."""


class SegmentationConfig(TaskConfig):
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)


@register_task("segmentation")
class SegmentationTask(Task):
    """RGB image in, per-pixel class logits out; scored by mIoU over a split's summed confusion matrix."""

    Config = SegmentationConfig
    primary_metric = "miou"
    higher_is_better = True
    metric_names = ("miou", "pixel_acc")
    fast_dev_run = {"data.train_size": 8, "data.val_size": 2, "data.test_size": 2}
    input_suffixes = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
    output_suffix = ".png"  # write_output: a palette PNG
    metric_labels = {"miou": "mIoU", "pixel_acc": "pixel acc."}
    display_names = {"supernet": "SparseMask supernet", "child": "SparseMask child"}

    @classmethod
    def check_space(cls, cfg: SegmentationConfig, space: Any) -> None:
        if space.head is None:  # no head: the network's classes are checked on its first output
            return
        classes = head_channels(space.head.name, space.head.params)
        if classes != cfg.data.classes:
            raise ValueError(f"task.data.num_classes is {cfg.data.classes} but head {space.head.name!r} with "
                             f"space.head.params {space.head.params} outputs {classes} classes; they must be equal")

    def __init__(self, cfg: SegmentationConfig) -> None:
        super().__init__(cfg)
        self.cfg: SegmentationConfig = cfg
        self.num_classes = cfg.data.classes
        self.ignore_index = cfg.loss.ignore_index

    # -- data ------------------------------------------------------------------------------------
    def datasets(self, seed: int) -> dict[str, Dataset]:
        d, k = self.cfg.data, self.num_classes
        if d.source in ("synthetic", "scenes"):
            def make(n: int, stream: int, train: bool = False) -> Dataset:
                if d.source == "scenes":
                    return SyntheticScenesDataset(d.size, n, seed=stream, objects=d.max_shapes,
                                                  distractors=d.distractors, ignore_border=d.ignore_border,
                                                  augment=d.augment and train)
                return SyntheticShapesDataset(d.size, k, n, seed=stream, max_shapes=d.max_shapes,
                                              ignore_border=d.ignore_border)
            seeds = split_seeds(seed, d.seed)
            return {"train": make(d.train_size, seeds["train"], train=True), "val": make(d.val_size, seeds["val"]),
                    "test": make(d.test_size, seeds["test"])}
        root = d.root
        assert root is not None  # checked by DataConfig
        split = train_split(root, d.train_split, d.sbd_root)
        return {"train": VOCSegmentationDataset(root, split, k, crop=d.crop, augment=d.augment, seed=seed,
                                                scale=d.scale, sbd_root=d.sbd_root),
                "val": VOCSegmentationDataset(root, "val", k),
                "test": VOCSegmentationDataset(root, d.test_split, k)}

    # -- loss and metrics (outputs (B, K, H, W) logits; targets (B, H, W) int64) ------------------
    def _check_classes(self, output: torch.Tensor) -> None:
        if output.shape[1] != self.num_classes:
            raise ConfigError(f"the network outputs {output.shape[1]} classes but task.data.num_classes is "
                              f"{self.num_classes}; set space.head.params.num_classes to match")

    def loss(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        self._check_classes(output)
        return F.cross_entropy(output.float(), batch["target"].long(), ignore_index=self.ignore_index)

    def confusion(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """(K, K) int64 confusion matrix of one batch (rows: truth, columns: prediction)."""
        self._check_classes(output)
        pred = output.detach().argmax(1)  # (B, H, W)
        return confusion_matrix(pred, batch["target"], self.num_classes, self.ignore_index)

    def metrics(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, float]:
        cm = self.confusion(output, batch)
        return {"miou": mean_iou(cm), "pixel_acc": pixel_accuracy(cm)}

    def metric_sums(self, output: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {CONFUSION: self.confusion(output, batch).to(torch.float64)}

    def reduce_metrics(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        cm = sums.get(CONFUSION)
        if cm is None or float(cm.sum()) == 0:
            return {}
        return {"miou": mean_iou(cm), "pixel_acc": pixel_accuracy(cm)}

    # -- inference I/O ---------------------------------------------------------------------------
    def read_input(self, path: Path) -> np.ndarray:
        return normalise(read_rgb(Path(path)))  # (3, H, W)

    def write_output(self, output: np.ndarray, path: Path) -> Path:
        """The arg-max label map as a palette PNG (VOC colours; pixel values are class indices)."""
        label = np.asarray(output).argmax(0).astype(np.uint8)  # (K, H, W) -> (H, W)
        im = Image.fromarray(label, mode="P")
        im.putpalette(voc_palette().reshape(-1).tolist())
        target = Path(path).with_suffix(".png")
        with atomic_path(target) as tmp:
            im.save(tmp, format="PNG")
        return target

    # -- latency input, pictures -----------------------------------------------------------------
    def example_input(self, size: tuple[int, int], seed: int = 0) -> np.ndarray:
        """A synthetic image of ``size`` (a square of the longer side, cropped): a scene with source
        ``scenes``, else shapes."""
        h, w = size
        if self.cfg.data.source == "scenes":
            img, _ = SyntheticScenesDataset(max(h, w), 1, seed=seed, cache=False).render(0)
        else:
            img, _ = SyntheticShapesDataset(max(h, w), self.num_classes, 1, seed=seed).render(0)
        return normalise(img[:h, :w])  # (3, H, W)

    def panels(self, batch: dict[str, Any], outputs: dict[str, np.ndarray], scores: dict[str, str]) -> Any:
        from matplotlib.figure import Figure

        pal = voc_palette().astype(np.float32) / 255.0
        panels = [("image", denormalise(batch["input"][0].numpy())),
                  ("truth", pal[batch["target"][0].numpy().astype(np.int64)])]
        for name, out in outputs.items():
            title = f"{name}\n{scores.get(name, '')}".strip()
            panels.append((title, pal[np.asarray(out).argmax(0)]))
        fig = Figure(figsize=(2.8 * len(panels), 2.8))
        for i, (title, img) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            ax.imshow(img, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
        name = batch.get("name", [""])
        fig.suptitle(str(name[0]) if name else "", fontsize=9)
        return fig
