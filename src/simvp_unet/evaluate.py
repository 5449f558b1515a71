"""Score every row of the results table on a labeled split, with pictures.

    models = Models.load({"segmenter": "runs/seg", "predictor": "runs/pred", "forecaster": "runs/fc"})
    results = evaluate("data/demo", "val", models, "eval")     # = simvp-unet evaluate ... --out eval

Writes `results.json` (Jaccard, skill and per-class IoU of every row the models allow),
`results.md` (the table, `report.results_table`) and `pictures/` (`report.save_video_pictures`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from . import pipelines
from .data import layout
from .data.datasets import VideoDataset
from .data.layout import TaskShape
from .errors import ConfigError, DataError
from .inference import default_device
from .io import write_json, write_text
from .metrics import MaskScore, named_per_class, skill
from .objects.cache import split_tracks
from .objects.camera import Camera, fit_camera
from .pipelines import PIPELINES, Batch, Models
from .report import VideoPictures, results_table, save_video_pictures


def video_loader(dataset: Dataset, batch_size: int, limit: int | None = None) -> DataLoader:
    """Batches of `dataset` in order, optionally only its first `limit` items."""
    if batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    if limit is not None:
        if limit <= 0:
            raise ConfigError(f"--limit must be positive, got {limit}")
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    # PNG decoding is cheap next to the models: no worker processes to compete for the CPU
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


# Subsets of videos the results are broken down by, from the events of a generated video's
# meta.json (a real dataset has none: no breakdown then). "After frame 11" is after the input
# frames, whatever the task shape.
BREAKDOWN = ("collision after frame 11", "no collision after frame 11",
             "object enters after frame 11", "no object enters after frame 11")
INPUT_MASKS = ("segmented", "true")


def video_subsets(folder: Path, shape: TaskShape) -> set[str] | None:
    """The `BREAKDOWN` subsets a video belongs to, from its meta.json (None without one)."""
    path = folder / layout.META_FILE
    if not path.is_file():
        return None
    try:
        events = json.loads(path.read_text())["events"]
        late = {e["type"] for e in events if e["frame"] >= shape.input_frames}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a readable meta.json ({type(exc).__name__}: {exc})") from None
    return {BREAKDOWN[0] if "collision" in late else BREAKDOWN[1],
            BREAKDOWN[2] if "enter" in late else BREAKDOWN[3]}


def dataset_camera(data: str | Path, split: str, shape: TaskShape, *, progress: bool = True) -> Camera | None:
    """The camera fitted to the tracks of the true masks of the training split (those the
    dynamics run's ground plane was fitted to), or of `split` where the training split has
    none; None where they show too few whole objects (`objects.camera.fit_camera`)."""
    for source in dict.fromkeys(("train", split)):
        try:
            tracks = split_tracks(data, source, progress=progress)
        except DataError:  # no such split, or no masks in it
            continue
        true = ~tracks["pseudo"]
        if true.any():
            return fit_camera(tracks["classes"][true], tracks["center"][true], tracks["size"][true],
                              tracks["whole"][true], image_size=shape.size)
    return None


def _pictures(batch: Batch, item: dict, answers: dict[str, torch.Tensor], n: int) -> list[VideoPictures]:
    """Picture material of the first `n` videos of a batch, on the CPU."""

    def cpu(x: torch.Tensor | None, k: int) -> np.ndarray | None:
        return None if x is None else x[k].cpu().numpy()

    return [VideoPictures(
        index=int(item["index"][k]), frames=item["frames"][k].numpy(), masks=item["masks"][k].numpy(),
        answers={row: mask[k].cpu().numpy() for row, mask in answers.items()},
        predicted_frames=cpu(batch.computed("predicted_frames"), k),
        input_masks=cpu(batch.computed("input_masks"), k), forecast=cpu(batch.computed("forecast"), k),
        paths=objects.paths(k) if (objects := batch.computed("objects") or batch.computed("objects_cv"))
        else None,
    ) for k in range(min(n, len(item["index"])))]


def evaluate(data: str | Path, split: str, models: Models, out: str | Path, *, batch_size: int = 4,
             limit: int | None = None, pictures: int = 4, runs: dict[str, str] | None = None,
             device: torch.device | str | None = None, progress: bool = True,
             input_masks: str = "segmented") -> dict[str, Any]:
    """Score every row the models allow on a labeled split; write results and pictures to `out`.

    Args:
        data: dataset root.
        split: a labeled split (val, train).
        models: the trained models (at least a segmenter).
        out: folder for `results.json`, `results.md` and `pictures/`.
        batch_size: videos per step.
        limit: score only the first `limit` videos (by index).
        pictures: draw this many videos.
        runs: run folders, recorded in results.json.
        device: where inference runs (default: the GPU when there is one).
        progress: show a progress bar.
        input_masks: "segmented" (the segmenter's masks of the input frames, as in use) or "true"
            (the true masks: forecasting error alone, without segmentation error).

    The dataset's task shape (`data.manifest.task_shape`) says which frames go in and which one
    is scored; a predictor, forecaster or dynamics run trained for another refuses it. The
    upper-bound rows read the split's true masks; `shapes@true` draws with the dynamics run's
    camera, or one fitted to the training split's true masks for a run without one
    (`dataset_camera`), recorded in results.json as "camera".

    Returns:
        The content of results.json.
    """
    if split not in layout.LABELED_SPLITS:
        raise ConfigError(f"evaluation needs a labeled split ({', '.join(layout.LABELED_SPLITS)}), "
                          f"got {split!r}")
    if input_masks not in INPUT_MASKS:
        raise ConfigError(f"--input-masks must be one of {', '.join(INPUT_MASKS)}, got {input_masks!r}")
    device = torch.device(device) if device is not None else default_device()
    out = Path(out)
    dataset = VideoDataset(data, split, masks="true")
    shape = dataset.shape
    pipelines.check_shape(models, shape)
    loader = video_loader(dataset, batch_size, limit)
    subsets = {index: video_subsets(folder, shape) for index, folder in layout.list_videos(data, split)}
    with_breakdown = all(v is not None for v in subsets.values())
    rows = pipelines.available(models, with_frame22=True, with_truth=True, with_camera=True)
    drawn_by_camera = any(PIPELINES[row].reads_camera for row in rows)
    camera = None
    if drawn_by_camera:  # the dynamics run's own camera where it has one (fitted to the same tracks)
        camera = models.dynamics.model.floor.camera() or dataset_camera(data, split, shape, progress=progress)
    if drawn_by_camera and camera is None:
        print("note: no camera could be fitted to the true masks (too few whole spheres and cylinders); "
              "rows that draw with it are left out", file=sys.stderr)
        rows = [row for row in rows if not PIPELINES[row].reads_camera]
    scores = {row: MaskScore(device=device) for row in rows}
    parts = {(name, row): MaskScore(device=device) for name in BREAKDOWN for row in rows}
    counts = dict.fromkeys(BREAKDOWN, 0)
    drawn: list[VideoPictures] = []
    videos = 0
    with torch.inference_mode(), tqdm(total=len(loader.dataset), desc="evaluate", unit="video",
                                      disable=not progress, file=sys.stderr) as bar:
        for item in loader:
            frames = item["frames"].to(device)
            given = item["masks"][:, : shape.input_frames].to(device) if input_masks == "true" else None
            batch = Batch(models, frames[:, : shape.input_frames], frames[:, shape.target],
                          input_masks=given, truth=item["masks"].to(device), camera=camera, shape=shape)
            target = item["masks"][:, shape.target].to(device)
            answers = {row: pipelines.run(row, batch) for row in rows}
            for row, mask in answers.items():
                scores[row].update(mask, target)
            if with_breakdown:
                member = [subsets[int(i)] for i in item["index"]]
                for name in BREAKDOWN:
                    keep = torch.tensor([name in m for m in member], device=device)
                    counts[name] += int(keep.sum())
                    for row, mask in answers.items():
                        if keep.any():
                            parts[name, row].update(mask[keep], target[keep])
            if len(drawn) < pictures:
                drawn += _pictures(batch, item, answers, pictures - len(drawn))
            videos += len(target)
            bar.update(len(target))

    jaccard = {row: scores[row].jaccard() for row in rows}
    results = {
        "jaccard": jaccard,
        "skill": {row: skill(j, jaccard["copy-last"], jaccard["oracle"]) for row, j in jaccard.items()},
        "per_class_iou": {row: named_per_class(scores[row].per_class_iou()) for row in rows},
        "breakdown": {name: {"videos": counts[name],
                             "jaccard": {row: parts[name, row].jaccard() if counts[name] else None
                                         for row in rows}}
                      for name in BREAKDOWN} if with_breakdown else None,
        "input_masks": input_masks,
        "camera": dataclasses.asdict(camera) if camera is not None else None,
        "shape": shape.as_dict(),
        "videos": videos,
        "split": split,
        "data": str(data),
        "runs": dict(runs or {}),
    }
    for video in drawn:
        save_video_pictures(out / "pictures", video, shape)
    write_json(out / "results.json", results)
    write_text(out / "results.md", results_table(results))
    return results
