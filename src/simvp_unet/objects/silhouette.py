"""Masks drawn from 3D shapes: each object as the camera sees its cube, sphere or cylinder.

Where a pasted template (the shape an object had in an input frame, scaled) no longer fits,
because the object travelled, `render.py` draws it here at its new place as a camera
(`camera.py`, fitted to the objects' boxes) sees it: a ray through
each pixel center meets the object or not, and the nearest object a ray meets owns the pixel
(a depth buffer), so occlusion follows depth. A cube's turn about the vertical is read from
its template (`estimate_yaw`) and kept.

    yaw = estimate_yaw(camera, CUBE, template)
    mask = paint(camera, [(class_id, shape, xy, yaw), ...])   # (H, W) class ids
    masks = draw(camera, tracks, centers)                     # (B, H, W), objects at box centers
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..classes import BACKGROUND, shape_and_material
from .camera import CUBE, CYLINDER, SPHERE, Camera
from .tracks import Template, Tracks

_COARSE_YAWS = np.radians(np.arange(0.0, 90.0, 6.0))  # cube turns compared (a quarter turn repeats)
_STEPS = (2.0, 0.7, 0.25, 0.08)  # position search steps, pixels (`fit_position`)


# ---- where a ray o + t d (t >= 0) is inside a shape: an interval of t ----------------------


def _slab(o: np.ndarray, d: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """t interval of rays from o (n,) along d (..., n) inside low <= o + t d <= high on each
    of n axes (low, high (n,))."""
    enter, leave = np.full(d.shape[:-1], -np.inf), np.full(d.shape[:-1], np.inf)
    for axis in range(d.shape[-1]):
        step = d[..., axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (low[axis] - o[axis]) / step, (high[axis] - o[axis]) / step
        if not low[axis] <= o[axis] <= high[axis]:  # rays parallel to the slab never enter it
            t0, t1 = np.where(step == 0, np.inf, t0), np.where(step == 0, -np.inf, t1)
        np.maximum(enter, np.minimum(t0, t1), out=enter)
        np.minimum(leave, np.maximum(t0, t1), out=leave)
    return enter, leave


def _ball(o: np.ndarray, d: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """t interval of rays from o (n,) along d (..., n) inside a ball (n = 3) or disc (n = 2)
    of `radius` at the origin."""
    a = (d * d).sum(-1)
    b = d @ o
    disc = b * b - a * (o @ o - radius * radius)
    root = np.sqrt(np.maximum(disc, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(disc >= 0, (-b - root) / a, np.inf), np.where(disc >= 0, (-b + root) / a, -np.inf)


def _window(camera: Camera, shape: int, xy: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) pixels holding the image of a ball around the object (the
    part inside the image), or None when it is outside the image, behind the camera or nowhere
    (a floor point that is not finite: a forecast beyond the horizon)."""
    center = np.array([xy[0], xy[1], camera.rest_height(np.array(shape))])
    p = (center - camera.eye) @ camera.axes.T
    radius = camera.bounding_radius(shape)
    if not np.isfinite(p).all() or p[2] <= radius * 1.01:
        return None
    z2 = p[2] ** 2 - radius**2
    spans = []
    for axis in (0, 1):
        root = radius * math.sqrt(p[axis] ** 2 + z2)
        spans.append(camera.principal[axis] + camera.focal * (p[axis] * p[2] + np.array([-root, root])) / z2)
    h, w = camera.image_size
    left, right = max(int(math.floor(spans[0][0])), 0), min(int(math.ceil(spans[0][1])), w)
    top, bottom = max(int(math.floor(spans[1][0])), 0), min(int(math.ceil(spans[1][1])), h)
    return (top, left, bottom, right) if left < right and top < bottom else None


