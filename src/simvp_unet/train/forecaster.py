"""The mask forecaster: SimVP from the masks of frames 1..11 to logits of masks 12..22, cross-entropy.

    simvp-unet train forecaster --data data/demo --preset cpu --out runs/fc
    simvp-unet train forecaster --data data/demo --preset cpu --out runs/fc-roll \\
        --init runs/fc --set rollout_frames=1 --set lr=1e-4

Class ids go in through an embedding (`model.input_classes = 49`), 49 logits come out.
Trains on the true masks of the labeled videos plus the pseudo-labels (`mask_pred.npy`,
written by `simvp-unet label`) of the unlabeled ones; validates with the task's Jaccard on
frame 22 against the true masks of the validation videos, at full size.

Roll-out (`rollout_frames = k > 0`, `simvp_unet.inference.roll_out`): the model keeps its
11-in, 11-out shape (so the weights of a one-shot run fine-tune as they are) but only its first
k frames are used; they are appended to the context and the last 11 masks go in again until 11
frames exist. During training each fed-back chunk is, per sample, the model's own argmax with
probability p and the true masks otherwise (scheduled sampling); p rises linearly from
`sampling_start` to `sampling_end` over the run. Validation and inference always feed back the
model's own predictions.
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

from ..classes import NUM_CLASSES
from ..data.datasets import VideoDataset
from ..data.layout import COMPETITION, TaskShape
from ..errors import ConfigError
from ..inference import (
    MaskForecaster,
    check_network,
    check_rollout,
    logits_to_size,
    masks_to_size,
    simvp_frames,
)
from ..metrics import task_metric
from ..models.simvp import SimVP, SimVPConfig
from ..viz import mask_to_rgb
from .common import TrainModule, TrainSettings, picture_frames, picture_rows, shaped, total_steps
from .splits import check_splits, masked_splits, require_true_masks


@dataclass
class ForecasterConfig(TrainSettings):
    """Settings of `simvp-unet train forecaster` (see `TrainSettings` for the shared ones).

    Args:
        train_splits: splits whose masks train the model: true masks where a video has them,
            else the pseudo-labels `mask_pred.npy` (a split without any is skipped with a note).
        rollout_frames: 0 = one pass predicts masks 12..22; k > 0 = roll out k frames at a
            time, feeding predictions back (see the module docstring).
        sampling_start: probability of feeding back predictions instead of true masks at the
            start of training (roll-out only).
        sampling_end: that probability at the end of training (roll-out only).
        background_weight: weight of background pixels in the cross-entropy (objects weigh 1);
            below 1 makes a missed object cost more than a spilled one, as the Jaccard does.
        model: the SimVP (class-id masks in through an embedding of 49 ids, 49 logits out; the
            frames it reads and makes come from the data's task shape).
    """

    train_splits: list[str] = field(default_factory=lambda: ["train", "unlabeled"])
    rollout_frames: int = 0
    sampling_start: float = 0.0
    sampling_end: float = 1.0
    background_weight: float = 1.0
    model: SimVPConfig = field(default_factory=lambda: SimVPConfig(
        input_classes=NUM_CLASSES, out_channels=NUM_CLASSES, translator="gsta"))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_network(self.model, MaskForecaster.NETWORK)
        if self.rollout_frames < 0:
            raise ValueError(f"rollout_frames must be >= 0, got {self.rollout_frames}")
        for name in ("sampling_start", "sampling_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if not self.train_splits:
            raise ValueError("train_splits must name at least one split")
        if not 0 < self.background_weight <= 1:
            raise ValueError(f"background_weight must be in (0, 1], got {self.background_weight}")


class ForecasterModule(TrainModule):
    """Mask forecasting: masks uint8 (B, 22, H, W), first 11 in, last 11 as targets.

    Args:
        config: the resolved `ForecasterConfig`.
        shape: the data's task shape.
    """

    kind = "forecaster"
    config_class = ForecasterConfig
    monitor = "val/jaccard"
    monitor_mode = "max"

    def __init__(self, config: ForecasterConfig, shape: TaskShape = COMPETITION) -> None:
        super().__init__(config, shape)
        self.model = SimVP(config.model)
        self.val_jaccard = task_metric()
        weights = torch.ones(NUM_CLASSES)
        weights[0] = config.background_weight
        self.register_buffer("class_weights", weights, persistent=False)

    def feedback_probability(self) -> float:
        """Scheduled sampling: chance of feeding back predictions, linear over the run's steps."""
        cfg = self.config
        total = max(total_steps(self.trainer, cfg), 1)
        progress = min(self.global_step / total, 1.0)
        return cfg.sampling_start + (cfg.sampling_end - cfg.sampling_start) * progress

    @classmethod
    def for_shape(cls, config: ForecasterConfig, shape: TaskShape) -> ForecasterConfig:
        """The SimVP reads the shape's input masks and makes its forecast ones (`simvp_frames`)."""
        try:
            check_rollout(config.rollout_frames, shape)
        except ValueError as exc:
            raise ConfigError(f"{exc} (the data forecasts {shape.future_frames} frames)") from None
        return dataclasses.replace(config, model=shaped(config.model, simvp_frames(shape), shape))

    @classmethod
    def datasets(cls, config: ForecasterConfig, root: Path) -> tuple[Dataset, Dataset]:
        """(train, val): masks of the training splits (true masks, else complete pseudo-labels;
        a split with neither is skipped) and the val split's true masks."""
        check_splits(root, [*config.train_splits, config.val_split])
        require_true_masks(root, config.val_split, "the forecaster validates on true masks")
        splits = masked_splits(root, config.train_splits, cls.kind)
        train = ConcatDataset([VideoDataset(root, split, masks="any", with_frames=False) for split in splits])
        return train, VideoDataset(root, config.val_split, masks="true", with_frames=False)

    @property
    def served(self) -> MaskForecaster:
        """The inference module around `self.model` (`forecast_masks` for full-size masks)."""
        return MaskForecaster(self.model, resolution=self.resolution,
                              rollout_frames=self.config.rollout_frames, shape=self.shape)

    def forward(self, masks: torch.Tensor, future: torch.Tensor | None = None,
                feedback: float = 1.0) -> torch.Tensor:
        """Masks 1..11 at the working size, long (B, 11, h, w) -> logits (B, 11, 49, h, w).

        `future` (the true masks 12..22) and `feedback` < 1: scheduled sampling of the roll-out.
        """
        return self.served(masks, future, feedback)

    def _split(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        masks, shape = masks_to_size(batch["masks"], self.resolution), self.shape  # (B, 22, h, w)
        return masks[:, : shape.input_frames], masks[:, shape.input_frames : shape.target + 1]

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(rearrange(logits.float(), "b t k h w -> (b t) k h w"),
                               rearrange(target, "b t h w -> (b t) h w"), weight=self.class_weights)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        inputs, future = self._split(batch)
        feedback = 1.0
        if self.config.rollout_frames:
            feedback = self.feedback_probability()
            self.log("train/feedback_prob", feedback, batch_size=len(inputs))
        loss = self._loss(self(inputs, future, feedback), future)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(inputs))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        inputs, future = self._split(batch)
        logits = self(inputs)
        loss = self._loss(logits, future)
        true_last = batch["masks"][:, self.shape.target].long()  # frame 22 at full size
        pred_last = logits_to_size(logits[:, self.shape.target_in_future], true_last.shape[-2:]).argmax(1)
        self.val_jaccard.update(pred_last, true_last)
        n = len(inputs)
        self.log("val/loss", loss, sync_dist=True, batch_size=n)
        self.log("val/jaccard", self.val_jaccard, prog_bar=True, batch_size=n)
        if batch_idx == 0 and self.config.pictures:
            size = tuple(true_last.shape[-2:])
            frames = list(picture_frames(self.shape))
            shown = logits[: self.config.pictures, frames]
            pred = logits_to_size(rearrange(shown, "b t k h w -> (b t) k h w"), size).argmax(1)
            pred = rearrange(pred, "(b t) h w -> b t h w", t=len(frames))
            true = batch["masks"][:, [self.shape.last_input] + [self.shape.input_frames + t for t in frames]]
            self.keep_for_pictures(batch_idx, true=true, pred=pred)

    def draw_picture(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        rows, labels = [], []
        for true, pred in zip(batch["true"], batch["pred"], strict=True):
            rows += [[mask_to_rgb(m.numpy()) for m in true],
                     [np.full_like(mask_to_rgb(true[0].numpy()), 255)] + [mask_to_rgb(m.numpy()) for m in pred]]
            labels += ["true", "pred"]
        return picture_rows(rows, labels)  # columns: frame 11 (input), frames 12, 17, 22
