"""The segmenter: a U-Net from one RGB frame to its 49-class mask, cross-entropy.

    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg

Trains on every labeled frame of the training videos, validates with the task's metric
(one global confusion matrix over all frames, macro Jaccard over present classes) at full size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..inference import Segmenter, check_network, logits_to_size, masks_to_size
from ..metrics import task_metric
from ..models.unet import UNet, UNetConfig
from ..viz import mask_to_rgb
from .common import TrainModule, TrainSettings, picture_rows, to_hwc


@dataclass
class SegmenterConfig(TrainSettings):
    """Settings of `simvp-unet train segmenter` (see `TrainSettings` for the shared ones).

    Args:
        train_splits: labeled splits whose frames train the U-Net.
        model: the U-Net (3 input channels, 49 classes).
    """

    train_splits: list[str] = field(default_factory=lambda: ["train"])
    model: UNetConfig = field(default_factory=UNetConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_network(self.model, Segmenter.NETWORK)
        if not self.train_splits:
            raise ValueError("train_splits must name at least one labeled split")


class SegmenterModule(TrainModule):
    """U-Net training: frames (B, 3, H, W) uint8 + masks (B, H, W) -> cross-entropy.

    Args:
        config: the resolved `SegmenterConfig`.
    """

    kind = "segmenter"
    monitor = "val/jaccard"
    monitor_mode = "max"

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__(config)
        self.model = UNet(config.model)
        self.val_jaccard = task_metric()

    @property
    def served(self) -> Segmenter:
        """The inference module around `self.model` (`segment` for full-size masks)."""
        return Segmenter(self.model, resolution=self.resolution)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> logits (N, 49, *resolution)."""
        return self.served(images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits.float(), masks_to_size(batch["mask"], self.resolution))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images, masks = batch["image"], batch["mask"].long()
        logits = self(images)
        loss = F.cross_entropy(logits.float(), masks_to_size(masks, self.resolution))
        pred = logits_to_size(logits, masks.shape[-2:]).argmax(1)
        self.val_jaccard.update(pred, masks)
        self.log("val/loss", loss, sync_dist=True, batch_size=len(images))
        self.log("val/jaccard", self.val_jaccard, prog_bar=True, batch_size=len(images))
        self.keep_for_pictures(batch_idx, image=images, mask=masks, pred=pred)

    def draw_picture(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        rows = [[to_hwc(im), mask_to_rgb(m.numpy()), mask_to_rgb(p.numpy())]
                for im, m, p in zip(batch["image"], batch["mask"], batch["pred"], strict=True)]
        return picture_rows(rows, labels=None)  # columns: frame, true mask, predicted mask
