"""The task's metric: Jaccard index over all stacked masks, per-class IoU, and skill.

The score of a set of predicted masks is `torchmetrics.JaccardIndex(task="multiclass",
num_classes=49)` applied once to all predictions against all targets: one confusion
matrix summed over every pixel of every video, then the mean IoU over classes. A class
absent from both the predictions and the targets is left out of that mean (torchmetrics
1.9 behaviour, checked in tests/test_metrics.py). Feeding the metric batch by batch gives
exactly the same number, because only the confusion counts are accumulated.

    score = MaskScore()
    for pred, target in batches:
        score.update(pred, target)
    score.jaccard(), score.per_class_iou()
"""

from __future__ import annotations

import math

import torch
from torchmetrics import JaccardIndex

from .classes import CLASS_NAMES, NUM_CLASSES
from .errors import DataError


def task_metric(*, validate_args: bool = True) -> JaccardIndex:
    """The metric exactly as the task defines it (a fresh torchmetrics object).

    The one place it is built: evaluation (`MaskScore`) and the trainers' validation use it.
    `validate_args=False` skips torchmetrics' own input checks (a `torch.unique` per update);
    the number is the same.
    """
    return JaccardIndex(task="multiclass", num_classes=NUM_CLASSES, validate_args=validate_args)


class MaskScore:
    """Streamed Jaccard index of predicted masks against true masks.

    Args:
        device: where the confusion matrix lives; put it beside the masks (e.g. "cuda")
            so that updates need no copies.
    """

    def __init__(self, *, device: str | torch.device = "cpu") -> None:
        # torchmetrics' argument checks (slower than the update itself) are replaced by the
        # range check in `update`
        self.metric = task_metric(validate_args=False).to(device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: integer class ids 0..48 of the same shape, e.g. (B, H, W)."""
        if pred.shape != target.shape:
            raise DataError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        for name, x in (("prediction", pred), ("target", target)):
            if x.is_floating_point() or (x.numel() and (int(x.min()) < 0 or int(x.max()) >= NUM_CLASSES)):
                raise DataError(f"{name} must hold integer class ids 0..{NUM_CLASSES - 1}")
        device = self.metric.confmat.device
        self.metric.update(pred.to(device).long(), target.to(device).long())

    def jaccard(self) -> float:
        """Mean IoU over the classes present in the predictions or the targets (clamped to
        [0, 1]: a perfect answer can come out a float32 rounding above 1)."""
        return min(max(float(self.metric.compute()), 0.0), 1.0)

    def confusion(self) -> torch.Tensor:
        """(49, 49) counts on the CPU: row = true class, column = predicted class."""
        return self.metric.confmat.detach().cpu().long()

    def per_class_iou(self) -> list[float | None]:
        """IoU of each of the 49 classes; None for a class absent from predictions and targets."""
        confmat = self.confusion()
        tp = confmat.diag()
        union = confmat.sum(0) + confmat.sum(1) - tp
        return [None if int(u) == 0 else float(t) / float(u) for t, u in zip(tp, union, strict=True)]

    def reset(self) -> None:
        """Forget every update."""
        self.metric.reset()


def jaccard(pred: torch.Tensor, target: torch.Tensor) -> float:
    """The task's score of one stack of predictions against targets, in one call."""
    score = MaskScore(device=pred.device)
    score.update(pred, target)
    return score.jaccard()


def skill(j: float, j_copy: float, j_oracle: float) -> float | None:
    """Skill over copy-last, S = (J - J_copy) / (J_oracle - J_copy).

    0 means no better than copying the mask of frame 11, 1 means as good as segmenting
    the true frame 22. None when the oracle does not beat copy-last (the scale is undefined).
    """
    span = j_oracle - j_copy
    if not math.isfinite(span) or span <= 0:
        return None
    return (j - j_copy) / span


def named_per_class(values: list[float | None]) -> dict[str, float | None]:
    """Per-class values keyed `"<id> <name>"` (e.g. "3 blue metal cube") for reports."""
    return {f"{cid} {CLASS_NAMES[cid]}": v for cid, v in enumerate(values)}
