"""Track positions made whole, and the constant-velocity forecast (the `objects-cv` row).

Positions here live in a "motion space" (the ground plane, see `ground.py`);
the dynamics network converts pixels in and out.
"""

from __future__ import annotations

import itertools

import torch


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


def velocity_span(present: torch.Tensor, frames: int) -> torch.Tensor:
    """Steps (...) that `velocity` averages over for each object: `frames`, or the steps since
    the object was first seen if fewer (bool present (..., T))."""
    t = present.shape[-1]
    first = torch.where(present.any(-1), present.to(torch.uint8).argmax(-1), t - 1)
    return (t - 1 - first).clamp(max=min(frames, t - 1))


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
