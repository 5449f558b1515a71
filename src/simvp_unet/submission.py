"""The task's submission: the hidden set's masks of frame 22 in one file, and its score.

    predict("data/demo", models, "submission.pt")     # = simvp-unet predict ... --out submission.pt
    score("submission.pt", "data/demo")               # = simvp-unet score submission.pt --data data/demo

The file is `torch.save` of an integer tensor (N, H, W) (N, 160, 240 in the competition's
task shape) of class ids 0..48, one row per
hidden video in ascending video index; `predict` writes uint8.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import pipelines
from .classes import NUM_CLASSES
from .data import layout
from .data.datasets import VideoDataset
from .data.layout import TaskShape
from .data.manifest import task_shape
from .errors import DataError, short_reason
from .evaluate import video_loader
from .inference import default_device
from .io import atomic_path
from .metrics import MaskScore
from .pipelines import Batch, Models

# Dtypes accepted in a submission (integer class ids); predict writes uint8.
SUBMISSION_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def predict(data: str | Path, models: Models, out: str | Path, *, pipeline: str | None = None,
            batch_size: int = 4, device: torch.device | str | None = None,
            progress: bool = True) -> torch.Tensor:
    """Masks of the scored frame (22) for every hidden video, saved as a uint8 tensor (N, H, W)
    (N, 160, 240 in the competition's task shape).

    Args:
        data: dataset root (reads `hidden/`).
        models: the trained models.
        out: the file to write.
        pipeline: the row to use (default: `pipelines.default_row`, the best the models allow).
        batch_size: videos per step.
        device: where inference runs (default: the GPU when there is one).
        progress: show a progress bar.

    Returns:
        The tensor that was saved, rows ordered by ascending video index.
    """
    name = pipeline or pipelines.default_row(models)
    pipelines.require(name, models, with_frame22=False)  # fail before reading any video
    device = torch.device(device) if device is not None else default_device()
    dataset = VideoDataset(data, "hidden")
    shape = dataset.shape
    pipelines.check_shape(models, shape)
    indices, answers = [], []
    with torch.inference_mode(), tqdm(total=len(dataset), desc=f"predict ({name})", unit="video",
                                      disable=not progress, file=sys.stderr) as bar:
        for item in video_loader(dataset, batch_size):
            mask = pipelines.run(name, Batch(models, item["frames"].to(device), shape=shape))
            answers.append(mask.to(torch.uint8).cpu())
            indices += [int(i) for i in item["index"]]
            bar.update(len(mask))
    order = np.argsort(indices, kind="stable")
    submission = torch.cat(answers)[torch.from_numpy(order)].contiguous()
    with atomic_path(out) as tmp:
        torch.save(submission, tmp)
    return submission


def check_submission(obj: Any, path: str | Path, videos: int, shape: TaskShape) -> torch.Tensor:
    """Validate a loaded submission: an integer tensor (videos, H, W) of ids 0..48, (H, W) the
    size of `shape`."""
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"submission {path} holds a {type(obj).__name__}, expected a torch tensor")
    if obj.dtype not in SUBMISSION_DTYPES:
        raise DataError(f"submission {path} has dtype {obj.dtype}, expected integer class ids "
                        "(torch.uint8 or torch.int64)")
    if obj.ndim != 3 or tuple(obj.shape[1:]) != shape.size:
        raise DataError(f"submission {path} has shape {tuple(obj.shape)}, expected "
                        f"(N, {shape.height}, {shape.width})")
    if len(obj) != videos:
        raise DataError(f"submission {path} has {len(obj)} masks, the hidden set has {videos} videos")
    if obj.numel() and (int(obj.min()) < 0 or int(obj.max()) >= NUM_CLASSES):
        raise DataError(f"submission {path} holds class ids {int(obj.min())}..{int(obj.max())}, "
                        f"expected 0..{NUM_CLASSES - 1}")
    return obj


def score(submission: str | Path, data: str | Path) -> dict[str, Any]:
    """Score a submission file against `<data>/hidden_answers/` with the task's metric."""
    path = Path(submission)
    if not path.is_file():
        raise DataError(f"submission not found: {path}")
    hidden = layout.list_videos(data, "hidden")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a tensor file"
        raise DataError(f"submission {path} is not a file written by torch.save of a tensor "
                        f"({short_reason(exc)})") from None
    shape = task_shape(data)
    masks = check_submission(obj, path, len(hidden), shape)
    answers_root = Path(data) / layout.ANSWERS
    if not answers_root.is_dir():
        raise DataError(f"no answers to score against: {answers_root} not found "
                        "(only generated datasets have them)")
    result = MaskScore()
    for row, (index, _) in enumerate(hidden):
        answer = layout.read_mask(answers_root / layout.video_name(index), shape)[shape.target]
        result.update(masks[row : row + 1], torch.from_numpy(answer)[None])
    return {"jaccard": result.jaccard(), "videos": len(hidden)}
