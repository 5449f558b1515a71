"""Pseudo-labels: the segmenter's masks of every frame of videos without true masks.

    label("data/demo", load_run("runs/seg"))     # = simvp-unet label --data data/demo --segmenter runs/seg

Each video gets `mask_pred.npy` (uint8 (frames, H, W): (22, 160, 240) in the competition's task
shape) beside its frames, written atomically;
the forecaster and the dynamics train on them where a video has no `mask.npy`. `mask.npy` is never touched.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset
from tqdm import tqdm

from .data import layout
from .data.datasets import VideoDataset
from .data.layout import TaskShape
from .errors import ConfigError, DataError
from .evaluate import video_loader
from .inference import default_device
from .pipelines import segment_videos


def _labeled(folder: Path, shape: TaskShape) -> bool:
    """Whether a video has a readable, valid pseudo-label (a damaged one is written again)."""
    if not (folder / layout.PRED_MASK_FILE).is_file():
        return False
    try:
        layout.read_mask(folder, shape, predicted=True)
    except DataError:
        return False
    return True


def label(data: str | Path, segmenter: Any, *, splits: tuple[str, ...] = ("unlabeled",),
          batch_size: int = 2, device: torch.device | str | None = None,
          progress: bool = True) -> dict[str, dict[str, int]]:
    """Write `mask_pred.npy` beside every video of `splits` that lacks one.

    Resumable: videos that already have a valid `mask_pred.npy` are skipped (a damaged one is
    written again).

    Args:
        data: dataset root.
        segmenter: has `segment(images uint8 (N, 3, H, W)) -> long (N, H, W)` (a `Segmenter`).
        splits: splits of whole videos to label (not hidden).
        batch_size: videos per step.
        device: where the frames go (default: the GPU when there is one).
        progress: show a progress bar.

    Returns:
        {split: {"written": n, "skipped": n}}.
    """
    device = torch.device(device) if device is not None else default_device()
    report = {}
    for split in splits:
        if split == "hidden":
            raise ConfigError("label needs whole videos; the hidden split has the input frames only")
        dataset = VideoDataset(data, split)
        todo = [n for n, (_, folder) in enumerate(dataset.videos) if not _labeled(folder, dataset.shape)]
        folders = dict(dataset.videos)
        with torch.inference_mode(), tqdm(total=len(todo), desc=f"label {split}", unit="video",
                                          disable=not progress, file=sys.stderr) as bar:
            for item in video_loader(Subset(dataset, todo), batch_size):
                masks = segment_videos(segmenter, item["frames"].to(device))  # (B, 22, H, W)
                for index, mask in zip(item["index"].tolist(), masks.cpu().numpy(), strict=True):
                    layout.write_mask(folders[index] / layout.PRED_MASK_FILE, mask, dataset.shape)
                bar.update(len(masks))
        report[split] = {"written": len(todo), "skipped": len(dataset) - len(todo)}
    return report
