"""Objects read from masks with the camera's silhouettes: where each sighting stands, how a cube
is turned, and tracked objects drawn.

A box center places an object only when the box is whole. Cut by the image border or partly
hidden behind another object, the box shrinks and its center moves toward what is visible: an
object entering the view has its center pulled inward in every frame it is seen, and its
velocity comes out wrong. Even a whole box is set by the few pixels at the outline's extremes,
which a segmenter's ragged edge moves. Here the camera (`camera.py`) says what the object's
shape looks like at each place, and each sighting is placed where its silhouette best explains
the mask: it covers the object's visible pixels and as little background as it can, while
pixels of other objects (which may hide it) and pixels beyond the border cost nothing. The
result is the center of the whole box it would have there, the number the dynamics reads.

    yaws = cube_turns(camera, tracks)                            # (B, K) cubes' turns
    center = whole_centers(camera, tracks, masks, yaws, start)   # (B, K, T, 2) pixels
    yaws, center = place_tracks(camera, plane, tracks, present)  # both, as served and trained
    mask = draw(camera, tracks, centers, fit_to=truth)           # (B, H, W), objects drawn

The search (`fit_points`) moves the object's image by whole pixels, the mismatch of every shift
within `REACH` pixels at once (a correlation of the silhouette with the mask), again from the
best where it lay at the reach; then within the pixel, where two lines of equal and opposite
slope through the mismatches of the best shift and its two neighbours meet (the mismatch grows
about linearly away from its least, with the length of the outline that moves). All sightings
of a batch are fitted together: the cost is a few array operations per batch, not per sighting.

A cube's turn about the vertical is read from its template, the shape it had when last seen
whole (`estimate_yaws`), and kept. `draw` paints tracked objects as the camera sees them, each
at a box center or fitted to a true mask, one object at a time and finer, a cube's turn fitted
too (`fit_pose`: the `shapes@true` row of evaluate).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..classes import BACKGROUND, shape_and_material
from .camera import CUBE, Camera
from .ground import GroundPlane
from .silhouette import GROUP, paint, silhouette, spans, window_hits
from .tracks import Template, Tracks

REACH = 3  # whole-pixel shifts tried in each direction, per round
_COARSE_YAWS = np.radians(np.arange(0.0, 90.0, 6.0))  # cube turns compared (a quarter turn repeats)
_STEPS = (2.0, 0.7, 0.25, 0.08)  # position search steps, pixels (`fit_position`)
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
    box, ok = spans(camera, shape, xy)
    corner = box[:, :2] - 1  # (left, top), a pixel of margin
    size = (box[:, 2:] - box[:, :2] + 2) * ok[:, None]
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


def whole_centers(camera: Camera, tracks: Tracks, masks: np.ndarray | torch.Tensor, yaws: np.ndarray,
                  start: torch.Tensor) -> torch.Tensor:
    """The centers (B, K, T, 2) of every sighting's whole box, pixels: where the silhouette that
    best fits the sighting's pixels has its box center.

    Whole sightings are fitted too: a box is set by the few pixels at the outline's extremes,
    which a segmenter's ragged edge moves, while the silhouette answers for all of the outline.

    Args:
        camera: the camera (and the objects' sizes).
        tracks: the objects of `masks`.
        masks: the class ids (B, T, H, W) the tracks were measured on (`Tracks.masks`: a
            segmenter's flicker merged into its object, whose pixels they then are).
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
    masks = np.ascontiguousarray(torch.as_tensor(masks).cpu().numpy().astype(np.uint8))  # class ids < 256
    xy, fitted = fit_points(camera, shapes[ok], uv[ok], yaw[ok], masks, b[ok], t[ok],
                            tracks.classes.numpy()[b[ok], k[ok]])
    boxes = camera.boxes(shapes[ok][fitted], xy[fitted], yaw[ok][fitted])
    where = np.flatnonzero(ok)[fitted]
    out[b[where], k[where], t[where]] = torch.from_numpy((boxes[:, :2] + boxes[:, 2:]) / 2)
    return out.to(start.dtype)


def place_tracks(camera: Camera, plane: GroundPlane, tracks: Tracks,
                 present: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Tracked objects read with the camera, as the served forecast and its training read them:
    (B, K) the cubes' turns (`cube_turns`) and (B, K, T, 2) float32 every sighting's placed
    center (`whole_centers`, on CPU), starting from the tracked box centers, those of boxes cut
    by the border corrected by `plane` (`GroundPlane.uncut`, on the plane's device, with the
    sightings `present` (B, K, T) marks)."""
    yaws = cube_turns(camera, tracks)
    device = plane.frame.device
    start = plane.uncut(tracks.classes.to(device), present.to(device), tracks.center.float().to(device),
                        tracks.size.float().to(device))
    return yaws, whole_centers(camera, tracks, tracks.masks, yaws, start.cpu()).float()


# ---- one object fitted finely (the true-position row) ----------------------------------------


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

    This walks the image of the object's center, in ever smaller `steps` (pixels), to where the
    silhouette covers the object's visible pixels (`visible`, bool (H, W)) and as few background
    pixels (`free`, bool (H, W)) as it can; pixels of other objects may hide it. One object at
    a time, down to a twelfth of a pixel: the `shapes@true` row's fit to the true frame 22
    (`fit_pose`), where a cube's turn is searched too and the mismatch of each trial turn is no
    clean V that `fit_points`' interpolation within the pixel reads well (the batched fit scored
    that row lower: benchmarks/results/pipelines.md).
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


def fit_pose(camera: Camera, shape: int, xy: np.ndarray, yaw: float, visible: np.ndarray,
             free: np.ndarray) -> tuple[np.ndarray, float, int]:
    """`fit_position` with a cube's turn fitted too: the floor point, turn and mismatch that best
    explain a mask. A cube may have turned since its template (a collision turns it): its turn
    is searched over a quarter turn in `_COARSE_YAWS`' steps at the fitted point, then in ever
    smaller steps about the best, the point refitted after each. Other shapes: `fit_position`."""
    xy, best = fit_position(camera, shape, xy, yaw, visible, free)
    if shape != CUBE or best == 0:
        return xy, yaw, best
    total = int(np.count_nonzero(visible))
    costs = [(_mismatch(camera, shape, xy, float(turn), visible, free, total), float(turn))
             for turn in (yaw + _COARSE_YAWS) % (math.pi / 2)]
    cost, turn = min(costs)
    if cost < best:
        xy, best, yaw = *fit_position(camera, shape, xy, turn, visible, free), turn
    step = float(_COARSE_YAWS[1] - _COARSE_YAWS[0])
    while step > math.radians(0.5) and best > 0:
        step /= 2
        moved = True
        while moved and best > 0:
            moved = False
            for trial in (yaw - step, yaw + step):
                cost = _mismatch(camera, shape, xy, trial, visible, free, total)
                if cost < best:
                    best, yaw, moved = cost, trial % (math.pi / 2), True
                    break
        xy, best = fit_position(camera, shape, xy, yaw, visible, free, steps=_STEPS[-2:])
    return xy, yaw, best


# ---- a cube's turn, from its template --------------------------------------------------------


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


def cube_turns(camera: Camera, tracks: Tracks) -> np.ndarray:
    """(B, K) each cube's turn read from its template (`estimate_yaws`), 0 for the other shapes."""
    shapes = shape_and_material(tracks.classes)[0].numpy()
    out = np.zeros(shapes.shape)
    read = (shapes == CUBE) & tracks.valid.numpy()
    if tracks.templates is not None and read.any():
        b, k = np.nonzero(read)
        out[b, k] = estimate_yaws(camera, [tracks.templates[i][j] for i, j in zip(b, k, strict=True)])
    return out


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
        fit_to: long (B, H, W), the true mask of that frame: each object's floor point, and a
            cube's turn, are then fitted to its pixels there (`fit_pose`), not read from its box
            center and template alone.

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
    if fit_to is not None:
        truth = fit_to.cpu().numpy()
        for (b, k), (shape, xy, yaw) in placed.items():
            class_id = int(tracks.classes[b, k])
            xy, yaw = fit_pose(camera, shape, xy, yaw, truth[b] == class_id, truth[b] == BACKGROUND)[:2]
            placed[b, k] = (shape, xy, yaw)
    out = []
    for b in range(len(tracks.templates)):
        objects = [(int(tracks.classes[b, k]), *placed[b, k]) for k in np.flatnonzero(drawable[b].numpy())]
        out.append(paint(camera, objects))
    return torch.from_numpy(np.stack(out)) if out else torch.zeros(0, *camera.image_size, dtype=torch.long)


def placements(camera: Camera, tracks: Tracks, centers: torch.Tensor, which: torch.Tensor, *,
               yaws: np.ndarray | None = None) -> dict[tuple[int, int], tuple[int, np.ndarray, float]]:
    """(shape index, floor point, turn) of the objects `which` (bool (B, K)) marks, by (b, k):
    where their whole boxes are centered at `centers` (B, K, 2, pixels), a cube turned as its
    template shows (`cube_turns`, unless `yaws` (B, K) gives the turns already read)."""
    where = [tuple(bk) for bk in which.nonzero().tolist()]
    shapes = shape_and_material(tracks.classes)[0]
    kinds = np.array([int(shapes[b, k]) for b, k in where], dtype=np.int64)
    yaws = cube_turns(camera, tracks) if yaws is None else yaws
    turns = np.array([float(yaws[b, k]) for b, k in where])
    points = camera.floor_position(kinds, centers[which].double().numpy(), turns) if where else np.zeros((0, 2))
    return {bk: (int(kind), point, float(yaw)) for bk, kind, point, yaw in zip(where, kinds, points, turns, strict=True)}
