"""Where a partly seen object stands: its silhouette fitted to the pixels it shows.

A box center places an object only when the box is whole. Cut by the image border or partly
hidden behind another object, the box shrinks and its center moves toward what is visible: an
object entering the view has its center pulled inward in every frame it is seen, and its
velocity comes out wrong. Even a whole box is set by the few pixels at the outline's extremes,
which a segmenter's ragged edge moves. Here the camera (`camera.py`) says what the object's
shape looks like at each place, and each sighting is placed where its silhouette best explains
the mask: it covers the object's visible pixels and as little background as it can, while
pixels of other objects (which may hide it) and pixels beyond the border cost nothing. The
result is the center of the whole box it would have there, the number the dynamics reads.

    center = whole_centers(camera, tracks, masks, yaws, start)   # (B, K, T, 2) pixels

The search moves the object's image by whole pixels, the mismatch of every shift within `REACH`
pixels at once (a correlation of the silhouette with the mask), again from the best where it
lay at the reach; then within the pixel, where two lines of equal and opposite slope through the
mismatches of the best shift and its two neighbours meet (the mismatch grows about linearly
away from its least, with the length of the outline that moves). All sightings of a batch are
fitted together: the cost is a few array operations per batch, not per sighting.
"""

from __future__ import annotations

import numpy as np
import torch

from ..classes import BACKGROUND, shape_and_material
from .camera import CUBE, Camera
from .silhouette import GROUP, estimate_yaws, spans, window_hits
from .tracks import Tracks

REACH = 3  # whole-pixel shifts tried in each direction, per round
_ROUNDS = 3  # rounds of whole-pixel shifts (another only where the best lay at the reach)


# ---- the fit -------------------------------------------------------------------------------


def _weights(masks: np.ndarray, b: np.ndarray, t: np.ndarray, cls: np.ndarray, top: np.ndarray,
             left: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, h, w) float32: +1 on background, -1 on the object's own pixels (class cls[n] in frame
    (b[n], t[n]) of masks (B, T, H, W)), 0 on other objects and beyond the image, over windows
    whose top-left pixels are (top, left) (N)."""
    frames, height, width = masks.shape[1:]
    rows = top[:, None] + np.arange(h)  # (N, h)
    cols = left[:, None] + np.arange(w)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    flat = ((b * frames + t)[:, None, None] * height + rows.clip(0, height - 1)[:, :, None]) * width + cols.clip(
        0, width - 1)[:, None, :]
    label = masks.reshape(-1).take(flat)  # one gather from the flat masks: far cheaper than four index arrays
    out = (label == BACKGROUND).astype(np.float32) - (label == cls[:, None, None])
    return out * inside


def _shift_costs(camera: Camera, shape: np.ndarray, uv: np.ndarray, yaw: np.ndarray, masks: np.ndarray,
                 b: np.ndarray, t: np.ndarray, cls: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """For N objects whose centers are seen at uv (N, 2): the mismatch change (N, 2 REACH + 1,
    2 REACH + 1) of shifting each image by (row, col) - REACH whole pixels, and bool (N): which
    ones the camera sees at all (the others get zeros). Worked out in groups of windows of about
    one size (near objects look several times larger than far ones)."""
    height = camera.rest_height(shape)
    xy = camera.on_floor(uv, height)
    ok = spans(camera, shape, xy)[1]
    box = camera.boxes(shape, np.where(ok[:, None], xy, 0.0), yaw)  # the silhouette's own box: no ray cast in vain
    corner = np.floor(box[:, :2]).astype(np.int64) - 1  # (left, top), a pixel of margin
    size = (np.ceil(box[:, 2:]).astype(np.int64) - corner + 1) * ok[:, None]
    costs = torch.zeros(len(shape), 2 * REACH + 1, 2 * REACH + 1)
    order = np.argsort(size.prod(-1), kind="stable")
    for group in np.array_split(order, max(1, len(order) // GROUP)):
        if not len(group) or not size[group].prod(-1).max():
            continue
        h, w = int(size[group, 1].max()), int(size[group, 0].max())
        seen = window_hits(camera, shape[group], xy[group], yaw[group], corner[group], size[group], (h, w))
        ok[group] &= seen.any((1, 2))  # a point beyond the horizon lies far away: nothing of it shows
        weight = _weights(masks, b[group], t[group], cls[group], corner[group, 1] - REACH, corner[group, 0] - REACH,
                          h + 2 * REACH, w + 2 * REACH)
        # [n, i, j] = sum over the window of (weight shifted by (i, j)) x seen: a grouped correlation
        costs[group] = torch.nn.functional.conv2d(torch.from_numpy(weight)[None],
                                                  torch.from_numpy(seen[:, None].astype(np.float32)),
                                                  groups=len(group))[0]
    return costs, ok


def fit_points(camera: Camera, shape: np.ndarray, uv: np.ndarray, yaw: np.ndarray, masks: np.ndarray,
               b: np.ndarray, t: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where N objects stand, each fitted to its visible pixels in one frame.

    Args:
        camera: the camera.
        shape, yaw: (N) shape indices and cube turns (radians).
        uv: (N, 2) where each object's center is seen to start from, pixels.
        masks: (B, T, H, W) class ids; object n shows as class cls[n] (N) in frame (b[n], t[n]).

    Returns:
        (floor points (N, 2), fitted: bool (N)); an object the camera cannot see (behind it,
        beyond the horizon) is not fitted.
    """
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2).copy()
    n, side = len(shape), 2 * REACH + 1
    if not n:
        return np.zeros((0, 2)), np.zeros(0, bool)
    fitted = np.ones(n, bool)
    near = np.zeros((n, 5))  # mismatch change left, right, above, below and at the best shift
    todo = np.arange(n)
    for _ in range(_ROUNDS):  # whole pixels: every shift within REACH at once
        costs, ok = _shift_costs(camera, shape[todo], uv[todo], yaw[todo], masks, b[todo], t[todo], cls[todo])
        fitted[todo[~ok]] = False
        best = costs.flatten(1).argmin(1).numpy()
        i, j = best // side, best % side
        uv[todo] += np.stack([j - REACH, i - REACH], -1) * ok[:, None]
        ii, jj, rows, grid = i.clip(1, side - 2), j.clip(1, side - 2), np.arange(len(todo)), costs.numpy()
        near[todo] = np.stack([grid[rows, ii, jj - 1], grid[rows, ii, jj + 1], grid[rows, ii - 1, jj],
                               grid[rows, ii + 1, jj], grid[rows, ii, jj]], -1)
        again = ok & ((i == 0) | (j == 0) | (i == side - 1) | (j == side - 1))  # it may go further
        if not again.any():
            break
        todo = todo[again]
    # within the pixel: where two lines of equal and opposite slope through the mismatches of
    # the best shift and its neighbours meet (the mismatch grows about linearly away from its least)
    for axis, (low, high) in enumerate(((0, 1), (2, 3))):
        below, above, least = near[:, low], near[:, high], near[:, 4]
        rise = np.maximum(below, above) - least
        step = np.clip(0.5 * (below - above) / np.where(rise > 0, rise, 1), -0.5, 0.5)
        uv[:, axis] += np.where(fitted & (rise > 0), step, 0)
    return camera.on_floor(uv, camera.rest_height(shape)), fitted


