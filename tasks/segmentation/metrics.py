"""Segmentation metrics as pure tensor functions: a confusion matrix, and mIoU / pixel accuracy from it.

The confusion matrix is additive, so a split's mIoU is computed from the sum of its batches' matrices
(not the mean of per-batch mIoUs, which over-weights small or easy images).
"""

from __future__ import annotations

import torch

IGNORE = 255


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE
                     ) -> torch.Tensor:
    """(K, K) int64 counts, rows = truth, columns = prediction; pixels with ``ignore_index`` are skipped.

    ``pred`` and ``target`` are integer class maps of the same shape, e.g. (B, H, W).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long().to(t.device)
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    if t.numel() and (int(t.max()) >= num_classes or int(t.min()) < 0):
        raise ValueError(f"target holds class {int(t.max())} outside 0..{num_classes - 1} (and not {ignore_index})")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)  # (K*K,)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """(K,) IoU = TP / (TP + FP + FN); NaN for a class absent from both prediction and truth."""
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes present in the prediction or the truth (NaN if none)."""
    iou = iou_per_class(cm)
    present = ~torch.isnan(iou)
    return float(iou[present].mean()) if bool(present.any()) else float("nan")


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Correct pixels / scored pixels (NaN if none)."""
    total = float(cm.sum())
    return float(cm.double().diagonal().sum()) / total if total > 0 else float("nan")
