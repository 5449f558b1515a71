"""The task's metric on hand-made masks with hand-computed answers."""

import math

import pytest
import torch

from simvp_unet.errors import DataError
from simvp_unet.metrics import MaskScore, jaccard, named_per_class, skill, task_metric

# Two 2x3 masks. Per class (true row x predicted column):
#   class 0: true {a, b}, predicted {a}        -> tp 1, union 2 -> 1/2
#   class 1: true {c, d}, predicted {b, c, d}  -> tp 2, union 3 -> 2/3
#   class 7: true {e, f}, predicted {e}        -> tp 1, union 2 -> 1/2
#   class 9: true {},     predicted {f}        -> tp 0, union 1 -> 0   (counted: predicted only)
#   the 45 other classes occur in neither      -> left out of the mean
PRED = torch.tensor([[[0, 1, 1], [1, 7, 9]]])
TARGET = torch.tensor([[[0, 0, 1], [1, 7, 7]]])
EXPECTED = (1 / 2 + 2 / 3 + 1 / 2 + 0) / 4


def test_hand_made_case_matches_hand_computation():
    assert jaccard(PRED, TARGET) == pytest.approx(EXPECTED)
    # the same as the task's own torchmetrics call
    assert float(task_metric()(PRED, TARGET)) == pytest.approx(EXPECTED)


def test_per_class_iou_and_absent_classes():
    score = MaskScore()
    score.update(PRED, TARGET)
    iou = score.per_class_iou()
    assert len(iou) == 49
    assert iou[0] == pytest.approx(1 / 2)
    assert iou[1] == pytest.approx(2 / 3)
    assert iou[7] == pytest.approx(1 / 2)
    assert iou[9] == 0.0
    assert sum(v is None for v in iou) == 45
    present = [v for v in iou if v is not None]
    assert sum(present) / len(present) == pytest.approx(score.jaccard())
    named = named_per_class(iou)
    assert named["0 background"] == pytest.approx(1 / 2)
    assert named["9 gray rubber cube"] == 0.0


def test_streamed_updates_equal_one_global_confusion_matrix():
    # Batch 1 is perfect on class 1; batch 2 is all wrong on a large area of class 2.
    pred1, target1 = torch.ones(1, 2, 2, dtype=torch.long), torch.ones(1, 2, 2, dtype=torch.long)
    pred2, target2 = torch.zeros(1, 4, 4, dtype=torch.long), torch.full((1, 4, 4), 2)
    score = MaskScore()
    score.update(pred1, target1)
    score.update(pred2, target2)
    # global: class 1 -> 1, class 0 -> 0 (16 predicted, none true), class 2 -> 0
    assert score.jaccard() == pytest.approx(1 / 3)
    one_shot = jaccard(torch.cat([pred1.flatten(), pred2.flatten()]),
                       torch.cat([target1.flatten(), target2.flatten()]))
    assert score.jaccard() == pytest.approx(one_shot)
    # an average of per-batch ratios would give (1 + 0) / 2: that is not the metric
    assert score.jaccard() != pytest.approx(0.5)
    score.reset()
    score.update(pred1, target1)
    assert score.jaccard() == pytest.approx(1.0)


def test_uint8_inputs_and_shape_mismatch():
    assert jaccard(PRED.to(torch.uint8), TARGET.to(torch.uint8)) == pytest.approx(EXPECTED)
    with pytest.raises(DataError, match="shape"):
        MaskScore().update(PRED, TARGET[:, :1])
    with pytest.raises(DataError, match="class ids 0..48"):
        MaskScore().update(PRED + 40, TARGET)
    with pytest.raises(DataError, match="class ids 0..48"):
        MaskScore().update(PRED, TARGET - 1)
    with pytest.raises(DataError, match="integer"):
        MaskScore().update(PRED.float(), TARGET)


def test_skill():
    assert skill(0.5, 0.25, 0.75) == pytest.approx(0.5)
    assert skill(0.25, 0.25, 0.75) == 0.0
    assert skill(0.75, 0.25, 0.75) == 1.0
    assert skill(0.2, 0.25, 0.75) == pytest.approx(-0.1)
    assert skill(0.5, 0.6, 0.6) is None
    assert skill(0.5, 0.6, 0.5) is None
    assert skill(0.5, 0.2, math.nan) is None
