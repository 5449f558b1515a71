"""Pictures: masks in the class palette, overlays, grids, PNG and GIF files (written atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .classes import PALETTE
from .io import atomic_path


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """(..., H, W) class ids -> (..., H, W, 3) uint8 palette colors."""
    return PALETTE[np.clip(np.asarray(mask), 0, len(PALETTE) - 1).astype(np.int64)]


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a (H, W, 3) uint8 frame with its mask colors; background pixels stay as they are."""
    colors = mask_to_rgb(mask).astype(np.float32)
    out = frame.astype(np.float32)
    fg = np.asarray(mask) > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colors[fg]
    return out.clip(0, 255).astype(np.uint8)


def draw_path(image: np.ndarray, points: np.ndarray, color: tuple[int, int, int], *,
              dot: bool = True) -> np.ndarray:
    """Draw a polyline through (n, 2) pixel points (x, y) on a (H, W, 3) uint8 image, in place,
    with a dot at its last point; parts outside the image are clipped."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(points):
        return image
    canvas = Image.fromarray(image)
    pen = ImageDraw.Draw(canvas)
    if len(points) > 1:
        pen.line([tuple(p) for p in points], fill=tuple(color), width=1)
    if dot:
        x, y = points[-1]
        pen.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=tuple(color))
    image[...] = np.asarray(canvas)
    return image


def grid(rows: Sequence[Sequence[np.ndarray]], *, pad: int = 2, labels: Sequence[str] | None = None,
         label_width: int = 0) -> np.ndarray:
    """Tile (H, W, 3) uint8 images into one picture, row by row; optional row labels on the left."""
    h = max(im.shape[0] for row in rows for im in row)
    w = max(im.shape[1] for row in rows for im in row)
    ncols = max(len(row) for row in rows)
    canvas = np.full((len(rows) * (h + pad) + pad, label_width + ncols * (w + pad) + pad, 3), 255,
                     dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            y, x = pad + r * (h + pad), label_width + pad + c * (w + pad)
            canvas[y : y + im.shape[0], x : x + im.shape[1]] = im
    if labels:
        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
        for r, text in enumerate(labels):
            draw.text((3, pad + r * (h + pad) + h // 2 - 5), text, fill=(0, 0, 0))
        canvas = np.asarray(image)
    return canvas


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Save a (H, W, 3) uint8 array as PNG, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")
    return path


def save_gif(path: str | Path, frames: Sequence[np.ndarray], *, fps: float = 4.0) -> Path:
    """Save (H, W, 3) uint8 frames as a looping GIF, atomically."""
    path = Path(path)
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / fps), loop=0)
    return path
