"""Masks painted from objects: each object's shape at its forecast position and size.

An object's template (its pixels when last seen whole) is its exact look where it was seen, and
near there it is pasted, scaled by the change of inverse depth. An object that travelled further
is seen from another angle (and a cube may have turned), so with a camera (`camera.py`, fitted
to the training tracks) it is drawn as the camera sees its 3D shape there instead
(`silhouette.py`; a cube keeps the turn read from its template). Objects are painted far to near
(ascending image row of the center: the camera looks down on the floor, so lower in the image
is nearer), so nearer objects occlude farther ones; parts outside the image are clipped.
"""

from __future__ import annotations

import numpy as np
import torch

from ..classes import BACKGROUND
from .camera import Camera
from .ground import GroundPlane
from .placing import placements
from .silhouette import silhouette
from .tracks import Tracks

# Pixels an object's center may move from where its template was cut and still be pasted as the
# template; further, a camera draws its 3D shape (benchmarks/results/objects3d.md).
TEMPLATE_REACH = 5.0


def _resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a boolean array."""
    h, w = mask.shape
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(int)
    return mask[rows][:, cols]


def paint(canvas: np.ndarray, shape: np.ndarray, center: tuple[float, float], class_id: int) -> None:
    """Paint a boolean `shape` centered at (x, y) on a (H, W) class-id canvas, clipped."""
    h, w = shape.shape
    top = int(round(center[1] - h / 2))
    left = int(round(center[0] - w / 2))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    part = shape[y0 - top:y1 - top, x0 - left:x1 - left]
    canvas[y0:y1, x0:x1][part] = class_id


def render(tracks: Tracks, centers: torch.Tensor, plane: GroundPlane, *, camera: Camera | None = None,
           drawable: torch.Tensor | None = None, yaws: np.ndarray | None = None) -> torch.Tensor:
    """The mask of one future frame.

    Args:
        tracks: the objects, with templates.
        centers: (B, K, 2) their centers in that frame, pixels.
        plane: gives the apparent size at a position (size scales with inverse depth).
        camera: draws the objects further than `TEMPLATE_REACH` pixels from their template's
            place as 3D shapes; None: every object is its template.
        drawable: bool (B, K), which objects to paint (default: every object). Objects whose
            center is not finite (a diverged forecast) are never painted.
        yaws: (B, K) the cubes' turns already read (`placing.cube_turns`); None: read here for
            the cubes drawn as shapes.

    Returns:
        long (B, H, W) class ids.
    """
    if tracks.templates is None:
        raise ValueError("rendering needs tracks extracted with templates=True")
    h, w = tracks.image_size
    if camera is not None and tuple(camera.image_size) != (h, w):
        raise ValueError(f"the camera sees {camera.image_size} images, the tracks are {(h, w)}")
    centers = centers.detach().float().cpu()
    drawable = tracks.valid if drawable is None else drawable.cpu() & tracks.valid
    drawable = drawable & torch.isfinite(centers).all(-1)
    centers = torch.nan_to_num(centers, nan=0.0, posinf=0.0, neginf=0.0)
    device = plane.frame.device
    with torch.no_grad():
        scale_new = plane.inverse_depth(centers.to(device)).cpu()
        template_xy = torch.tensor([[t.center if t is not None else (0.0, 0.0) for t in row]
                                    for row in tracks.templates]).view(*centers.shape)
        scale_old = plane.inverse_depth(template_xy.to(device)).cpu()
    ratio = (scale_new / scale_old.clamp_min(1e-3)).clamp(0.25, 4.0).numpy()
    xy = centers.numpy()
    shaped = drawable & ((centers - template_xy).norm(dim=-1) > TEMPLATE_REACH) if camera is not None else None
    floor = placements(camera, tracks, centers, shaped, yaws=yaws) if shaped is not None and shaped.any() else {}
    out = np.full((len(tracks.templates), h, w), BACKGROUND, np.int64)
    for b, row in enumerate(tracks.templates):
        order = sorted((k for k in range(len(row)) if bool(drawable[b, k])), key=lambda k: xy[b, k, 1])
        for k in order:
            class_id = int(tracks.classes[b, k])
            if (b, k) in floor:
                drawn = silhouette(camera, *floor[b, k])
                if drawn is not None:
                    window, depth = drawn
                    out[b][window][np.isfinite(depth)] = class_id
                continue
            shape = row[k].mask
            if not shape.size:
                continue
            height = max(1, int(round(shape.shape[0] * ratio[b, k])))
            width = max(1, int(round(shape.shape[1] * ratio[b, k])))
            if (height, width) != shape.shape:
                shape = _resize_nearest(shape, height, width)
            paint(out[b], shape, (float(xy[b, k, 0]), float(xy[b, k, 1])), class_id)
    return torch.from_numpy(out)
