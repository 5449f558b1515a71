"""The mask forecaster: SimVP from the masks of frames 1..11 to logits of masks 12..22, cross-entropy.

    simvp-unet train forecaster --data data/demo --preset cpu --out runs/fc
    simvp-unet train forecaster --data data/demo --preset cpu --out runs/fc-roll \\
        --init runs/fc --set rollout_frames=1 --set lr=1e-4

Class ids go in through an embedding (`model.input_classes = 49`), 49 logits come out.
Trains on the true masks of the labeled videos plus the pseudo-labels (`mask_pred.npy`,
written by `simvp-unet label`) of the unlabeled ones; validates with the task's Jaccard on
frame 22 against the true masks of the validation videos, at full size.

Roll-out (`rollout_frames = k > 0`): the model keeps its 11-in, 11-out shape (so the weights of
a one-shot run fine-tune as they are) but only its first k frames are used; they are appended to
the context and the last 11 masks go in again until 11 frames exist. During training each fed-back
chunk is, per sample, the model's own argmax with probability p and the true masks otherwise
(scheduled sampling); p rises linearly from `sampling_start` to `sampling_end` over the run.
Validation and inference always feed back the model's own predictions. The argmax passes no
gradient, so each chunk learns from its own loss only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torchmetrics import JaccardIndex

from ..classes import NUM_CLASSES
from ..data.layout import FRAMES, INPUT_FRAMES
from ..models.fold import upsampled_argmax
from ..models.simvp import SimVP, SimVPConfig
from ..viz import mask_to_rgb
from .common import (
    TrainModule,
    TrainSettings,
    check_model_field,
    in_chunks,
    logits_to_size,
    masks_to_size,
    picture_rows,
)

OUTPUT_FRAMES = FRAMES - INPUT_FRAMES  # 11: masks 12..22
LAST = OUTPUT_FRAMES - 1  # index of frame 22 among the outputs
PICTURE_FRAMES = (0, 5, 10)  # frames 12, 17 and 22


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
        model: the SimVP (11 class-id masks in through an embedding of 49 ids, 49 logits out).
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
        m = self.model
        check_model_field(m, "in_frames", INPUT_FRAMES, "masks 1..11 go in")
        check_model_field(m, "out_frames", OUTPUT_FRAMES, "masks 12..22 come out")
        check_model_field(m, "input_classes", NUM_CLASSES, "class ids go in through an embedding")
        check_model_field(m, "out_channels", NUM_CLASSES, "one logit per class comes out")
        if not 0 <= self.rollout_frames <= OUTPUT_FRAMES:
            raise ValueError(f"rollout_frames must be in 0..{OUTPUT_FRAMES}, got {self.rollout_frames}")
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
    """

    kind = "forecaster"
    monitor = "val/jaccard"
    monitor_mode = "max"

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__(config)
        self.model = SimVP(config.model)
        self.val_jaccard = JaccardIndex(task="multiclass", num_classes=NUM_CLASSES)
        weights = torch.ones(NUM_CLASSES)
        weights[0] = config.background_weight
        self.register_buffer("class_weights", weights, persistent=False)

    def feedback_probability(self) -> float:
        """Scheduled sampling: chance of feeding back predictions, linear over the run's steps."""
        cfg = self.config
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        progress = min(self.global_step / total, 1.0)
        return cfg.sampling_start + (cfg.sampling_end - cfg.sampling_start) * progress

    def forward(self, masks: torch.Tensor, future: torch.Tensor | None = None,
                feedback: float = 1.0) -> torch.Tensor:
        """Masks 1..11 at the working size, long (B, 11, h, w) -> logits (B, 11, 49, h, w).

        `future` (the true masks 12..22) and `feedback` < 1 are used only by the roll-out in
        training (scheduled sampling).
        """
        k = self.config.rollout_frames
        if k == 0:
            return self.model(masks)
        context, chunks, made = masks, [], 0
        while made < OUTPUT_FRAMES:
            n = min(k, OUTPUT_FRAMES - made)
            logits = self.model(context)[:, :n]  # (B, n, 49, h, w)
            fed = logits.argmax(2)
            if future is not None and feedback < 1.0:
                use_own = torch.rand(len(fed), 1, 1, 1, device=fed.device) < feedback
                fed = torch.where(use_own, fed, future[:, made : made + n])
            context = torch.cat([context, fed], dim=1)[:, -INPUT_FRAMES:]
            chunks.append(logits)
            made += n
        return torch.cat(chunks, dim=1)

    def _split(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        masks = masks_to_size(batch["masks"], self.resolution)  # (B, 22, h, w)
        return masks[:, :INPUT_FRAMES], masks[:, INPUT_FRAMES:]

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
        true_last = batch["masks"][:, -1].long()  # frame 22 at full size
        pred_last = logits_to_size(logits[:, LAST], true_last.shape[-2:]).argmax(1)
        self.val_jaccard.update(pred_last, true_last)
        n = len(inputs)
        self.log("val/loss", loss, sync_dist=True, batch_size=n)
        self.log("val/jaccard", self.val_jaccard, prog_bar=True, batch_size=n)
        if batch_idx == 0 and self.config.pictures:
            size = tuple(true_last.shape[-2:])
            shown = logits[: self.config.pictures, list(PICTURE_FRAMES)]
            pred = logits_to_size(rearrange(shown, "b t k h w -> (b t) k h w"), size).argmax(1)
            pred = rearrange(pred, "(b t) h w -> b t h w", t=len(PICTURE_FRAMES))
            true = batch["masks"][:, [INPUT_FRAMES - 1] + [INPUT_FRAMES + t for t in PICTURE_FRAMES]]
            self.keep_for_pictures(batch_idx, true=true, pred=pred)

    def draw_picture(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        rows, labels = [], []
        for true, pred in zip(batch["true"], batch["pred"], strict=True):
            rows += [[mask_to_rgb(m.numpy()) for m in true],
                     [np.full_like(mask_to_rgb(true[0].numpy()), 255)] + [mask_to_rgb(m.numpy()) for m in pred]]
            labels += ["true", "pred"]
        return picture_rows(rows, labels)  # columns: frame 11 (input), frames 12, 17, 22

    @torch.inference_mode()
    def forecast_masks(self, masks: torch.Tensor, *, chunk: int = 4) -> torch.Tensor:
        """Masks 12..22 from masks 1..11: long (B, 11, H, W) -> long (B, 11, H, W), at the input's size."""
        if masks.ndim != 4 or masks.shape[1] != INPUT_FRAMES or masks.is_floating_point():
            raise ValueError(f"forecast_masks expects integer masks (B, 11, H, W), got {masks.dtype} "
                             f"of shape {tuple(masks.shape)}")
        size = tuple(masks.shape[-2:])
        out = []
        for part in in_chunks(masks, chunk):
            with self.inference_autocast():
                logits = self(masks_to_size(part.to(self.device), self.resolution))  # (b, 11, 49, h, w)
            full = upsampled_argmax(rearrange(logits, "b t k h w -> (b t) k h w"), size)
            out.append(rearrange(full, "(b t) h w -> b t h w", b=len(part)).to(masks.device))
        return torch.cat(out)