def silhouette(camera: Camera, shape: int, xy: np.ndarray, yaw: float = 0.0
               ) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The pixels an object covers: a ray through each pixel center meets it or not.

    Args:
        camera: the camera.
        shape: shape index (`classes.SHAPES`).
        xy: the floor point under the object's center (2,).
        yaw: a cube's turn about the vertical, radians.

    Returns:
        (window, depth): the window (rows, cols) of the image it lies in and, over it, the depth
        at which each ray enters the object (inf where it misses); None outside the image.
    """
    box = _window(camera, shape, xy)
    if box is None:
        return None
    top, left, bottom, right = box
    d = camera.pixel_rays[top:bottom, left:right]
    o = camera.eye - np.array([xy[0], xy[1], 0.0])  # the object's floor point at the origin
    if shape == SPHERE:
        enter, leave = _ball(o - np.array([0.0, 0.0, 1.0]), d, 1.0)
    elif shape == CYLINDER:
        enter, leave = _ball(o[:2], d[..., :2], camera.cylinder_radius)
        low, high = _slab(o[2:], d[..., 2:], np.zeros(1), np.full(1, 2 * camera.cylinder_half))
        enter, leave = np.maximum(enter, low), np.minimum(leave, high)
    elif shape == CUBE:
        c, s, a = math.cos(yaw), math.sin(yaw), camera.cube_half
        turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # world = turn @ cube frame
        enter, leave = _slab(o @ turn, d @ turn, np.array([-a, -a, 0.0]), np.array([a, a, 2 * a]))
    else:
        raise ValueError(f"shape index {shape} is not one of cube, sphere, cylinder")
    hit = (enter <= leave) & (leave > 0)
    return (slice(top, bottom), slice(left, right)), np.where(hit, enter, np.inf)


def paint(camera: Camera, objects: list[tuple[int, int, np.ndarray, float]]) -> np.ndarray:
    """A class-id mask (H, W) of objects (class id, shape index, floor point (2,), yaw): at each
    pixel the object its ray meets first."""
    out = np.full(camera.image_size, BACKGROUND, np.int64)
    nearest = np.full(camera.image_size, np.inf)
    for class_id, shape, xy, yaw in objects:
        seen = silhouette(camera, shape, xy, yaw)
        if seen is None:
            continue
        window, depth = seen
        front = depth < nearest[window]
        nearest[window][front] = depth[front]
        out[window][front] = class_id
    return out


# ---- reading an object's place and turn from a mask -----------------------------------------


def _mismatch(camera: Camera, shape: int, xy: np.ndarray, yaw: float, visible: np.ndarray,
              free: np.ndarray, total: int) -> int:
    """Pixels of `visible` (H, W; `total` of them) the object misses plus pixels of `free`
    (H, W) it covers. Pixels it covers that are neither may be hidden behind another object:
    they cost nothing."""
    seen = silhouette(camera, shape, xy, yaw)
    if seen is None:
        return total
    window, depth = seen
    hit = np.isfinite(depth)
    return total - int(np.count_nonzero(hit & visible[window])) + int(np.count_nonzero(hit & free[window]))


def fit_position(camera: Camera, shape: int, xy: np.ndarray, yaw: float, visible: np.ndarray,
                 free: np.ndarray, *, steps: tuple[float, ...] = _STEPS) -> tuple[np.ndarray, int]:
    """The floor point near `xy` whose silhouette best explains a mask, and its mismatch.

    A box center places a partly hidden or cut object badly, and a whole one only to half a
    pixel: this walks the image of the object's center, in ever smaller `steps` (pixels), to
    where the silhouette covers the object's visible pixels (`visible`, bool (H, W)) and as
    few background pixels (`free`, bool (H, W)) as it can; pixels of other objects may hide it.
    """
    height = float(camera.rest_height(np.array(shape)))
    uv = camera.project(np.array([xy[0], xy[1], height]))
    total = int(np.count_nonzero(visible))
    best = _mismatch(camera, shape, np.asarray(xy, dtype=np.float64), yaw, visible, free, total)
    for step in steps:
        moved = True
        while moved and best > 0:
            moved = False
            for du, dv in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
                trial = uv + step * np.array([du, dv])
                cost = _mismatch(camera, shape, camera.on_floor(trial, height), yaw, visible, free, total)
                if cost < best:
                    best, uv, moved = cost, trial, True
    return camera.on_floor(uv, height), best


def _template_image(camera: Camera, template: Template) -> np.ndarray:
    """A template's pixels where they were in their frame: bool (H, W)."""
    h, w = template.mask.shape
    top, left = int(round(template.center[1] - h / 2)), int(round(template.center[0] - w / 2))
    out = np.zeros(camera.image_size, bool)
    out[top:top + h, left:left + w] = template.mask
    return out


