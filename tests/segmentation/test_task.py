"""The registered ``segmentation`` task: configs, loss, split-level mIoU, inference I/O, pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sparseconn_tasks.segmentation.data import IGNORE, VOCSegmentationDataset
from sparseconn_tasks.segmentation.task import SegmentationConfig, SegmentationTask

from sparseconn.config import load_space_config
from sparseconn.engine.config import load_run_config, validate_run_config
from sparseconn.engine.metrics import MetricAccumulator
from sparseconn.errors import ConfigError
from sparseconn.task import TASKS

ROOT = Path(__file__).resolve().parents[2]


def make_task(**data) -> SegmentationTask:
    small = {"size": 32, "num_classes": 3, "train_size": 4, "val_size": 2, "test_size": 2}
    return SegmentationTask(SegmentationConfig.model_validate({"data": {**small, **data}}))


def one_hot_logits(label: torch.Tensor, k: int) -> torch.Tensor:
    """(B, H, W) labels -> (B, K, H, W) logits whose arg-max is the label (255 -> class 0)."""
    lab = label.clone()
    lab[lab == IGNORE] = 0
    return torch.nn.functional.one_hot(lab, k).permute(0, 3, 1, 2).float() * 10


@pytest.mark.parametrize("name", ["segmentation.yaml", "segmentation_voc.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_run_config(ROOT / "tasks" / name)
    task_cfg = cfg.task
    assert isinstance(task_cfg, SegmentationConfig) and TASKS.get("segmentation") is SegmentationTask
    assert task_cfg.data.classes == cfg.space.head.params["num_classes"]
    assert [r.name for r in cfg.search.regularizers] == ["stage_target"]
    if name == "segmentation_voc.yaml":  # SparseMask's own values; the short synthetic search uses stronger ones
        assert cfg.search.regularizers[0].coef == 0.01 and cfg.search.connection_optimizer.name == "sgd"
    opt = cfg.search.optimizer
    # SparseMask's encoder learns at 0.1x from ImageNet weights; the synthetic config's trains from scratch
    encoder_scale = 0.1 if name == "segmentation_voc.yaml" else 1.0
    assert (opt.name, opt.lr, opt.momentum, opt.weight_decay, opt.encoder_lr_scale) == ("sgd", 0.05, 0.9, 4e-5,
                                                                                        encoder_scale)
    assert cfg.search.schedule.name == "poly" and cfg.search.schedule.power == 0.9
    assert cfg.prune.threshold == 1e-3 and cfg.prune.redundancy


def test_voc_defaults_to_21_classes() -> None:
    assert SegmentationConfig.model_validate({"data": {"source": "voc", "root": "x"}}).data.classes == 21
    assert SegmentationConfig.model_validate({}).data.classes == 6


@pytest.mark.parametrize(("task", "match"), [
    ({"data": {"source": "voc"}}, r"task\.data.*needs root"),
    ({"data": {"source": "coco"}}, r"task\.data\.source"),
    ({"data": {"num_classes": 1}}, r"task\.data\.num_classes"),
    ({"dataa": {}}, r"task\.dataa"),
])
def test_bad_task_config_names_the_key(task: dict, match: str) -> None:
    space = load_space_config(ROOT / "tasks" / "segmentation.yaml").model_dump(mode="json")
    with pytest.raises(ConfigError, match=match):
        validate_run_config({"task": {"name": "segmentation", **task}, "space": space}, "cfg.yaml")


def test_loss_ignores_255_and_class_count_mismatch_is_one_line() -> None:
    task = make_task()
    target = torch.tensor([[[0, 1], [2, IGNORE]]])  # (1, 2, 2)
    logits = one_hot_logits(target, 3)
    logits[0, :, 1, 1] = torch.tensor([0.0, 0.0, 50.0])  # wrong, but on an ignored pixel
    assert float(task.loss(logits, {"input": torch.zeros(1, 3, 2, 2), "target": target})) < 1e-3
    with pytest.raises(ConfigError, match="outputs 5 classes.*num_classes is 3") as info:
        task.loss(torch.zeros(1, 5, 2, 2), {"target": target})
    assert "\n" not in str(info.value)


def test_metric_accumulator_gives_the_split_miou_from_summed_confusion() -> None:
    task = make_task()
    acc = MetricAccumulator(task)
    # batch 1: truth [0 0 1 1], prediction [0 1 1 1]; batch 2: truth [2 255], prediction [2 0]
    t1, p1 = torch.tensor([[[0, 0], [1, 1]]]), torch.tensor([[[0, 1], [1, 1]]])
    t2, p2 = torch.tensor([[[2, IGNORE]]]), torch.tensor([[[2, 0]]])
    for t, p in ((t1, p1), (t2, p2)):
        batch = {"input": torch.zeros(1, 3, *t.shape[1:]), "target": t}
        acc.add(one_hot_logits(p, 3), batch, {"loss": 1.0})
    res = acc.result()
    # summed confusion: class 0 IoU 1/2, class 1 IoU 2/3, class 2 IoU 1; 4 of 5 scored pixels right
    assert res["miou"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert res["pixel_acc"] == pytest.approx(4 / 5)
    assert res["loss"] == pytest.approx(1.0)
    sums = task.metric_sums(one_hot_logits(t1, 3), {"input": torch.zeros(1, 3, 2, 2), "target": t1})
    assert sums["confusion"].shape == (3, 3) and sums["confusion"].dtype == torch.float64
    assert task.metrics(one_hot_logits(t1, 3), {"target": t1}) == {"miou": 1.0, "pixel_acc": 1.0}


def test_synthetic_splits_follow_the_run_seed_for_training_only() -> None:
    task = make_task()
    a, b = task.datasets(0), task.datasets(1)
    assert not torch.equal(a["train"][0]["input"], b["train"][0]["input"])
    assert torch.equal(a["test"][0]["input"], b["test"][0]["input"])
    assert not torch.equal(a["val"][0]["input"], a["test"][0]["input"])
    assert [len(a[s]) for s in ("train", "val", "test")] == [4, 2, 2]


def test_voc_source_builds_the_splits(tmp_path: Path) -> None:
    from tests.segmentation.test_data import write_voc

    root = write_voc(tmp_path / "VOC", {"train": ["a", "b"], "val": ["c"]})
    task = make_task(source="voc", root=str(root), crop=32)
    sets = task.datasets(0)
    assert isinstance(sets["train"], VOCSegmentationDataset) and sets["train"][0]["input"].shape == (3, 32, 32)
    assert sets["test"][0]["input"].shape == (3, 40, 52)


def test_read_input_write_output_round_trip(tmp_path: Path) -> None:
    task = make_task()
    rgb = np.random.default_rng(0).integers(0, 255, (45, 61, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    x = task.read_input(tmp_path / "in.png")
    assert x.shape == (3, 45, 61) and x.dtype == np.float32
    logits = np.zeros((3, 45, 61), np.float32)
    logits[2, :10] = 1.0
    logits[1, 10:20] = 1.0
    out = task.write_output(logits, tmp_path / "pred" / "in.tif")
    assert out == tmp_path / "pred" / "in.png"
    with Image.open(out) as im:
        assert im.mode == "P" and im.size == (61, 45)
        lab = np.asarray(im)
    assert (lab[:10] == 2).all() and (lab[10:20] == 1).all() and (lab[20:] == 0).all()
    assert [p.name for p in (tmp_path / "pred").iterdir()] == ["in.png"]  # no temporary left behind


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_float_tiff_with_nan_or_inf_is_refused_as_the_phase_task_refuses_it(tmp_path: Path, value: float) -> None:
    import tifffile

    from sparseconn.errors import DataError

    image = np.random.default_rng(0).random((24, 32), dtype=np.float32)
    image[3, 4] = image[5, 6] = value
    tifffile.imwrite(tmp_path / "f.tif", image)
    with pytest.raises(DataError, match=r"^\S*f\.tif: 2 NaN or inf values$"):
        make_task().read_input(tmp_path / "f.tif")
    image[3, 4] = image[5, 6] = 0.5
    tifffile.imwrite(tmp_path / "f.tif", image)
    assert make_task().read_input(tmp_path / "f.tif").shape == (3, 24, 32)


def test_example_input_and_panels() -> None:
    task = make_task()
    x = task.example_input((40, 72))
    assert x.shape == (3, 40, 72) and x.dtype == np.float32
    item = task.datasets(0)["test"][0]
    batch = {"input": item["input"][None], "target": item["target"][None], "name": [item["name"]]}
    fig = task.panels(batch, {"child": one_hot_logits(item["target"][None], 3)[0].numpy()}, {"child": "MIOU 1"})
    assert fig is not None and len(fig.axes) == 3


def test_class_count_must_match_the_head_when_the_config_loads() -> None:
    path = ROOT / "tasks" / "segmentation.yaml"
    with pytest.raises(ConfigError, match=r"segmentation\.yaml: task\.data\.num_classes is 7 but head "
                                          r"'segmentation' with space\.head\.params .* outputs 21 classes"):
        load_run_config(path, ["space.head.params.num_classes=21"])
    load_run_config(path, ["space.head.params.num_classes=21", "task.data.num_classes=21",
                           "task.data.source=synthetic"])  # agreeing: fine (the scenes have 7 classes)


def test_class_count_is_the_heads_declared_output_channels() -> None:
    """A head without num_classes in its params outputs its default (21 classes): the check sees that."""
    path = ROOT / "tasks" / "segmentation.yaml"
    with pytest.raises(ConfigError, match=r"num_classes is 7 but head 'segmentation' with space\.head\.params "
                                          r"\{\} outputs 21 classes"):
        load_run_config(path, ["space.head.params={}"])
    load_run_config(path, ["space.head.params={}", "task.data.num_classes=21", "task.data.source=synthetic"])