def whole_centers(camera: Camera, tracks: Tracks, masks: torch.Tensor, yaws: np.ndarray,
                  start: torch.Tensor) -> torch.Tensor:
    """The centers (B, K, T, 2) of every sighting's whole box, pixels: where the silhouette that
    best fits the sighting's pixels has its box center.

    Whole sightings are fitted too: a box is set by the few pixels at the outline's extremes,
    which a segmenter's ragged edge moves, while the silhouette answers for all of the outline.

    Args:
        camera: the camera (and the objects' sizes).
        tracks: the objects of `masks`.
        masks: the class ids (B, T, H, W) the tracks come from.
        yaws: (B, K) the cubes' turns, radians (`cube_turns`).
        start: (B, K, T, 2) box centers to start from (whole-box centers as well as they are
            known: the tracked ones, corrected for cuts).

    Returns:
        The fitted centers; `start` where a sighting cannot be placed (the camera does not see
        its starting point).
    """
    out = start.detach().double().cpu().clone()
    seen = tracks.present.numpy()
    if not seen.any():
        return out.to(start.dtype)
    b, k, t = np.nonzero(seen)
    shapes = shape_and_material(tracks.classes)[0].numpy()[b, k]
    yaw = np.asarray(yaws, dtype=np.float64)[b, k]
    begin = camera.floor_position(shapes, out[b, k, t].numpy(), yaw)
    height = camera.rest_height(shapes)
    uv = camera.project(np.concatenate([begin, height[:, None]], -1))
    ok = np.isfinite(uv).all(-1)
    masks = np.ascontiguousarray(masks.detach().cpu().numpy().astype(np.uint8))  # class ids < 256
    xy, fitted = fit_points(camera, shapes[ok], uv[ok], yaw[ok], masks, b[ok], t[ok],
                            tracks.classes.numpy()[b[ok], k[ok]])
    boxes = camera.boxes(shapes[ok][fitted], xy[fitted], yaw[ok][fitted])
    where = np.flatnonzero(ok)[fitted]
    out[b[where], k[where], t[where]] = torch.from_numpy((boxes[:, :2] + boxes[:, 2:]) / 2)
    return out.to(start.dtype)


def cube_turns(camera: Camera, tracks: Tracks) -> np.ndarray:
    """(B, K) each cube's turn read from its template (`silhouette.estimate_yaws`), 0 for the
    other shapes."""
    shapes = shape_and_material(tracks.classes)[0].numpy()
    out = np.zeros(shapes.shape)
    read = (shapes == CUBE) & tracks.valid.numpy()
    if tracks.templates is not None and read.any():
        b, k = np.nonzero(read)
        out[b, k] = estimate_yaws(camera, [tracks.templates[i][j] for i, j in zip(b, k, strict=True)])
    return out
