"""Objects and their tracks from a sequence of class masks.

In these videos a class id names one object, so an object's pixels in a frame are the
pixels of its class. Real segmenter output is messier, and `extract_tracks` copes with it:

- small noise blobs (under `min_pixels`) are dropped before anything is measured;
- an object split in two by an occluder stays one object (all pixels of its class);
- segmenter flicker (part of an object, or a few frames of it, given a neighbouring class)
  is repaired by merging the weaker class into the stronger one when it always lies on it:
  the object's class is the one with the most pixels over the frames (a majority vote);
- an object hidden for a few frames keeps its track (`present` is False there, and the
  motion models fill the gap);
- an object cut by the image border gets its center from its full size, measured in the
  frames where it was whole, so the cut does not bias its position;
- two objects of one class (impossible in generated data) are measured as one.

Positions are box centers in pixels (x right, y down), sizes full box sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ..classes import BACKGROUND, NUM_CLASSES

# Objects per video a track set holds (the generator puts at most 10 in a video).
MAX_OBJECTS = 12
# Connected blobs smaller than this are noise, not objects (pixels at 160 x 240).
MIN_PIXELS = 12
# A frame shows the object whole when it is not cut by the border and has at least this
# share of the object's largest uncut area (otherwise it is partly occluded).
WHOLE_AREA = 0.85


@dataclass
class Template:
    """The shape of an object as last seen whole: a boolean crop and where it was.

    Args:
        mask: bool (h, w), the object's pixels inside its box.
        center: (x, y) of the box center in that frame, pixels.
        frame: the input frame it comes from (0-based).
    """

    mask: np.ndarray
    center: tuple[float, float]
    frame: int


@dataclass
class Tracks:
    """The objects of B videos over T frames, at most `MAX_OBJECTS` per video (slot order
    is arbitrary; empty slots have class 0 and are never present).

    Args:
        classes: long (B, K), the class id of each object (0: empty slot).
        present: bool (B, K, T), the object has pixels in that frame.
        center: float (B, K, T, 2), box center (x, y) in pixels, corrected for border cuts.
        size: float (B, K, T, 2), the object's full box size (w, h) in pixels.
        area: float (B, K, T), visible pixels.
        cut: bool (B, K, T), the box touches the image border.
        whole: bool (B, K, T), seen whole (not cut, not much occluded).
        templates: per video, per slot, the shape to paint (None for empty slots), or None
            when templates were not asked for.
        image_size: (H, W) of the masks.
        masks: uint8 (B, T, H, W), the class ids the tracks were measured on (small blobs
            dropped, a segmenter's flicker merged into the object it belongs to), kept with the
            templates (None without them): what `placing.whole_centers` fits silhouettes to.
    """

    classes: torch.Tensor
    present: torch.Tensor
    center: torch.Tensor
    size: torch.Tensor
    area: torch.Tensor
    cut: torch.Tensor
    whole: torch.Tensor
    templates: list[list[Template | None]] | None
    image_size: tuple[int, int]
    masks: np.ndarray | None = None

    @property
    def valid(self) -> torch.Tensor:
        """bool (B, K): the slot holds an object."""
        return self.classes != BACKGROUND

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors as numpy arrays (for the track cache)."""
        return {name: getattr(self, name).numpy() for name in
                ("classes", "present", "center", "size", "area", "cut", "whole")}


# ---- per-class measurements ------------------------------------------------------------


def drop_small_blobs(masks: np.ndarray, min_pixels: int) -> np.ndarray:
    """A copy of class masks (..., H, W) where the pixels of a class that number fewer than
    `min_pixels` in their 4-connected blob of foreground become background.

    A blob of one class is kept or dropped whole; where objects of several classes touch,
    each class's share of the blob counts on its own (a thin fringe of a wrong class along an
    object goes, the object stays).
    """
    out = masks.reshape(-1, *masks.shape[-2:]).copy()
    # one labelling of the foreground of every frame (no connection across frames)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    labels, n = ndimage.label(out != BACKGROUND, structure=structure)
    if n == 0:
        return out.reshape(masks.shape)
    fg = np.flatnonzero(labels)  # objects cover a small part of a frame: work on them only
    key = labels.ravel()[fg].astype(np.int64) * NUM_CLASSES + out.ravel()[fg]
    counts = np.bincount(key)
    out.ravel()[fg[counts[key] < min_pixels]] = BACKGROUND
    return out.reshape(masks.shape)


def _class_stats(masks: np.ndarray) -> dict[str, np.ndarray]:
    """Area and box of every class in every frame: each (B, T, C); boxes are [x0, x1), [y0, y1)."""
    b, t, h, w = masks.shape
    frames = masks.reshape(b * t, h, w)
    at = np.flatnonzero(frames)  # foreground only: objects cover a small part of a frame
    f, rest = np.divmod(at, h * w)
    y, x = np.divmod(rest, w)
    key = f * NUM_CLASSES + frames.reshape(-1)[at].astype(np.int64)
    cols = np.bincount(key * w + x, minlength=b * t * NUM_CLASSES * w).reshape(-1, w) > 0
    rows = np.bincount(key * h + y, minlength=b * t * NUM_CLASSES * h).reshape(-1, h) > 0
    area = np.bincount(key, minlength=b * t * NUM_CLASSES).astype(np.float32)
    stats = {"area": area,
             "x0": cols.argmax(1).astype(np.float32), "x1": (w - cols[:, ::-1].argmax(1)).astype(np.float32),
             "y0": rows.argmax(1).astype(np.float32), "y1": (h - rows[:, ::-1].argmax(1)).astype(np.float32)}
    return {k: v.reshape(b, t, NUM_CLASSES) for k, v in stats.items()}


def _merge_flicker(stats: dict[str, np.ndarray], margin: float = 2.0) -> np.ndarray:
    """Per video, a class -> class map that merges each weak class into a stronger class it
    belongs to (segmenter flicker). stats: numpy (T, C) arrays of one video.

    A weak class belongs to a strong one when, in every frame where both are seen, its center
    lies in the strong class's box, and in every frame where only the weak one is seen, its
    center is where the strong one's track (interpolated) puts the object. A weak class seen
    only together with the strong one must also have under half of its pixels (a fringe).
    """
    area = stats["area"]
    lut = np.arange(NUM_CLASSES)
    present = area > 0
    cx = (stats["x0"] + stats["x1"]) / 2
    cy = (stats["y0"] + stats["y1"]) / 2
    extent = np.maximum(stats["x1"] - stats["x0"], stats["y1"] - stats["y0"])
    steps = np.arange(len(area))
    order = [c for c in np.argsort(-area.sum(0), kind="stable") if c != BACKGROUND and present[:, c].any()]
    for i, weak in enumerate(order):
        for strong in order[:i]:
            if lut[strong] != strong:
                continue
            both = present[:, weak] & present[:, strong]
            alone = present[:, weak] & ~present[:, strong]
            inside = ((cx[both, weak] >= stats["x0"][both, strong] - margin)
                      & (cx[both, weak] <= stats["x1"][both, strong] + margin)
                      & (cy[both, weak] >= stats["y0"][both, strong] - margin)
                      & (cy[both, weak] <= stats["y1"][both, strong] + margin))
            if not inside.all():
                continue
            if alone.any():
                seen = steps[present[:, strong]]
                tolerance = max(6.0, 0.6 * float(np.median(extent[seen, strong])))
                dx = cx[alone, weak] - np.interp(steps[alone], seen, cx[seen, strong])
                dy = cy[alone, weak] - np.interp(steps[alone], seen, cy[seen, strong])
                if (np.hypot(dx, dy) > tolerance).any():
                    continue
            elif area[:, weak].sum() >= 0.5 * area[:, strong].sum():
                continue
            lut[weak] = strong
            break
    return lut


def _full_size(w: np.ndarray, h: np.ndarray, uncut: np.ndarray) -> tuple[float, float]:
    """The object's whole box size from the frames where it is not cut (the largest seen)."""
    if uncut.any():
        return float(w[uncut].max()), float(h[uncut].max())
    return float(w.max()), float(h.max())


# ---- tracks ----------------------------------------------------------------------------


def extract_tracks(masks: torch.Tensor, *, templates: bool = True, min_pixels: int = MIN_PIXELS,
                   max_objects: int = MAX_OBJECTS) -> Tracks:
    """The objects of each video and their tracks.

    Args:
        masks: class ids (B, T, H, W) (any integer dtype, any device; work is on the CPU).
        templates: also cut each object's shape from the last frame it was seen whole.
        min_pixels: blobs smaller than this are dropped as noise first (0: keep all).
        max_objects: slots per video; beyond it the objects with the fewest pixels are left out.

    Returns:
        `Tracks` on the CPU.
    """
    if masks.ndim != 4:
        raise ValueError(f"masks must be (B, T, H, W), got {tuple(masks.shape)}")
    masks = masks.detach().cpu()
    ids = masks.numpy()  # numpy's min and max of integers are several times faster than torch's
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= NUM_CLASSES):
        raise ValueError(f"class ids must be in 0..{NUM_CLASSES - 1}")
    b, t, h, w = masks.shape
    masks = masks.numpy().astype(np.uint8)  # a quarter or an eighth of the memory to scan
    if min_pixels > 0:
        masks = drop_small_blobs(masks, min_pixels)
    stats = _class_stats(masks)
    luts = np.stack([_merge_flicker({k: v[i] for k, v in stats.items()}) for i in range(b)])
    if (luts != np.arange(NUM_CLASSES)).any():
        masks = np.take_along_axis(luts, masks.reshape(b, -1), 1).reshape(b, t, h, w)
        stats = _class_stats(masks)

    k = max_objects
    classes = np.zeros((b, k), np.int64)
    present = np.zeros((b, k, t), bool)
    center = np.zeros((b, k, t, 2), np.float32)
    size = np.zeros((b, k, t, 2), np.float32)
    area = np.zeros((b, k, t), np.float32)
    cut = np.zeros((b, k, t), bool)
    whole = np.zeros((b, k, t), bool)
    shapes: list[list[Template | None]] | None = [] if templates else None
    for i in range(b):
        totals = stats["area"][i].sum(0)
        totals[BACKGROUND] = 0
        found = [c for c in np.argsort(-totals, kind="stable") if totals[c] > 0][:k]
        row: list[Template | None] = [None] * k
        for slot, c in enumerate(sorted(found)):
            a = stats["area"][i, :, c]
            x0, x1 = stats["x0"][i, :, c], stats["x1"][i, :, c]
            y0, y1 = stats["y0"][i, :, c], stats["y1"][i, :, c]
            seen = a > 0
            left, right, top, bottom = x0 <= 0, x1 >= w, y0 <= 0, y1 >= h
            is_cut = seen & (left | right | top | bottom)
            bw, bh = np.where(seen, x1 - x0, 0), np.where(seen, y1 - y0, 0)
            full_w, full_h = _full_size(bw, bh, seen & ~is_cut)
            cx = np.where(left & ~right, x1 - full_w / 2, np.where(right & ~left, x0 + full_w / 2,
                                                                   (x0 + x1) / 2))
            cy = np.where(top & ~bottom, y1 - full_h / 2, np.where(bottom & ~top, y0 + full_h / 2,
                                                                   (y0 + y1) / 2))
            uncut_area = a[seen & ~is_cut].max() if (seen & ~is_cut).any() else a.max()
            classes[i, slot] = c
            present[i, slot] = seen
            center[i, slot, :, 0] = np.where(seen, cx, 0)
            center[i, slot, :, 1] = np.where(seen, cy, 0)
            size[i, slot, :, 0] = np.where(seen, np.where(is_cut, np.maximum(bw, full_w), bw), 0)
            size[i, slot, :, 1] = np.where(seen, np.where(is_cut, np.maximum(bh, full_h), bh), 0)
            area[i, slot] = a
            cut[i, slot] = is_cut
            whole[i, slot] = seen & ~is_cut & (a >= WHOLE_AREA * uncut_area)
            if templates:
                row[slot] = _template(masks[i], c, whole[i, slot], seen, a, (x0, x1, y0, y1))
        if shapes is not None:
            shapes.append(row)
    as_t = torch.from_numpy
    return Tracks(classes=as_t(classes), present=as_t(present), center=as_t(center),
                  size=as_t(size), area=as_t(area), cut=as_t(cut), whole=as_t(whole),
                  templates=shapes, image_size=(h, w),
                  masks=masks.astype(np.uint8, copy=False) if templates else None)


