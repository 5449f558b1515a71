"""Track positions made whole, and the constant-velocity forecast (the `objects-cv` row).

Positions here live in a "motion space" (the ground plane, see `ground.py`);
the dynamics network converts pixels in and out. `consistent_sightings` drops the sightings of
a pseudo-label track that cannot be one whole rigid object before they are used.
"""

from __future__ import annotations

import itertools

import torch

from .ground import GroundPlane

# Bounds of a sighting that can be one rigid object (`consistent_sightings`): its box against the
# box a whole object of its shape has at that place, and its pixels against its box. Chosen on
# true-mask tracks, which they almost never reject, while pseudo-label boxes that span two blobs
# of a class or keep a small piece of the object fall outside (benchmarks/results/dynamics_data.md).
# A box cut by the border gets a looser upper bound: its size is the whole object's, taken from
# other frames, and its center lies where the whole box would be, off the image, where the plane
# extrapolates the expected size.
MAX_SIZE = 1.3
MAX_CUT_SIZE = 1.7
MIN_SIZE = 0.5
MIN_FILL = 0.35
# An object needs this many consistent sightings in a video (a pseudo-label's stray class is seen
# in one or two frames; a true object almost never, except one entering the view, whose motion
# one or two sightings cut by the border do not tell): fewer, and it is neither trained on nor
# drawn (benchmarks/results/pipelines.md).
MIN_SIGHTINGS = 3


def consistent_sightings(classes: torch.Tensor, present: torch.Tensor, center: torch.Tensor, size: torch.Tensor,
                         plane: GroundPlane, *, area: torch.Tensor | None = None, max_size: float = MAX_SIZE,
                         max_cut_size: float = MAX_CUT_SIZE, min_size: float = MIN_SIZE,
                         min_fill: float = MIN_FILL, min_sightings: int = MIN_SIGHTINGS) -> torch.Tensor:
    """The sightings (B, K, T) of tracks that are consistent with one whole rigid object.

    A segmenter's class can hold a second blob elsewhere (the box spans both, its center lies
    between them) or only a small piece of the object (the rest given another class): the box
    is then far larger or smaller than a whole object of its shape at that place on the ground
    plane (`GroundPlane.expected_size`), or its pixels fill little of it. Such sightings are
    dropped, and objects left with fewer than `min_sightings`.

    Args:
        classes: long (B, K); present: bool (B, K, T); center, size: (B, K, T, 2) pixels, as
            `extract_tracks` measures them (a box cut by the border has the whole object's size,
            its center where the whole box would be).
        plane: a fitted ground plane.
        area: (B, K, T) pixels, as `extract_tracks` measures them; given, the fill of uncut
            boxes is checked too.
        max_size, max_cut_size, min_size: bounds of the box's side (geometric mean of width and
            height) over the expected one; `max_cut_size` for boxes cut by the border.
        min_fill: least share of an uncut box the object's pixels cover.
        min_sightings: fewest consistent sightings an object keeps.

    Returns:
        bool (B, K, T): `present` without the inconsistent sightings.
    """
    center, size = center.float(), size.float()
    cut = ((center - size / 2 <= 0) | (center + size / 2 >= plane.frame)).any(-1)
    expected = plane.expected_size(classes.unsqueeze(-1).expand_as(present), center)
    side = (size.prod(-1) / expected.prod(-1).clamp_min(1e-6)).sqrt()
    keep = present & (side <= torch.where(cut, max_cut_size, max_size)) & (side >= min_size)
    if area is not None:
        keep &= cut | (area.float() / size.prod(-1).clamp_min(1) >= min_fill)
    return keep & (keep.sum(-1, keepdim=True) >= min_sightings)


