"""Serving a dynamics run: masks of frames 1..11 in, objects and the mask of frame 22 out.

    forecaster = load_run("runs/dyn")                 # an ObjectForecaster (simvp_unet.inference)
    result = forecaster.forecast_objects(masks)       # long (B, 11, H, W)
    result.mask                                       # long (B, H, W), frame 22
    result.centers                                    # (B, K, 11, 2) forecast centers, pixels
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import from_dict
from ..data.layout import INPUT_FRAMES
from ..errors import ConfigError
from .dynamics import MotionConfig, MotionForecaster
from .motion import near_another
from .render import render
from .tracks import Tracks, extract_tracks


@dataclass
class ObjectForecast:
    """What the objects rows make for B videos.

    Args:
        tracks: the objects found in frames 1..11.
        centers: (B, K, 11, 2) their forecast centers over frames 12..22, pixels.
        mask: long (B, H, W), the rendered mask of frame 22.
    """

    tracks: Tracks
    centers: torch.Tensor
    mask: torch.Tensor

    def paths(self, b: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(class id, past centers (n, 2) where seen, forecast centers (11, 2)) of video b."""
        out = []
        for k in range(self.tracks.classes.shape[1]):
            if not bool(self.tracks.valid[b, k]):
                continue
            seen = self.tracks.present[b, k].numpy()
            out.append((int(self.tracks.classes[b, k]), self.tracks.center[b, k].numpy()[seen],
                        self.centers[b, k].numpy()))
        return out


class ObjectForecaster(nn.Module):
    """Tracks + motion + rendering around a trained `MotionForecaster` (kept as `model`).

    Args:
        model: the motion model, with its fitted ground plane and constant-velocity settings.
    """

    def __init__(self, model: MotionForecaster) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ObjectForecaster:
        """Built (untrained) from a run's saved config: its `model` section."""
        return cls(MotionForecaster(from_dict(MotionConfig, config["model"], prefix="model.", stored=True)))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def example_input(self) -> torch.Tensor:
        raise ConfigError("a dynamics run exports as safetensors only (its input is a set of tracks, "
                          "not an image tensor)")

    @torch.inference_mode()
    def forecast_objects(self, masks: torch.Tensor, *, learned: bool = True) -> ObjectForecast:
        """Objects of masks 1..11 (long (B, 11, H, W)), their forecast, and the mask of frame 22.

        Args:
            masks: class ids of frames 1..11.
            learned: the trained network (`objects`); False: constant velocity (`objects-cv`).
        """
        if masks.ndim != 4 or masks.shape[1] != INPUT_FRAMES or masks.is_floating_point():
            raise ValueError(f"forecast_objects expects integer masks (B, 11, H, W), got {masks.dtype} "
                             f"of shape {tuple(masks.shape)}")
        tracks = extract_tracks(masks)
        inputs = (tracks.classes.to(self.device), tracks.present.to(self.device), tracks.center.to(self.device))
        size = tracks.size.to(self.device)
        centers = self.model(*inputs, size=size, learned=learned).float().cpu()
        near_px = self.model.config.learned_near_px
        if learned and near_px > 0:  # the learned forecast only where objects may collide
            cv = self.model(*inputs, size=size, learned=False).float().cpu()
            centers = torch.where(near_another(cv, tracks.valid, near_px)[..., None, None], centers, cv)
        mask = render(tracks, centers[:, :, -1], self.model.plane)
        return ObjectForecast(tracks=tracks, centers=centers, mask=mask.to(masks.device))
