"""The frame predictor: SimVP from RGB frames 1..11 to frames 12..22, mean squared error.

    simvp-unet train predictor --data data/demo --preset cpu --out runs/pred

Needs no labels: trains on every video of `train_splits` (the paper: the unlabeled ones).
Validation reports MSE, SSIM and PSNR of the predicted frames at the dataset's full size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import ConcatDataset, Dataset
from torchmetrics import MeanSquaredError
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ..data.datasets import VideoDataset
from ..data.layout import COMPETITION, TaskShape
from ..inference import (
    FramePredictor,
    check_network,
    frames_to_model,
    frames_to_uint8,
    resize_images,
    simvp_frames,
)
from ..models.simvp import SimVP, SimVPConfig
from .common import TrainModule, TrainSettings, picture_frames, picture_rows, shaped, to_hwc
from .splits import check_splits


@dataclass
class PredictorConfig(TrainSettings):
    """Settings of `simvp-unet train predictor` (see `TrainSettings` for the shared ones).

    Args:
        train_splits: splits whose videos (frames only) train the model.
        model: the SimVP (RGB frames; the frames it reads and makes come from the data's task
            shape: 11 in, 11 out in the competition's).
    """

    train_splits: list[str] = field(default_factory=lambda: ["unlabeled"])
    model: SimVPConfig = field(default_factory=SimVPConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_network(self.model, FramePredictor.NETWORK)
        if not self.train_splits:
            raise ValueError("train_splits must name at least one split")


class PredictorModule(TrainModule):
    """SimVP training on frames: uint8 (B, 22, 3, H, W) clips, the input frames in, the
    forecast ones (12..22) as targets.

    Args:
        config: the resolved `PredictorConfig`.
        shape: the data's task shape.
    """

    kind = "predictor"
    config_class = PredictorConfig
    monitor = "val/mse"
    monitor_mode = "min"

    def __init__(self, config: PredictorConfig, shape: TaskShape = COMPETITION) -> None:
        super().__init__(config, shape)
        self.model = SimVP(config.model)
        self.val_mse = MeanSquaredError()
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)

    @classmethod
    def for_shape(cls, config: PredictorConfig, shape: TaskShape) -> PredictorConfig:
        """The SimVP reads the shape's input frames and makes its forecast ones (`simvp_frames`)."""
        return dataclasses.replace(config, model=shaped(config.model, simvp_frames(shape), shape))

    @classmethod
    def datasets(cls, config: PredictorConfig, root: Path) -> tuple[Dataset, Dataset]:
        """(train, val): every video of the training splits and of the val split (frames only)."""
        check_splits(root, [*config.train_splits, config.val_split])
        train = ConcatDataset([VideoDataset(root, split) for split in config.train_splits])
        return train, VideoDataset(root, config.val_split)

    @property
    def served(self) -> FramePredictor:
        """The inference module around `self.model` (`predict_frames` for full-size frames)."""
        return FramePredictor(self.model, resolution=self.resolution, shape=self.shape)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames 1..11 (B, 11, 3, H, W) -> float frames 12..22 (B, 11, 3, *resolution)."""
        return self.served(frames)

    def _split(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        frames, shape = batch["frames"], self.shape
        return frames[:, : shape.input_frames], frames[:, shape.input_frames : shape.target + 1]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        inputs, future = self._split(batch)
        loss = F.mse_loss(self(inputs).float(), frames_to_model(future, self.resolution))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(inputs))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        inputs, future = self._split(batch)
        pred = self(inputs).float()
        loss = F.mse_loss(pred, frames_to_model(future, self.resolution))
        # metrics at the dataset's size, as the segmenter will see the frames
        size = tuple(future.shape[-2:])
        full = resize_images(rearrange(pred, "b t c h w -> (b t) c h w"), size).clamp(0, 1)
        true = rearrange(future, "b t c h w -> (b t) c h w").float() / 255
        self.val_mse.update(full, true)
        self.val_ssim.update(full, true)
        self.val_psnr.update(full, true)
        n = len(inputs)
        self.log("val/loss", loss, sync_dist=True, batch_size=n)
        self.log("val/mse", self.val_mse, prog_bar=True, batch_size=n)
        self.log("val/ssim", self.val_ssim, prog_bar=True, batch_size=n)
        self.log("val/psnr", self.val_psnr, batch_size=n)
        self.keep_for_pictures(batch_idx, future=future, pred=frames_to_uint8(pred, size))

    def draw_picture(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        rows, labels = [], []
        for future, pred in zip(batch["future"], batch["pred"], strict=True):
            shown = picture_frames(self.shape)
            rows += [[to_hwc(future[t]) for t in shown], [to_hwc(pred[t]) for t in shown]]
            labels += ["true", "pred"]
        return picture_rows(rows, labels)  # columns: frames 12, 17, 22
