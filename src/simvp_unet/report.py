"""What `simvp-unet evaluate` writes besides the numbers: the results table and the pictures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .classes import PALETTE
from .data.layout import TaskShape
from .pipelines import PIPELINES
from .viz import draw_path, grid, mask_to_rgb, save_gif, save_png


def results_table(results: Mapping) -> str:
    """Markdown table of an evaluation's `results.json` content."""
    lines = [
        f"Jaccard on {results['videos']} `{results['split']}` videos "
        "(task metric: one confusion matrix over all videos, mean IoU over classes); "
        "skill = (J - J_copy) / (J_oracle - J_copy).",
        "",
        "| row | pipeline | Jaccard | skill |",
        "|---|---|---:|---:|",
    ]
    if results.get("input_masks") == "true":
        shape = TaskShape.from_dict(results.get("shape"), where="results")
        lines[0] += f" Inputs: the TRUE masks of frames 1..{shape.input_frames} (forecasting error alone)."
    for row, value in results["jaccard"].items():
        s = results["skill"].get(row)
        description = PIPELINES[row].description if row in PIPELINES else ""
        lines.append(f"| {row} | {description} | {value:.4f} | "
                     f"{'n/a' if s is None else f'{s:.3f}'} |")
    breakdown = results.get("breakdown")
    if breakdown:
        names = list(breakdown)
        lines += ["", "Jaccard by subset of videos (from meta.json events):", "",
                  "| row | " + " | ".join(f"{n} ({breakdown[n]['videos']})" for n in names) + " |",
                  "|---|" + "---:|" * len(names)]
        for row in results["jaccard"]:
            cells = [breakdown[n]["jaccard"].get(row) for n in names]
            lines.append(f"| {row} | " + " | ".join("n/a" if c is None else f"{c:.4f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class VideoPictures:
    """What is drawn for one video; arrays are numpy on the CPU.

    Args (frame numbers of the competition's task shape):
        index: video index (names the files).
        frames: uint8 (22, 3, H, W), true frames 1..22.
        masks: uint8 (22, H, W), true masks 1..22.
        answers: row name -> (H, W) mask of the scored frame 22 by that row.
        predicted_frames: uint8 (11, 3, H, W), frames 12..22 by the predictor, if any.
        input_masks: (11, H, W), masks of frames 1..11 by the segmenter, if computed.
        forecast: (11, H, W), masks 12..22 by the forecaster, if any.
        paths: tracked objects as (class id, past centers (n, 2), forecast centers (11, 2)),
            drawn over frame 11, if an objects row ran.
    """

    index: int
    frames: np.ndarray
    masks: np.ndarray
    answers: dict[str, np.ndarray]
    predicted_frames: np.ndarray | None = None
    input_masks: np.ndarray | None = None
    forecast: np.ndarray | None = None
    paths: list[tuple[int, np.ndarray, np.ndarray]] | None = None


def draw_tracks(frame: np.ndarray, paths: list[tuple[int, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Frame 11 with each object's past path (white) and forecast path (its class color)."""
    image = np.array(frame, dtype=np.uint8, copy=True)
    for class_id, past, future in paths:
        draw_path(image, past, (255, 255, 255))
        start = past[-1:] if len(past) else future[:0]
        draw_path(image, np.concatenate([start, future]), tuple(int(v) for v in PALETTE[class_id]))
    return image


def _hwc(frames: np.ndarray) -> list[np.ndarray]:
    return list(np.asarray(frames).transpose(0, 2, 3, 1))  # (T, 3, H, W) -> T x (H, W, 3)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 image with `text` on a dark band in its top-left corner."""
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = draw.textbbox((2, 1), text)
    draw.rectangle((0, 0, right + 2, bottom + 1), fill=(0, 0, 0))
    draw.text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(picture)


def save_video_pictures(folder: str | Path, video: VideoPictures, shape: TaskShape) -> list[Path]:
    """Write `video_<i>.png` (sequences and every row's mask of the scored frame) and
    `video_<i>.gif`, for videos of task shape `shape`."""
    folder = Path(folder)
    frames = _hwc(video.frames)
    masks = list(mask_to_rgb(video.masks))
    n, target, last_input = shape.input_frames, shape.target, shape.last_input
    ahead = f"{n + 1}-{target + 1}"
    rows, labels = [frames[:n], frames[n : target + 1]], [f"input 1-{n}", f"true {ahead}"]
    if video.predicted_frames is not None:
        rows.append(_hwc(video.predicted_frames))
        labels.append(f"predicted {ahead}")
    rows.append(masks[n : target + 1])
    labels.append(f"true masks {ahead}")
    if video.forecast is not None:
        rows.append(list(mask_to_rgb(video.forecast)))
        labels.append(f"forecast {ahead}")
    scored = f"frame {target + 1}"
    last = [caption(frames[target], f"true {scored}")]
    if video.predicted_frames is not None:
        last.append(caption(_hwc(video.predicted_frames)[shape.target_in_future], f"predicted {scored}"))
    last.append(caption(masks[target], f"true mask {target + 1}"))
    if video.paths is not None:
        last.append(caption(draw_tracks(frames[last_input], video.paths), f"tracks over frame {n}"))
    last += [caption(mask_to_rgb(mask), row) for row, mask in video.answers.items()]
    rows.append(last)
    labels.append(scored)
    png = save_png(folder / f"video_{video.index}.png", grid(rows, labels=labels, label_width=100))

    # The GIF plays the video up to the scored frame: inputs then the future, true beside predicted.
    sequence = []
    for t in range(target + 1):
        future = t > last_input
        cells = [caption(frames[t], f"frame {t + 1}")]
        if video.predicted_frames is not None:
            shown = _hwc(video.predicted_frames)[t - n] if future else frames[t]
            cells.append(caption(shown, "predicted" if future else "input"))
        cells.append(caption(masks[t], "true mask"))
        if video.forecast is not None:
            source = video.forecast[t - n] if future else (
                video.input_masks[t] if video.input_masks is not None else None)
            if source is not None:
                cells.append(caption(mask_to_rgb(source), "forecast" if future else "segmented"))
        sequence.append(grid([cells]))
    gif = save_gif(folder / f"video_{video.index}.gif", sequence)
    return [png, gif]