def _template(masks: np.ndarray, c: int, whole: np.ndarray, seen: np.ndarray, area: np.ndarray,
              box: tuple[np.ndarray, ...]) -> Template:
    """The object's shape from the latest frame it was seen whole (else its largest view)."""
    frame = int(np.nonzero(whole)[0][-1]) if whole.any() else int(np.argmax(np.where(seen, area, -1)))
    x0, x1, y0, y1 = (int(v[frame]) for v in box)
    crop = masks[frame, y0:y1, x0:x1] == c
    return Template(mask=crop, center=((x0 + x1) / 2, (y0 + y1) / 2), frame=frame)


def positions_in(tracks: Tracks, other: Tracks, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the objects of `tracks` are in frame `frame` of `other` (tracks of the same
    videos, e.g. of their true masks), matched by class id.

    Returns:
        (B, K, 2) their box centers there, pixels (0 where unseen), and bool (B, K), whether
        they are seen there; in the slots of `tracks`.
    """
    b, k = tracks.classes.shape
    if other.classes.shape[0] != b:
        raise ValueError(f"tracks of {b} videos matched with tracks of {other.classes.shape[0]}")
    same = (tracks.classes[:, :, None] == other.classes[:, None, :]) & tracks.valid[:, :, None]  # (B, K, K')
    seen = same & other.present[:, None, :, frame]
    centers = (seen.unsqueeze(-1) * other.center[:, None, :, frame]).sum(2)
    return centers.float(), seen.any(2)
