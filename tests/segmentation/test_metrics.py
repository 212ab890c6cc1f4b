"""Confusion matrix, mIoU and pixel accuracy against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from sparseconn_tasks.segmentation.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


def test_confusion_matrix_by_hand() -> None:
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = confusion_matrix(pred, target, num_classes=4)
    # rows: truth, columns: prediction; the 255 pixel is not counted; class 3 is absent everywhere
    expected = torch.tensor([[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(cm, expected)
    assert cm.dtype == torch.int64 and int(cm.sum()) == 7
    # IoU: class 0: 2 / (3 + 3 - 2) = 0.5; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 1 / (2 + 1 - 1) = 0.5
    iou = iou_per_class(cm)
    assert iou[:3].tolist() == pytest.approx([0.5, 2 / 3, 0.5])
    assert math.isnan(float(iou[3]))
    assert mean_iou(cm) == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)  # class 3 excluded from the mean
    assert pixel_accuracy(cm) == pytest.approx(5 / 7)


def test_class_only_predicted_counts_with_iou_zero() -> None:
    target = torch.tensor([0, 0, 0, 0])
    pred = torch.tensor([0, 0, 0, 1])
    cm = confusion_matrix(pred, target, num_classes=3)
    assert mean_iou(cm) == pytest.approx((3 / 4 + 0.0) / 2)  # class 1: FP only -> IoU 0; class 2 absent


def test_ignore_only_and_custom_ignore_index() -> None:
    t = torch.full((2, 3), 255)
    cm = confusion_matrix(torch.zeros(2, 3, dtype=torch.long), t, num_classes=2)
    assert int(cm.sum()) == 0 and math.isnan(mean_iou(cm)) and math.isnan(pixel_accuracy(cm))
    cm = confusion_matrix(torch.tensor([1, 0]), torch.tensor([1, 7]), num_classes=2, ignore_index=7)
    assert cm.tolist() == [[0, 0], [0, 1]]


def test_summed_matrices_give_the_split_miou_not_the_mean_of_batches() -> None:
    a = confusion_matrix(torch.tensor([0, 0, 0, 0, 0, 0, 0, 0]), torch.tensor([0, 0, 0, 0, 0, 0, 0, 1]), 2)
    b = confusion_matrix(torch.tensor([1, 1]), torch.tensor([1, 1]), 2)
    split = mean_iou(a + b)
    assert split == pytest.approx((7 / 8 + 2 / 3) / 2)
    assert split != pytest.approx((mean_iou(a) + mean_iou(b)) / 2)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match="class 5"):
        confusion_matrix(torch.zeros(2), torch.tensor([0, 5]), 2)
