"""The segmenter: a U-Net from one RGB frame to its 49-class mask.

    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg

Trains on every labeled frame of the training videos, either whole or as square random crops
(most of them centred near an object, since most pixels are floor), with cross-entropy;
validates on whole frames with the task's metric (one global confusion matrix over all frames,
macro Jaccard over present classes) at full size. A U-Net is fully convolutional: trained on
crops, it segments whole frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset

from ..data.datasets import FrameDataset
from ..data.layout import COMPETITION, TaskShape
from ..inference import Segmenter, check_network, logits_to_size, masks_to_size
from ..metrics import task_metric
from ..models.unet import UNet, UNetConfig
from ..viz import mask_to_rgb
from .common import TrainModule, TrainSettings, picture_rows, to_hwc
from .splits import check_splits, require_true_masks


@dataclass
class SegmenterConfig(TrainSettings):
    """Settings of `simvp-unet train segmenter` (see `TrainSettings` for the shared ones).

    Args:
        train_splits: labeled splits whose frames train the U-Net.
        crop: side of the square training crops, in pixels at the working resolution
            (0: whole frames); validation and inference always see whole frames.
        crop_on_objects: fraction of the crops centred near a random object pixel (the
            others anywhere); a frame without objects gets a crop anywhere.
        factor_weights: for a factored split head, one weight per factor of
            `model.object_factors` (shape, material, color) multiplying that factor's
            cross-entropy (`split_cross_entropy`); empty: all 1, the plain cross-entropy.
        model: the U-Net (3 input channels, 49 classes).
    """

    train_splits: list[str] = field(default_factory=lambda: ["train"])
    crop: int = 0
    crop_on_objects: float = 0.75
    factor_weights: list[float] = field(default_factory=list)
    model: UNetConfig = field(default_factory=UNetConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_network(self.model, Segmenter.NETWORK)
        if not self.train_splits:
            raise ValueError("train_splits must name at least one labeled split")
        if not 0 <= self.crop <= min(self.resolution):
            raise ValueError(f"crop must be 0 (whole frames) or at most the resolution's smaller side "
                             f"{min(self.resolution)}, got {self.crop}")
        if not 0 <= self.crop_on_objects <= 1:
            raise ValueError(f"crop_on_objects must be in [0, 1], got {self.crop_on_objects}")
        if self.factor_weights:
            factors = self.model.object_factors
            if not factors:
                raise ValueError("factor_weights needs a factored split head (model.object_factors)")
            if len(self.factor_weights) != len(factors) or not all(
                    math.isfinite(w) and w > 0 for w in self.factor_weights):
                raise ValueError(f"factor_weights must be {len(factors)} positive numbers, one per factor "
                                 f"of model.object_factors {list(factors)}, got {self.factor_weights}")


# ---------------------------------------------------------------------------- crops, loss


def random_crops(images: torch.Tensor, masks: torch.Tensor, size: int, *, on_objects: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One square crop per sample: images (B, C, H, W) and masks (B, H, W) -> (B, C, size, size)
    and (B, size, size).

    With probability `on_objects` (and where the mask has an object) the crop is centred on a
    random object pixel, moved by up to a quarter of its side so that objects do not always sit
    in the middle; otherwise it lies anywhere. Crops stay inside the frame.
    """
    height, width = masks.shape[-2:]
    if not 0 < size <= min(height, width):
        raise ValueError(f"crop {size} does not fit frames of {height}x{width}")

    def rand(*shape: int) -> torch.Tensor:  # uniform draws in [0, 1), on the CPU
        return torch.rand(*shape, generator=generator)

    tops, lefts = [], []
    for mask in masks:
        objects = (mask > 0).nonzero()
        if len(objects) and float(rand(1)) < on_objects:
            cy, cx = objects[int(rand(1) * len(objects))].tolist()
            jitter = ((rand(2) - 0.5) * (size / 2)).round().long().tolist()
            cy, cx = cy + jitter[0], cx + jitter[1]
        else:
            cy, cx = int(rand(1) * height), int(rand(1) * width)
        tops.append(min(max(cy - size // 2, 0), height - size))
        lefts.append(min(max(cx - size // 2, 0), width - size))
    rows = [slice(top, top + size) for top in tops]
    cols = [slice(left, left + size) for left in lefts]
    return (torch.stack([im[:, r, c] for im, r, c in zip(images, rows, cols, strict=True)]),
            torch.stack([m[r, c] for m, r, c in zip(masks, rows, cols, strict=True)]))


def split_cross_entropy(z: torch.Tensor, objects: torch.Tensor, target: torch.Tensor,
                        factors: list[int], weights: list[float] | None = None) -> torch.Tensor:
    """The split head's mean cross-entropy from its raw outputs (`UNet.split_logits`).

    The same number as the cross-entropy of the num_classes log-probabilities that the head's
    `forward` builds: -log p(class) is the object-or-background term (binary cross-entropy of
    z) plus, on object pixels, each factor's cross-entropy for its part of the class id
    (row-major: the last factor varies fastest), averaged over every pixel. Without the
    full-resolution num_classes channels a training step is faster
    (benchmarks/results/segmenter.md, variant fast-loss-11-epochs). `weights` (one per factor,
    default all 1) multiply the factors' terms. z (B, 1, H, W), objects (B, sum(factors), H, W),
    target long (B, H, W) -> scalar.
    """
    weights = list(weights) if weights else [1.0] * len(factors)
    is_object = target > 0
    total = F.binary_cross_entropy_with_logits(z[:, 0].float(), is_object.float(), reduction="sum")
    rest = (target - 1).clamp(min=0)  # the object class id, 0-based
    parts = objects.float().split(list(factors), dim=1)
    for part, size, weight in zip(reversed(parts), reversed(factors), reversed(weights), strict=True):
        value = torch.where(is_object, rest % size, -100)  # -100: ignored (background)
        rest = rest // size
        total = total + weight * F.cross_entropy(part, value, ignore_index=-100, reduction="sum")
    return total / target.numel()


class SegmenterModule(TrainModule):
    """U-Net training: frames (B, 3, H, W) uint8 + masks (B, H, W), whole or cropped ->
    cross-entropy; validation on whole frames.

    Args:
        config: the resolved `SegmenterConfig`.
    """

    kind = "segmenter"
    config_class = SegmenterConfig
    monitor = "val/jaccard"
    monitor_mode = "max"

    def __init__(self, config: SegmenterConfig, shape: TaskShape = COMPETITION) -> None:
        super().__init__(config, shape)
        self.model = UNet(config.model)
        self.val_jaccard = task_metric()

    @classmethod
    def datasets(cls, config: SegmenterConfig, root: Path) -> tuple[Dataset, Dataset]:
        """(train, val): every labeled frame of the training splits and of the val split; each
        of them must have its true masks."""
        check_splits(root, [*config.train_splits, config.val_split])
        for split in [*config.train_splits, config.val_split]:
            require_true_masks(root, split, "the segmenter needs labeled videos")
        train = ConcatDataset([FrameDataset(root, split) for split in config.train_splits])
        return train, FrameDataset(root, config.val_split)

    @property
    def served(self) -> Segmenter:
        """The inference module around `self.model` (`segment` for full-size masks)."""
        return Segmenter(self.model, resolution=self.resolution, shape=self.shape)

    def cross_entropy(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy; the split head's outputs are log-probabilities already, so the
        log-softmax (a pass over 49 channels, and its gradient) is skipped: the same number."""
        if self.config.model.head == "split":
            return F.nll_loss(logits, masks)
        return F.cross_entropy(logits, masks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> logits (N, 49, *resolution)."""
        return self.served(images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        cfg = self.config
        images = self.served.model_input(batch["image"])
        masks = masks_to_size(batch["mask"], self.resolution)
        if cfg.crop:
            images, masks = random_crops(images, masks, cfg.crop, on_objects=cfg.crop_on_objects)
        if cfg.model.head == "split":
            z, objects = self.model.split_logits(images)
            loss = split_cross_entropy(z, objects, masks, cfg.model.factor_sizes, cfg.factor_weights)
        else:
            loss = self.cross_entropy(self.model(images).float(), masks)
        self.log("train/cross_entropy", loss, batch_size=len(images))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images, masks = batch["image"], batch["mask"].long()
        logits = self(images)
        loss = self.cross_entropy(logits.float(), masks_to_size(masks, self.resolution))
        pred = logits_to_size(logits, masks.shape[-2:]).argmax(1)
        self.val_jaccard.update(pred, masks)
        self.log("val/loss", loss, sync_dist=True, batch_size=len(images))
        self.log("val/jaccard", self.val_jaccard, prog_bar=True, batch_size=len(images))
        self.keep_for_pictures(batch_idx, image=images, mask=masks, pred=pred)

    def draw_picture(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        rows = [[to_hwc(im), mask_to_rgb(m.numpy()), mask_to_rgb(p.numpy())]
                for im, m, p in zip(batch["image"], batch["mask"], batch["pred"], strict=True)]
        return picture_rows(rows, labels=None)  # columns: frame, true mask, predicted mask