def fill_gaps(present: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Positions at every frame from the frames an object was seen.

    Gaps are interpolated linearly, frames before the first sighting hold the first position,
    frames after the last are extrapolated with the velocity between the last two sightings.

    Args:
        present: bool (..., T).
        position: (..., T, 2), read only where present.

    Returns:
        (..., T, 2); objects never present get zeros.
    """
    t = present.shape[-1]
    steps = torch.arange(t, device=present.device).expand_as(present)
    prev = torch.where(present, steps, -1).cummax(-1).values  # last sighting at or before t
    nxt = torch.where(present, steps, t).flip(-1).cummin(-1).values.flip(-1)  # first at/after t
    last = prev[..., -1:].expand_as(prev)
    first = nxt[..., :1].expand_as(nxt)
    # the sighting before the last one (for the velocity at the end)
    before_last = torch.where(present & (steps < last), steps, -1).max(-1, keepdim=True).values
    before_last = before_last.expand_as(prev)

    def at(index: torch.Tensor) -> torch.Tensor:
        return position.gather(-2, index.clamp(0, t - 1).unsqueeze(-1).expand(*index.shape, 2))

    p_prev, p_next = at(prev), at(nxt)
    gap = (nxt - prev).clamp_min(1).unsqueeze(-1).float()
    inside = (prev >= 0) & (nxt < t)
    filled = torch.where(inside.unsqueeze(-1), p_prev + (p_next - p_prev) * (steps - prev).unsqueeze(-1) / gap,
                         position)
    filled = torch.where((prev < 0).unsqueeze(-1), at(first), filled)
    velocity = torch.where((before_last >= 0).unsqueeze(-1),
                           (at(last) - at(before_last)) / (last - before_last).clamp_min(1).unsqueeze(-1),
                           torch.zeros_like(position))
    after = (nxt >= t) & (prev >= 0)
    filled = torch.where(after.unsqueeze(-1), at(last) + velocity * (steps - last).unsqueeze(-1), filled)
    never = ~present.any(-1, keepdim=True)
    return torch.where(never.unsqueeze(-1), torch.zeros_like(filled), filled)


def steps_seen(present: torch.Tensor) -> torch.Tensor:
    """Steps (...) from each object's first sighting to the last frame (bool present (..., T));
    0 for an object never seen."""
    t = present.shape[-1]
    first = torch.where(present.any(-1), present.to(torch.uint8).argmax(-1), t - 1)
    return t - 1 - first


def velocity_span(present: torch.Tensor, frames: int) -> torch.Tensor:
    """Steps (...) that `velocity` averages over for each object: `frames`, or the steps since
    the object was first seen if fewer (bool present (..., T))."""
    return steps_seen(present).clamp(max=min(frames, present.shape[-1] - 1))


def velocity(filled: torch.Tensor, frames: int, present: torch.Tensor | None = None) -> torch.Tensor:
    """Mean velocity over the last `frames` steps of filled positions (..., T, 2) -> (..., 2).

    With `present` (bool (..., T)), the span of each object is cut to the steps since it was
    first seen (`velocity_span`): before it, `fill_gaps` holds the first position, which would
    slow an object that just entered the view; an object first seen in the last frame gets zero.
    """
    t = filled.shape[-2]
    if present is None:
        frames = min(frames, t - 1)
        return (filled[..., -1, :] - filled[..., -1 - frames, :]) / frames
    steps = velocity_span(present, frames)
    start = filled.gather(-2, (t - 1 - steps)[..., None, None].expand(*steps.shape, 1, 2)).squeeze(-2)
    return (filled[..., -1, :] - start) / steps.clamp_min(1).unsqueeze(-1)


def damped_offsets(damping: torch.Tensor | float, steps: int) -> torch.Tensor:
    """How far a unit velocity carries after 1..steps frames when damped each frame: (steps,)."""
    damping = torch.as_tensor(damping, dtype=torch.float32)  # a learned one may sit on a GPU
    powers = damping ** torch.arange(1, steps + 1, dtype=torch.float32, device=damping.device)
    return powers.cumsum(0)


def constant_velocity(filled: torch.Tensor, *, frames: int, damping: float | torch.Tensor,
                      steps: int, present: torch.Tensor | None = None) -> torch.Tensor:
    """Forecast `steps` positions (..., steps, 2) from filled past positions (..., T, 2)
    (`present`: see `velocity`)."""
    v = velocity(filled, frames, present)
    offsets = damped_offsets(damping, steps).to(filled.device)
    return filled[..., -1:, :] + v.unsqueeze(-2) * offsets.view(-1, 1)


def fit_constant_velocity(filled: torch.Tensor, error: callable, *, steps: int,
                          frames_grid: tuple[int, ...] = (1, 2, 3, 4),
                          damping_grid: tuple[float, ...] | None = None,
                          present: torch.Tensor | None = None) -> tuple[int, float, float]:
    """The (frames, damping) of the constant-velocity forecast with the least error.

    Args:
        filled: past positions (N, K, T, 2) in motion space.
        error: forecast (N, K, steps, 2) in motion space -> mean error (a float tensor).
        steps: frames forecast.
        present: bool (N, K, T), where objects were seen (see `velocity`).

    Returns:
        (frames, damping, error) of the best pair.
    """
    if damping_grid is None:
        damping_grid = tuple(round(0.85 + 0.005 * i, 3) for i in range(31))
    best = (1, 1.0, float("inf"))
    for frames, damping in itertools.product(frames_grid, damping_grid):
        score = float(error(constant_velocity(filled, frames=frames, damping=damping, steps=steps,
                                                 present=present)))
        if score < best[2]:
            best = (frames, damping, score)
    return best
