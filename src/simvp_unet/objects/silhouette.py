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
GROUP = 32  # windows of about one size whose rays are cast together (`window_hits`)


# ---- where rays meet objects: the depth at which each ray enters each object ---------------


def _slab(o: np.ndarray, d: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """t interval of rays o + t d along one axis (o (N, 1), d (N, M)) inside low <= x <= high. A
    ray parallel to the slab gets infinite ends of the right signs (all of it inside, or none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (low - o) / d, (high - o) / d
    return np.minimum(t0, t1), np.maximum(t0, t1)


def _box(o: list[np.ndarray], d: list[np.ndarray], low: list[float], high: list[float]
         ) -> tuple[np.ndarray, np.ndarray]:
    """t interval of rays (per axis: o (N, 1), d (N, M)) inside a box (low, high per axis)."""
    enter, leave = _slab(o[0], d[0], low[0], high[0])
    for axis in range(1, len(o)):
        t0, t1 = _slab(o[axis], d[axis], low[axis], high[axis])
        np.maximum(enter, t0, out=enter)
        np.minimum(leave, t1, out=leave)
    return enter, leave


def _quadratic(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The roots (low, high) of a t^2 + 2 b t + c = 0; (inf, -inf) where there are none."""
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(disc >= 0, (-b - root) / a, np.inf), np.where(disc >= 0, (-b + root) / a, -np.inf)


def _enter(camera: Camera, shape: np.ndarray, xy: np.ndarray, yaw: np.ndarray,
           d: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The depth (N, ...) at which rays from the camera along d (x, y, z components, each (N,
    ...) or broadcastable to it) enter object n (inf where they miss): shape index shape[n]
    resting on the floor at xy[n] (N, 2), a cube turned by yaw[n] radians about the vertical.
    Worked out per component, in float32."""
    dx, dy, dz = (np.asarray(c, dtype=np.float32) for c in d)
    full = np.broadcast_shapes(dx.shape, dy.shape, dz.shape)
    out = np.full(full, np.inf, np.float32)
    ones = (1,) * (len(full) - 1)
    o = (camera.eye - np.concatenate([xy, np.zeros((len(xy), 1))], -1)).astype(np.float32)  # floor point at 0
    for kind in (SPHERE, CYLINDER, CUBE):
        pick = np.flatnonzero(np.asarray(shape) == kind)
        if not len(pick):
            continue
        ox, oy, oz = (o[pick, i].reshape(-1, *ones) for i in range(3))
        px, py, pz = dx[pick], dy[pick], dz[pick]
        if kind == SPHERE:  # center one radius above the floor
            oz = oz - 1
            enter, leave = _quadratic(px * px + py * py + pz * pz, px * ox + py * oy + pz * oz,
                                      ox * ox + oy * oy + oz * oz - 1)
        elif kind == CYLINDER:  # upright: a disc across, a slab up
            enter, leave = _quadratic(px * px + py * py, px * ox + py * oy,
                                      ox * ox + oy * oy - camera.cylinder_radius**2)
            low, high = _slab(oz, pz, 0.0, 2 * camera.cylinder_half)
            enter, leave = np.maximum(enter, low), np.minimum(leave, high)
        else:  # in the cube's own axes: turned by its yaw about the vertical
            c, s = (f(yaw[pick]).astype(np.float32).reshape(-1, *ones) for f in (np.cos, np.sin))
            a = camera.cube_half
            enter, leave = _box([ox * c + oy * s, oy * c - ox * s, oz], [px * c + py * s, py * c - px * s, pz],
                                [-a, -a, 0.0], [a, a, 2 * a])
        out[pick] = np.where((enter <= leave) & (leave > 0), enter, np.inf)
    return out


def depths(camera: Camera, shape: np.ndarray, xy: np.ndarray, yaw: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(N, M) the depth at which each of M rays from the camera along d (N, M, 3) enters object
    n (inf where it misses): shape index shape[n] resting on the floor at xy[n] (N, 2), a cube
    turned by yaw[n] radians about the vertical."""
    return _enter(camera, shape, xy, yaw, (d[..., 0], d[..., 1], d[..., 2]))


def _window_rays(camera: Camera, corner: np.ndarray, extent: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The x, y, z components of the rays through the pixel centers of N windows of `extent` (h,
    w) whose top-left pixels are corner (N, 2) (left, top): x (N, 1, w), y and z (N, h, 1). The
    camera is level: a pixel's column alone sets x, its row alone y and z."""
    h, w = extent
    right, down, forward = camera.axes
    across = (corner[:, :1] + np.arange(w) + 0.5 - camera.principal[0]) / camera.focal  # (N, w)
    below = (corner[:, 1:] + np.arange(h) + 0.5 - camera.principal[1]) / camera.focal  # (N, h)
    return ((forward[0] + across * right[0])[:, None, :], (forward[1] + below * down[1])[:, :, None],
            (forward[2] + below * down[2])[:, :, None])


def window_hits(camera: Camera, shape: np.ndarray, xy: np.ndarray, yaw: np.ndarray, corner: np.ndarray,
                size: np.ndarray, extent: tuple[int, int]) -> np.ndarray:
    """bool (N, h, w): whether the ray through each pixel center of N windows of `extent` (h, w)
    meets object n (as `depths`). Window n starts at pixel corner[n] (left, top) and only its
    first size[n] (w, h) pixels count (the rest are False). Rays are cast in groups of windows of
    about one size, each group as large as its largest (near objects look several times larger
    than far ones: one size for all would cast most rays in vain)."""
    out = np.zeros((len(shape), *extent), bool)
    order = np.argsort(size.prod(-1), kind="stable")
    for group in np.array_split(order, max(1, len(order) // GROUP)):
        if not len(group) or not size[group].prod(-1).max():
            continue
        w, h = int(size[group, 0].max()), int(size[group, 1].max())
        met = np.isfinite(_enter(camera, shape[group], xy[group], yaw[group], _window_rays(camera, corner[group], (h, w))))
        inside = (np.arange(h)[None, :, None] < size[group, 1, None, None]) & (
            np.arange(w)[None, None, :] < size[group, 0, None, None])
        out[group, :h, :w] = met & inside
    return out


def spans(camera: Camera, shape: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) pixel windows (left, top, right, bottom), not clipped to the image, that hold the
    image of a ball around each object (shape indices (N), floor points (N, 2)), and bool (N):
    where there is one (not behind the camera, finite)."""
    center = np.concatenate([xy, camera.rest_height(shape)[:, None]], -1)
    p = (center - camera.eye) @ camera.axes.T
    radius = np.array([camera.bounding_radius(int(s)) for s in shape])
    ok = np.isfinite(p).all(-1) & (p[:, 2] > radius * 1.01)
    p = np.where(ok[:, None], p, [0.0, 0.0, 2.0])
    radius = np.where(ok, radius, 1.0)
    z2 = p[:, 2] ** 2 - radius**2
    ends = []
    for axis in (0, 1):
        root = radius * np.sqrt(p[:, axis] ** 2 + z2)
        middle = p[:, axis] * p[:, 2]
        ends.append(camera.principal[axis] + camera.focal * (middle - root) / z2)
        ends.append(camera.principal[axis] + camera.focal * (middle + root) / z2)
    left, right, top, bottom = ends
    return np.stack([np.floor(left), np.floor(top), np.ceil(right), np.ceil(bottom)], -1).astype(np.int64), ok


def _window(camera: Camera, shape: int, xy: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) pixels holding the image of a ball around the object (the
    part inside the image), or None when it is outside the image, behind the camera or nowhere
    (a floor point that is not finite: a forecast beyond the horizon)."""
    box, ok = spans(camera, np.array([shape]), np.asarray(xy, dtype=np.float64)[None, :2])
    if not ok[0]:
        return None
    h, w = camera.image_size
    left, top, right, bottom = max(int(box[0, 0]), 0), max(int(box[0, 1]), 0), min(int(box[0, 2]), w), min(
        int(box[0, 3]), h)
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
    if shape not in (CUBE, SPHERE, CYLINDER):
        raise ValueError(f"shape index {shape} is not one of cube, sphere, cylinder")
    depth = depths(camera, np.array([shape]), np.asarray(xy, dtype=np.float64)[None, :2], np.array([float(yaw)]),
                   d.reshape(1, -1, 3))
    return (slice(top, bottom), slice(left, right)), depth.reshape(d.shape[:2])


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


def estimate_yaws(camera: Camera, templates: list[Template]) -> np.ndarray:
    """Cubes' turns about the vertical (N) (radians, in [0, pi/2)) from the shapes they had when
    last seen whole (their templates (N)): for each, the turn whose silhouette, placed where its
    box has the template's box center, differs from the template in the fewest pixels. Turns 6
    degrees apart are tried, all cubes at once, and the least difference found between them (a
    parabola's). An empty template gives 0."""
    out = np.zeros(len(templates))
    keep = [i for i, template in enumerate(templates) if template.mask.any()]
    if not keep:
        return out
    n, m = len(_COARSE_YAWS), len(keep)
    kinds, yaw = np.full(n * m, CUBE), np.tile(_COARSE_YAWS, m)  # [i * n + j]: cube i at turn j
    places = camera.floor_position(kinds, np.repeat([templates[i].center for i in keep], n, 0), yaw)
    box, ok = spans(camera, kinds, places)
    (height, width), box = camera.image_size, np.where(ok[:, None], box, 0)
    corner = np.stack([box[:, 0].clip(0, width), box[:, 1].clip(0, height)], -1)  # the window inside the image
    size = (np.stack([box[:, 2].clip(0, width), box[:, 3].clip(0, height)], -1) - corner) * ok[:, None]
    h, w = int(size[:, 1].max()), int(size[:, 0].max())
    rows, cols = corner[:, 1:] + np.arange(h), corner[:, :1] + np.arange(w)  # (N, h), (N, w)
    seen = window_hits(camera, kinds, places, yaw, corner, size, (h, w))
    # the template's pixels at those image pixels
    masks = [templates[i].mask for i in keep]
    stack = np.zeros((m, max(x.shape[0] for x in masks), max(x.shape[1] for x in masks)), bool)
    for i, mask in enumerate(masks):
        stack[i, :mask.shape[0], :mask.shape[1]] = mask
    size = np.array([mask.shape for mask in masks])  # (m, 2): h, w
    corner = np.round(np.array([templates[i].center[::-1] for i in keep]) - size / 2).astype(np.int64)
    r, c = rows - np.repeat(corner[:, 0], n)[:, None], cols - np.repeat(corner[:, 1], n)[:, None]
    inside = ((r >= 0) & (r < np.repeat(size[:, 0], n)[:, None]))[:, :, None] & (
        (c >= 0) & (c < np.repeat(size[:, 1], n)[:, None]))[:, None, :]
    which = np.repeat(np.arange(m), n)[:, None, None]
    on = stack[which, r.clip(0, stack.shape[1] - 1)[:, :, None], c.clip(0, stack.shape[2] - 1)[:, None, :]] & inside
    area = np.array([np.count_nonzero(mask) for mask in masks])
    costs = (np.repeat(area, n) - (seen & on).sum((1, 2)) + (seen & ~on).sum((1, 2))).reshape(m, n).astype(np.float64)
    best = costs.argmin(1)
    # the vertex of the parabola through the best turn and its two neighbours (turns repeat)
    pick = np.arange(m)
    low, mid, high = costs[pick, best - 1], costs[pick, best], costs[pick, (best + 1) % n]
    curve = low - 2 * mid + high
    shift = np.where(curve > 0, 0.5 * (low - high) / np.where(curve > 0, curve, 1), 0.0)
    step = float(_COARSE_YAWS[1] - _COARSE_YAWS[0])
    out[keep] = (_COARSE_YAWS[best] + np.clip(shift, -0.5, 0.5) * step) % (math.pi / 2)
    return out


def estimate_yaw(camera: Camera, shape: int, template: Template) -> float:
    """A cube's turn about the vertical (radians, in [0, pi/2)) from its template
    (`estimate_yaws`); 0 for round shapes."""
    return float(estimate_yaws(camera, [template])[0]) if shape == CUBE else 0.0


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


def placements(camera: Camera, tracks: Tracks, centers: torch.Tensor, which: torch.Tensor, *,
               yaws: np.ndarray | None = None) -> dict[tuple[int, int], tuple[int, np.ndarray, float]]:
    """(shape index, floor point, turn) of the objects `which` (bool (B, K)) marks, by (b, k):
    where their whole boxes are centered at `centers` (B, K, 2, pixels), a cube turned as its
    template shows (`estimate_yaws`; `yaws` (B, K): the turns already read, `placing.cube_turns`)."""
    where = [tuple(bk) for bk in which.nonzero().tolist()]
    shapes = shape_and_material(tracks.classes)[0]
    kinds = np.array([int(shapes[b, k]) for b, k in where], dtype=np.int64)
    if yaws is None:
        cubes = np.flatnonzero(kinds == CUBE)
        turns = np.zeros(len(where))
        turns[cubes] = estimate_yaws(camera, [tracks.templates[where[i][0]][where[i][1]] for i in cubes])
    else:
        turns = np.array([float(yaws[b, k]) for b, k in where])
    points = camera.floor_position(kinds, centers[which].double().numpy(), turns) if where else np.zeros((0, 2))
    return {bk: (int(kind), point, float(yaw)) for bk, kind, point, yaw in zip(where, kinds, points, turns, strict=True)}
