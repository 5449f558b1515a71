"""Serving a dynamics run: masks of frames 1..11 in, objects and the mask of frame 22 out.

    dynamics = load_run("runs/dyn")                   # a Dynamics (simvp_unet.runs)
    result = dynamics.forecast_objects(masks)         # long (B, 11, H, W)
    result.mask                                       # long (B, H, W), frame 22
    result.centers                                    # (B, K, 11, 2) forecast centers, pixels
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import from_dict
from ..data.layout import COMPETITION, TaskShape
from ..errors import ConfigError
from ..inference import Served
from .dynamics import DynamicsNet, DynamicsNetConfig
from .placing import place_tracks
from .render import render
from .tracks import Tracks, extract_tracks


@dataclass
class ObjectForecast:
    """What the objects rows make for B videos.

    Args:
        tracks: the objects found in frames 1..11.
        centers: (B, K, 11, 2) their forecast centers over frames 12..22, pixels.
        mask: long (B, H, W), the rendered mask of frame 22.
        drawn: bool (B, K), the objects the mask shows: those seen in enough input frames to
            forecast (`DynamicsNet.drawable`).
        past: (B, K, 11, 2) the centers of frames 1..11 the forecast started from, pixels: each
            sighting placed by its silhouette (`placing.whole_centers`) where the run has a
            camera, else the tracked box centers (meaningless where not seen).
    """

    tracks: Tracks
    centers: torch.Tensor
    mask: torch.Tensor
    drawn: torch.Tensor
    past: torch.Tensor

    def paths(self, b: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(class id, past centers (n, 2) where seen, forecast centers (11, 2)) of video b."""
        out = []
        for k in range(self.tracks.classes.shape[1]):
            if not bool(self.tracks.valid[b, k]):
                continue
            seen = self.tracks.present[b, k].numpy()
            out.append((int(self.tracks.classes[b, k]), self.past[b, k].numpy()[seen], self.centers[b, k].numpy()))
        return out


class Dynamics(Served):
    """Tracks + motion + rendering around a trained `DynamicsNet` (kept as `model`).

    Args:
        model: the dynamics network, with its fitted ground plane and constant-velocity settings.
        shape: the task shape: its forecast frames are the network's steps.
    """

    @classmethod
    def network_for(cls, shape: TaskShape) -> dict[str, tuple[Any, str]]:
        return {"steps": (shape.future_frames, f"frames {shape.input_frames + 1}..{shape.target + 1} are forecast")}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shape: TaskShape = COMPETITION) -> Dynamics:
        """Built (untrained) from a run's saved config: its `model` section."""
        model = DynamicsNet(from_dict(DynamicsNetConfig, config["model"], prefix="model.", stored=True))
        return cls(model, shape=shape)

    def example_input(self) -> torch.Tensor:
        raise ConfigError("a dynamics run exports as safetensors only (its input is a set of tracks, "
                          "not an image tensor)")

    @torch.inference_mode()
    def forecast_objects(self, masks: torch.Tensor, *, learned: bool = True) -> ObjectForecast:
        """Objects of masks 1..11 (long (B, 11, H, W)), their forecast, and the mask of frame 22.

        With a camera (runs that fitted one), the dynamics starts from every sighting placed by
        its silhouette (`placing.whole_centers`), not from the tracked box centers.

        Args:
            masks: class ids of frames 1..11.
            learned: the trained network (`objects`); False: constant velocity (`objects-cv`).
        """
        n = self.shape.input_frames
        if masks.ndim != 4 or masks.shape[1] != n or masks.is_floating_point():
            raise ValueError(f"forecast_objects expects integer masks (B, {n}, H, W), got {masks.dtype} "
                             f"of shape {tuple(masks.shape)}")
        tracks = extract_tracks(masks)
        device, camera, yaws, past = self.device, self.model.floor.camera(), None, tracks.center
        seen = (tracks.classes.to(device), tracks.present.to(device), tracks.center.to(device))
        size = tracks.size.to(device)
        drawable = self.model.drawable(*seen, size).cpu()
        if camera is None:
            centers = self.model(*seen, size=size, learned=learned)
        else:  # every sighting placed by its silhouette (`placing.py`)
            present = self.model.sightings(*seen, size)
            yaws, past = place_tracks(camera, self.model.plane, tracks, present)
            centers = self.model(seen[0], present, past.to(device), learned=learned)
        centers = centers.float().cpu()
        mask = render(tracks, centers[:, :, -1], self.model.plane, camera=camera, drawable=drawable, yaws=yaws)
        return ObjectForecast(tracks=tracks, centers=centers, mask=mask.to(masks.device), drawn=drawable, past=past)
