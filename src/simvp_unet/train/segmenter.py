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
from torchmetrics import JaccardIndex

from ..classes import NUM_CLASSES
from ..models.fold import upsampled_argmax
from ..models.unet import UNet, UNetConfig
from ..viz import mask_to_rgb
from .common import (
    TrainModule,
    TrainSettings,
    check_model_field,
    in_chunks,
    logits_to_size,
    masks_to_size,
    picture_rows,
    resize_images,
    to_hwc,
)


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
        check_model_field(self.model, "in_channels", 3, "the segmenter reads RGB frames")
        check_model_field(self.model, "num_classes", NUM_CLASSES, "the task has 49 classes")
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
        self.val_jaccard = JaccardIndex(task="multiclass", num_classes=NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> logits (N, 49, *resolution)."""
        x = resize_images(images.float() / 255, self.resolution)
        return self.model(x)

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

    @torch.inference_mode()
    def segment(self, images: torch.Tensor, *, chunk: int = 32) -> torch.Tensor:
        """Masks of RGB frames: uint8 (N, 3, H, W) -> long (N, H, W), at the input's size.

        Logits are upsampled bilinearly from the working resolution before the argmax.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"segment expects uint8 images (N, 3, H, W), got shape {tuple(images.shape)}")
        with self.inference_autocast():
            out = [upsampled_argmax(self(part.to(self.device)), images.shape[-2:]).to(images.device)
                   for part in in_chunks(images, chunk)]
        return torch.cat(out)
