"""Rigid objects sliding on the floor: Coulomb friction and collisions, with fitted numbers.

    physics = Physics()
    physics.fit(classes, filled, error, diameter=0.1, steps=11)  # training tracks, before training
    p, v = physics.start(q, classes, present)    # q: past positions (B, K, T, 2), metric space
    p, v = physics.advance(p, v, classes, valid) # one frame later

The objects of these scenes slide on a floor. Sliding friction slows an object by the same
amount every frame whatever its speed (Coulomb friction: the deceleration depends on the
materials in contact, not on speed), until it stops. Objects that meet push each other: at
contact the velocities along the line between the centers change as in a collision of two
disks of given masses and restitution. `Physics` simulates that, a few substeps per frame,
in "metric" coordinates q = g @ metric, g being the ground coordinates of `ground.py`
(affine coordinates of the floor): the 2x2 `metric` makes them isotropic, so that objects
are round and friction slows them equally in every direction.

Every number is fitted to the training tracks (`fit`), none is taken from a simulator:
the metric and the friction of each material from objects in free motion (gradient descent
on the forecast error, collisions off), the contact radius by a grid search (both for each
span of frames the starting velocity may be measured over; the span whose forecast with
collisions is best wins), then the mass of each shape and material and the restitution by
gradient descent through the collisions.
Training then refines them together with the learned corrections of `dynamics.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..classes import BACKGROUND, MATERIALS, SHAPES, shape_and_material
from .motion import velocity, velocity_span

_EPS = 1e-12


def _length(v: torch.Tensor) -> torch.Tensor:
    """|v| over the last dimension, keepdim, with a gradient defined at 0."""
    return (v.square().sum(-1, keepdim=True) + _EPS).sqrt()


class Physics(nn.Module):
    """Friction and collisions of objects on the floor (see the module doc).

    Args:
        substeps: collision checks per frame.
        frames: past frames the starting velocity is measured over (set by `fit`).
    """

    def __init__(self, *, substeps: int = 4, frames: int = 3):
        super().__init__()
        self.substeps = substeps
        self.metric = nn.Parameter(torch.eye(2))
        # per material, metric units per frame^2 (about the scale of the bench ground plane)
        self.log_friction = nn.Parameter(torch.full((len(MATERIALS),), math.log(3e-4)))
        self.log_mass = nn.Parameter(torch.zeros(len(SHAPES) + len(MATERIALS)))  # shape + material
        self.restitution = nn.Parameter(torch.tensor(0.2))
        self.register_buffer("radius", torch.tensor(0.04))  # half the distance at contact
        self.register_buffer("frames", torch.tensor(frames))

    # -- coordinates ---------------------------------------------------------------------------

    def to_metric(self, g: torch.Tensor) -> torch.Tensor:
        """Ground coordinates (..., 2) -> metric coordinates."""
        return g @ self.metric

    def from_metric(self, q: torch.Tensor) -> torch.Tensor:
        """Metric coordinates (..., 2) -> ground coordinates."""
        return q @ torch.linalg.inv(self.metric)

    # -- the simulation ------------------------------------------------------------------------

    def friction(self, classes: torch.Tensor) -> torch.Tensor:
        """Deceleration (B, K, 1) per frame^2 of each object, from its material."""
        return self.log_friction.exp()[shape_and_material(classes)[1]].unsqueeze(-1)

    def start(self, q: torch.Tensor, classes: torch.Tensor,
              present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Position and velocity at the last input frame from past positions (B, K, T, 2).

        The velocity is the mean over the last `frames` frames (fewer for an object seen for
        fewer, given `present` (B, K, T): see `motion.velocity`), slowed by the friction of the
        (span - 1) / 2 frames between the middle of that span and its end.
        """
        if present is None:
            present = torch.ones(q.shape[:-1], dtype=torch.bool, device=q.device)
        frames = int(self.frames)
        mean = velocity(q, frames, present)
        steps = velocity_span(present, frames)
        speed = _length(mean)
        lag = ((steps - 1).clamp_min(0).to(q.dtype) / 2).unsqueeze(-1)
        slower = (speed - self.friction(classes) * lag).clamp_min(0)
        return q[..., -1, :], mean * slower / speed

    def advance(self, p: torch.Tensor, v: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor,
                *, collide: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions and velocities (B, K, 2) one frame later; `valid` (B, K) marks real objects."""
        n_sub = self.substeps
        slow = self.friction(classes) / n_sub
        shape, material = shape_and_material(classes)
        inv_mass = (-(self.log_mass[shape] + self.log_mass[len(SHAPES) + material])).exp()
        restitution = self.restitution.clamp(0, 1)
        k = classes.shape[1]
        pairs = valid.unsqueeze(1) & valid.unsqueeze(2) & ~torch.eye(k, dtype=torch.bool, device=p.device)
        reduced = 1 / (inv_mass.unsqueeze(1) + inv_mass.unsqueeze(2))  # (B, K, K)
        for _ in range(n_sub):
            speed = _length(v)
            v = v * (speed - slow).clamp_min(0) / speed
            p = p + v / n_sub
            if not collide:
                continue
            rel = p.unsqueeze(1) - p.unsqueeze(2)  # [b, i, j] = p_j - p_i
            dist = _length(rel)
            normal = rel / dist
            closing = ((v.unsqueeze(1) - v.unsqueeze(2)) * normal).sum(-1)  # < 0: approaching
            hit = pairs & (dist.squeeze(-1) < 2 * self.radius) & (closing < 0)
            impulse = torch.where(hit, -(1 + restitution) * closing * reduced, torch.zeros_like(closing))
            v = v - (impulse.unsqueeze(-1) * normal).sum(2) * inv_mass.unsqueeze(-1)
        return p, v

    def simulate(self, q: torch.Tensor, classes: torch.Tensor, steps: int, *,
                 present: torch.Tensor | None = None, collide: bool = True) -> torch.Tensor:
        """Positions (B, K, steps, 2) after the past positions q (B, K, T, 2), metric space
        (`present`: see `start`)."""
        valid = classes != BACKGROUND
        p, v = self.start(q, classes, present)
        out = []
        for _ in range(steps):
            p, v = self.advance(p, v, classes, valid, collide=collide)
            out.append(p)
        return torch.stack(out, -2)

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, classes: torch.Tensor, filled: torch.Tensor,
            error: Callable[[torch.Tensor], torch.Tensor], *, diameter: float,
            present: torch.Tensor | None = None,
            steps: int, frames_grid: tuple[int, ...] = (2, 3, 4),
            iterations: int = 300) -> dict[str, float]:
        """Fit every number to training tracks (see the module doc).

        Args:
            classes: long (N, K), 0 for empty slots.
            filled: past positions (N, K, T, 2) in ground coordinates, gaps filled.
            error: forecast (N, K, steps, 2) in ground coordinates -> mean error.
            diameter: an object's width in ground units, about (the contact radius is searched
                around half of it, in metric units).
            present: bool (N, K, T), where the objects were seen (see `start`).
            steps: frames forecast, as many as `error` compares.

        Returns:
            the error after each stage ("free", "radius", "collisions") for the chosen span.
        """
        valid = classes != BACKGROUND
        classes = torch.where(valid, classes, BACKGROUND)

        def forecast(collide: bool) -> torch.Tensor:
            return self.from_metric(self.simulate(self.to_metric(filled), classes, steps, present=present,
                                                  collide=collide))

        def descend(params: list[nn.Parameter], collide: bool, lr: float, n: int) -> float:
            opt = torch.optim.Adam(params, lr)
            for _ in range(n):
                loss = error(forecast(collide))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                return float(error(forecast(collide)))

        start = {k: v.detach().clone() for k, v in self.state_dict().items()}
        best: tuple[float, float, dict] | None = None
        for frames in frames_grid:  # free motion, then the contact radius, for each velocity span
            self.load_state_dict(start)
            self.frames.fill_(frames)
            free = descend([self.metric, self.log_friction], False, 3e-3, iterations)
            width = diameter * float(self.metric[0].detach().norm())
            with torch.no_grad():
                trials = []
                for r in (width * f for f in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)):
                    self.radius.fill_(r)
                    trials.append((float(error(forecast(True))), r))
            score, radius = min(trials)
            self.radius.fill_(radius)
            if best is None or score < best[1]:  # judged with collisions: they change which span wins
                best = (free, score, {k: v.detach().clone() for k, v in self.state_dict().items()})
        self.load_state_dict(best[2])
        scores = {"free": best[0], "radius": best[1]}
        scores["collisions"] = descend([self.log_mass, self.restitution], True, 2e-2, iterations // 3)
        return scores
