"""Forecasts for your own videos: a folder of video folders of PNG frames, no splits, no answers.

    masks = forecast(models, frames)                 # uint8 (B, T, 3, H, W) -> long (B, H, W)
    forecast_folder("my_videos", models, "out")      # = simvp-unet predict --videos my_videos ... --out out

The models say the task shape (`models_shape`): the first `input_frames` frames of a video go
in (frames 1..11 in the competition's shape) and the mask of the scored frame comes out (frame
22: `future_frames` after the last input). A video folder holds its frames as PNG files,
`image_0.png, image_1.png, ...` as in the dataset layout or any other names, taken in natural
order (`frame_2.png` before `frame_10.png`). For each video, the output folder gets
`<video>.png` (the mask, a palette PNG whose pixel values are the class ids), `<video>.npy`
(uint8 (H, W) class ids) and `<video>_picture.png` (the input frames beside the forecast).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from . import pipelines
from .classes import PALETTE
from .data import layout
from .data.layout import COMPETITION, TaskShape
from .errors import ConfigError, DataError
from .inference import default_device
from .io import atomic_path
from .kinds import KINDS
from .pipelines import Batch, Models
from .report import caption
from .viz import grid, mask_to_rgb, save_png


def models_shape(models: Models) -> TaskShape:
    """The task shape the models serve: the forecasting ones' (they must agree), else the
    segmenter's, else the competition's."""
    shapes = [(kind, getattr(getattr(models, kind), "shape", None)) for kind in KINDS if kind != "segmenter"]
    shapes = [(kind, shape) for kind, shape in shapes if shape is not None]
    for kind, shape in shapes[1:]:
        shapes[0][1].check_serves(shape, f"the {shapes[0][0]} run (the {kind} run differs)")
    if shapes:
        return shapes[0][1]
    return getattr(models.segmenter, "shape", None) or COMPETITION


def forecast(models: Models, frames: torch.Tensor, *, row: str | None = None,
             shape: TaskShape | None = None) -> torch.Tensor:
    """The mask of the scored frame for each video: uint8 frames (B, T, 3, H, W) -> long (B, H, W).

    Args:
        models: the trained models (at least a segmenter).
        frames: the videos' frames; the first `shape.input_frames` go in (T may be more).
        row: the pipeline (default: `pipelines.default_row`, the best the models allow).
        shape: the task shape (default: the models', `models_shape`).
    """
    shape = shape or models_shape(models)
    name = row or pipelines.default_row(models)
    if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[2] != 3:
        raise ConfigError(f"forecast takes uint8 frames (B, T, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[1] < shape.input_frames:
        raise ConfigError(f"these videos have {frames.shape[1]} frames; the models read the first "
                          f"{shape.input_frames} ({shape.describe()})")
    height, width = frames.shape[-2:]
    videos = dataclasses.replace(shape, height=int(height), width=int(width))  # any size: the networks resize
    pipelines.check_shape(models, videos)
    return pipelines.run(name, Batch(models, frames[:, : shape.input_frames], shape=videos))


_NUMBER = re.compile(r"(\d+)")


def _natural(path: Path) -> list[Any]:
    """Sort key: the digits of a name compare as numbers (frame_2 before frame_10)."""
    return [int(part) if part.isdigit() else part.lower() for part in _NUMBER.split(path.name)]


def frame_files(folder: Path) -> list[Path]:
    """A video folder's frames in order: `image_0.png, image_1.png, ...` when it has `image_0.png`,
    else every .png file in natural order."""
    count = layout.stored_frames(folder)
    if count:
        return [folder / layout.frame_name(t) for t in range(count)]
    return sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file()), key=_natural)


def video_folders(root: str | Path) -> list[Path]:
    """The video folders of `root`: its subfolders holding PNG files, in natural order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"videos folder not found: {root}")
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and any(f.suffix.lower() == ".png" for f in p.iterdir())), key=_natural)
    if not folders:
        raise DataError(f"no video folders in {root}: expected one folder of PNG frames per video")
    return folders


def read_video(folder: Path, frames: int) -> torch.Tensor:
    """The first `frames` frames of a video folder: uint8 (frames, 3, H, W); `DataError` naming
    the folder when it has fewer, or a frame is unreadable or of another size."""
    files = frame_files(folder)
    if len(files) < frames:
        raise DataError(f"{folder} has {len(files)} PNG frames; the models read {frames}")
    first = layout.read_frame(files[0])
    array = np.stack([first] + [layout.read_frame(path, first.shape[:2]) for path in files[1:frames]])
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """A (H, W) mask as a palette PNG: pixel values are the class ids, shown in the class colors."""
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(np.asarray(PALETTE, dtype=np.uint8).flatten().tolist())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _write_npy(path: Path, mask: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(mask, dtype=np.uint8), allow_pickle=False)


def picture(frames: torch.Tensor, mask: np.ndarray, shape: TaskShape) -> np.ndarray:
    """The input frames (first row) and the forecast mask of the scored frame over the last
    input frame and on its own (second row): (H, W, 3) uint8."""
    inputs = [caption(f.permute(1, 2, 0).numpy(), f"frame {t + 1}") for t, f in enumerate(frames)]
    colors = mask_to_rgb(mask)
    return grid([inputs, [caption(colors, f"forecast of frame {shape.target + 1}")]],
                labels=["input", "forecast"], label_width=60)


def forecast_folder(videos: str | Path, models: Models, out: str | Path, *, row: str | None = None,
                    device: torch.device | str | None = None, progress: bool = True) -> dict[str, Any]:
    """Forecast every video folder of `videos` (see the module doc) into the folder `out`.

    Args:
        videos: a folder of video folders of PNG frames.
        models: the trained models (at least a segmenter).
        out: the output folder (created; files of the same names are replaced).
        row: the pipeline (default: the best the models allow).
        device: where inference runs (default: the GPU when there is one).
        progress: show a progress bar.

    Returns:
        {"videos": n, "row": name, "shape": the task shape as a dict}.
    """
    shape = models_shape(models)
    pipelines.check_shape(models, shape)
    name = row or pipelines.default_row(models)
    pipelines.require(name, models, with_frame22=False)
    device = torch.device(device) if device is not None else default_device()
    folders = video_folders(videos)
    for folder in folders:  # every video long enough, before any work
        if len(frame_files(folder)) < shape.input_frames:
            read_video(folder, shape.input_frames)  # names the folder
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for folder in tqdm(folders, desc=f"forecast ({name})", unit="video", disable=not progress, file=sys.stderr):
            frames = read_video(folder, shape.input_frames)
            try:
                mask = forecast(models, frames[None].to(device), row=name, shape=shape)[0]
            except ConfigError as exc:  # e.g. frames of another size than the dynamics run's
                raise DataError(f"{folder}: {exc}") from None
            mask = mask.cpu().numpy().astype(np.uint8)
            write_mask_png(out / f"{folder.name}.png", mask)
            _write_npy(out / f"{folder.name}.npy", mask)
            save_png(out / f"{folder.name}_picture.png", picture(frames, mask, shape))
    return {"videos": len(folders), "row": name, "shape": shape.as_dict()}
