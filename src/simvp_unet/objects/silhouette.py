"""Masks drawn from 3D shapes: each object as the camera sees its cube, sphere or cylinder.

Where a pasted template (the shape an object had in an input frame, scaled) no longer fits,
because the object travelled, `render.py` draws it here at its new place as a camera
(`camera.py`, fitted to the objects' boxes) sees it: a ray through each pixel center meets the
object or not, and the nearest object a ray meets owns the pixel (a depth buffer), so occlusion
follows depth. The ray tests work on many objects and windows at once (`window_hits`):
`placing.py` fits places and turns to masks with them.

    mask = paint(camera, [(class_id, shape, xy, yaw), ...])   # (H, W) class ids
    window, depth = silhouette(camera, shape, xy, yaw)         # one object's pixels and depths
"""

from __future__ import annotations

import numpy as np

from ..classes import BACKGROUND
from .camera import CUBE, CYLINDER, SPHERE, Camera

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
    meets object n (`_enter`). Window n starts at pixel corner[n] (left, top) and only its
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
    if shape not in (CUBE, SPHERE, CYLINDER):
        raise ValueError(f"shape index {shape} is not one of cube, sphere, cylinder")
    depth = _enter(camera, np.array([shape]), np.asarray(xy, dtype=np.float64)[None, :2], np.array([float(yaw)]),
                   _window_rays(camera, np.array([[left, top]]), (bottom - top, right - left)))
    return (slice(top, bottom), slice(left, right)), depth[0]


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