def estimate_yaw(camera: Camera, shape: int, template: Template) -> float:
    """A cube's turn about the vertical (radians, in [0, pi/2)) from the shape it had when last
    seen whole (its template): the turn whose silhouette, placed where its box has the template's
    box center, differs from the template in the fewest pixels; 0 for round shapes. Turns 6
    degrees apart are tried, and the least difference found between them (a parabola's).
    """
    if shape != CUBE or not template.mask.any():
        return 0.0
    seen = _template_image(camera, template)
    area = int(np.count_nonzero(seen))
    n = len(_COARSE_YAWS)
    places = camera.floor_position(np.full(n, CUBE), np.repeat([template.center], n, 0), _COARSE_YAWS)
    costs = np.array([_mismatch(camera, CUBE, xy, float(y), seen, ~seen, area)
                      for y, xy in zip(_COARSE_YAWS, places, strict=True)], dtype=np.float64)
    best = int(np.argmin(costs))
    # the vertex of the parabola through the best turn and its two neighbours (turns repeat)
    low, mid, high = costs[best - 1], costs[best], costs[(best + 1) % n]
    curve = low - 2 * mid + high
    shift = 0.5 * (low - high) / curve if curve > 0 else 0.0
    step = float(_COARSE_YAWS[1] - _COARSE_YAWS[0])
    return float((_COARSE_YAWS[best] + np.clip(shift, -0.5, 0.5) * step) % (math.pi / 2))


# ---- masks of tracked objects ----------------------------------------------------------------


def draw(camera: Camera, tracks: Tracks, centers: torch.Tensor, *, drawable: torch.Tensor | None = None,
         fit_to: torch.Tensor | None = None) -> torch.Tensor:
    """The mask of one frame: the tracked objects drawn as the camera sees their shapes.

    Args:
        camera: the camera (and the objects' sizes).
        tracks: the objects, with templates (a cube's turn is read from its template).
        centers: (B, K, 2) the centers of their whole boxes in that frame, pixels.
        drawable: bool (B, K), which objects to draw (default: every object). Objects whose
            center is not finite are never drawn.
        fit_to: long (B, H, W), the true mask of that frame: each object's floor point is then
            fitted to its pixels there (`fit_position`), not read from its box center alone.

    Returns:
        long (B, H, W) class ids.
    """
    if tracks.templates is None:
        raise ValueError("drawing needs tracks extracted with templates=True (a cube's turn)")
    if tuple(camera.image_size) != tuple(tracks.image_size):
        raise ValueError(f"the camera sees {camera.image_size} images, the tracks are {tracks.image_size}")
    centers = centers.detach().double().cpu()
    drawable = tracks.valid if drawable is None else drawable.cpu() & tracks.valid
    drawable = drawable & torch.isfinite(centers).all(-1)
    placed = placements(camera, tracks, centers, drawable)
    truth = None if fit_to is None else fit_to.cpu().numpy()
    out = []
    for b in range(len(tracks.templates)):
        objects = []
        for k in np.flatnonzero(drawable[b].numpy()):
            class_id, (shape, xy, yaw) = int(tracks.classes[b, k]), placed[b, k]
            if truth is not None:
                xy = fit_position(camera, shape, xy, yaw, truth[b] == class_id, truth[b] == BACKGROUND)[0]
            objects.append((class_id, shape, xy, yaw))
        out.append(paint(camera, objects))
    return torch.from_numpy(np.stack(out)) if out else torch.zeros(0, *camera.image_size, dtype=torch.long)


def placements(camera: Camera, tracks: Tracks, centers: torch.Tensor,
               which: torch.Tensor) -> dict[tuple[int, int], tuple[int, np.ndarray, float]]:
    """(shape index, floor point, turn) of the objects `which` (bool (B, K)) marks, by (b, k):
    where their whole boxes are centered at `centers` (B, K, 2, pixels), a cube turned as its
    template shows (`estimate_yaw`)."""
    where = [tuple(bk) for bk in which.nonzero().tolist()]
    shapes = shape_and_material(tracks.classes)[0]
    kinds = np.array([int(shapes[b, k]) for b, k in where], dtype=np.int64)
    yaws = np.array([estimate_yaw(camera, int(shapes[b, k]), tracks.templates[b][k]) for b, k in where])
    points = camera.floor_position(kinds, centers[which].double().numpy(), yaws) if where else np.zeros((0, 2))
    return {bk: (int(kind), point, float(yaw)) for bk, kind, point, yaw in zip(where, kinds, points, yaws, strict=True)}
