"""Rigid objects sliding on the floor: Coulomb friction and collisions, with fitted numbers.

    physics = Physics(substeps=4)
    physics.fit(classes, filled, error, diameter=0.1, steps=11)  # training tracks, before training
    p, v, spin = physics.start(q, classes, present)  # q: past positions (B, K, T, 2), metric space
    p, v, spin = physics.advance(p, v, spin, classes, valid)  # one frame later

The objects of these scenes slide on a floor. Sliding friction slows an object by the same
amount every frame whatever its speed (Coulomb friction: the deceleration depends on the
materials in contact, not on speed), until it stops. A ball is different: the same friction
also spins it up, and once its spin matches its speed it rolls, and then barely slows. Objects
that meet push each other: at contact the velocities along the line between the centers change
as in a collision of two disks of given masses and restitution, and friction between their
surfaces takes away a share (`grip`) of their sliding past each other, so that a glancing blow
also drags the other object sideways. `Physics` simulates that, a few substeps per frame (each
pair's contact found where their straight paths over the substep first touch, so that a
glancing pass between two checks collides too, and they part from there), in
"metric" coordinates q = g @ metric, g being the motion space of `dynamics.py` (the floor
as a fitted camera sees it, or the affine floor coordinates of `ground.py`): the 2x2 `metric`
makes them isotropic, so that objects are round and friction slows them equally in every
direction.

Where an object starts from: friction makes its past path a known curve (a straight line slowed
by a known amount per frame), so its position and velocity at the last input frame are fitted to
as many past frames as that curve explains (`window`: the longest span whose sightings lie
within that many pixels of the fitted curve; a collision or a stop ends the span). Box centers
carry pixel noise, and a velocity measured over 8 or 10 frames is far steadier than one over 2
or 3; where no span of 3 or more frames fits, the velocity is the mean over the last `frames`.

A ball's spin is kept as the velocity it would roll at (`spin`, along the floor). While the
ball slides faster than that, friction slows it by its material's deceleration a and speeds the
spin up by `spin_up` x a (5/2 for a solid ball, whose moment of inertia is 2/5 m r^2: a ball
launched without spin rolls once it has lost 2/7 of its speed); where the two meet it rolls,
slowed only by its rolling friction (`log_rolling`). A collision changes the velocity, not the
spin, so the ball slides again. Cubes and cylinders stand on a face and slide until they stop. At the last input frame
a ball's spin is not seen: it is taken as what friction gave it since it was first seen (at
most its speed: a ball slowed that long already rolls).

Every number is fitted to the training tracks (`fit`), none is taken from a simulator:
the metric, the friction of each material, the spin-up and the rolling friction from objects in
free motion (gradient descent on the forecast error, collisions off), the contact radius by a
grid search (both for each span of frames the mean velocity may be measured over; the span
whose forecast with collisions is best wins), then the mass of each shape and material, the
restitution and the grip by gradient descent through the collisions; `fit_window` then picks
the `window` tolerance.
Training then learns the corrections of `dynamics.py` with them fixed (or refines them too:
`train_physics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..classes import BACKGROUND, MATERIALS, SHAPES, shape_and_material
from .motion import steps_seen, velocity, velocity_span

_EPS = 1e-12
# Tolerance (pixels) of the fitted past path while the other numbers are fitted (`Physics.window`:
# a little over twice the noise of a box center in a true mask), and the tolerances `fit_window`
# then tries (benchmarks/results/objects3d.md).
WINDOW = 0.7
WINDOW_GRID = (0.0, 0.5, 0.7, 1.0, 1.5, 2.0)
# Fewest past frames a fitted path spans.
MIN_WINDOW = 3


def _length(v: torch.Tensor) -> torch.Tensor:
    """|v| over the last dimension, keepdim, with a gradient defined at 0."""
    return (v.square().sum(-1, keepdim=True) + _EPS).sqrt()


class Physics(nn.Module):
    """Friction and collisions of objects on the floor (see the module doc).

    Args:
        substeps: collision checks per frame (`DynamicsNetConfig.substeps` chooses them).
        frames: past frames the starting velocity is measured over (set by `fit`).
    """

    def __init__(self, *, substeps: int, frames: int = 3):
        super().__init__()
        self.substeps = substeps
        self.metric = nn.Parameter(torch.eye(2))
        # per material, metric units per frame^2 (about the scale of the bench ground plane)
        self.log_friction = nn.Parameter(torch.full((len(MATERIALS),), math.log(3e-4)))
        self.log_mass = nn.Parameter(torch.zeros(len(SHAPES) + len(MATERIALS)))  # shape + material
        self.restitution = nn.Parameter(torch.tensor(0.2))
        self.grip = nn.Parameter(torch.tensor(0.1))  # share of the sliding at contact friction removes
        self.spin_up = nn.Parameter(torch.tensor(2.5))  # a ball's spin gained per unit of speed lost sliding
        self.log_rolling = nn.Parameter(torch.tensor(math.log(1e-5)))  # a rolling ball's deceleration
        self.register_buffer("radius", torch.tensor(0.04))  # half the distance at contact
        self.register_buffer("frames", torch.tensor(frames))
        self.register_buffer("window", torch.tensor(WINDOW))  # pixels; 0: the mean velocity only

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

    def spin_gain(self, classes: torch.Tensor) -> torch.Tensor:
        """Spin gained per unit of speed lost to friction (B, K, 1): `spin_up` for balls, 0 for
        the shapes that slide on a face."""
        ball = shape_and_material(classes)[0] == SHAPES.index("sphere")
        return (self.spin_up.clamp_min(0) * ball).unsqueeze(-1)

    def start(self, q: torch.Tensor, classes: torch.Tensor, present: torch.Tensor | None = None,
              *, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Position, velocity and spin (see `spin`) at the last input frame from past positions
        (B, K, T, 2).

        Given `scale` (B, K), the pixels per unit of motion space at each object, position and
        velocity are fitted to the longest span of past frames whose sightings the path of a
        sliding object explains within `window` pixels (see the module doc). Otherwise, and for an object no span of `MIN_WINDOW` frames fits, the position is
        the last one and the velocity the mean over the last `frames` frames (fewer for an object
        seen for fewer, given `present` (B, K, T): see `motion.velocity`), slowed by the friction
        of the (span - 1) / 2 frames between the middle of that span and its end.
        """
        if present is None:
            present = torch.ones(q.shape[:-1], dtype=torch.bool, device=q.device)
        frames = int(self.frames)
        mean = velocity(q, frames, present)
        steps = velocity_span(present, frames)
        speed = _length(mean)
        lag = ((steps - 1).clamp_min(0).to(q.dtype) / 2).unsqueeze(-1)
        slower = (speed - self.friction(classes) * lag).clamp_min(0)
        p, v = q[..., -1, :], mean * slower / speed
        if scale is not None and float(self.window) > 0:
            p, v = self.fitted_start(q, classes, present, scale, p, v)
        return p, v, self.spin(v, classes, present)

    def spin(self, v: torch.Tensor, classes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The velocity (B, K, 2) each object's spin would roll it at, at the last input frame,
        where its velocity is `v` (B, K, 2): for a ball, what friction gave it since it was first
        seen (`present` (B, K, T); `spin_gain` x deceleration x frames), at most its speed (a
        ball slowed that long rolls), along its motion; 0 for other shapes."""
        elapsed = steps_seen(present).to(v.dtype).unsqueeze(-1)
        speed = _length(v)
        gain = self.spin_gain(classes)
        return v * torch.minimum(gain * self.friction(classes) * elapsed, speed) / speed

    def fitted_start(self, q: torch.Tensor, classes: torch.Tensor, present: torch.Tensor, scale: torch.Tensor,
                     p: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`start` with a fitted past path: position and velocity (B, K, 2) from the longest span
        of past frames (q (B, K, T, 2), metric space) whose sightings lie within `window` pixels
        of a straight path slowed by the object's friction (`scale` (B, K): pixels per motion-space
        unit); `p`, `v` where no span of `MIN_WINDOW` frames does.

        Along the span the path is p + v t - a t^2 / 2 u (t <= 0 frames from the last input, a
        the friction, u the direction of motion), linear in p and v once u is taken from the
        span's end points: a weighted least-squares line through the positions with the
        friction's part added back. An object that moved less over the span than friction
        allows one that slid all of it has stopped or rests: its path is a plain line.
        """
        t_all = q.shape[-2]
        a = self.friction(classes)  # (B, K, 1)
        seen_for = steps_seen(present)
        fits = torch.ones(present.shape[:-1], dtype=torch.bool, device=q.device)
        for n in range(MIN_WINDOW, t_all + 1):
            t = torch.arange(1 - n, 1, dtype=q.dtype, device=q.device)  # (n,)
            y, w = q[..., -n:, :], present[..., -n:].to(q.dtype)
            moved = y[..., -1, :] - y[..., 0, :]
            slid = _length(moved) >= a * (n - 1) ** 2 / 2  # (B, K, 1)
            u = torch.where(slid, moved / _length(moved), torch.zeros_like(moved))
            bend = (a * u).unsqueeze(-2) * (t * t / 2).view(-1, 1)  # (B, K, n, 2)
            sw = w.sum(-1, keepdim=True).clamp_min(1)
            t_mean = (w * t).sum(-1, keepdim=True) / sw
            line = y + bend
            y_mean = (w.unsqueeze(-1) * line).sum(-2) / sw
            dt = (t - t_mean) * w
            v_n = (dt.unsqueeze(-1) * (line - y_mean.unsqueeze(-2))).sum(-2) / (dt * (t - t_mean)).sum(
                -1, keepdim=True).clamp_min(_EPS)
            p_n = y_mean - v_n * t_mean
            path = p_n.unsqueeze(-2) + t.view(-1, 1) * v_n.unsqueeze(-2) - bend
            off = (_length(self.from_metric(path - y)).squeeze(-1) * w).amax(-1) * scale  # pixels
            fits = fits & (seen_for >= n - 1) & (off <= self.window)
            p = torch.where(fits.unsqueeze(-1), p_n, p)
            v = torch.where(fits.unsqueeze(-1), v_n, v)
        return p, v

    def advance(self, p: torch.Tensor, v: torch.Tensor, spin: torch.Tensor, classes: torch.Tensor,
                valid: torch.Tensor, *, collide: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Positions, velocities and spins (B, K, 2; see `spin`) one frame later; `valid` (B, K)
        marks real objects."""
        n_sub = self.substeps
        slow = self.friction(classes) / n_sub
        gain = self.spin_gain(classes)
        roll = self.log_rolling.exp() / n_sub
        shape, material = shape_and_material(classes)
        inv_mass = (-(self.log_mass[shape] + self.log_mass[len(SHAPES) + material])).exp()
        restitution = self.restitution.clamp(0, 1)
        grip = self.grip.clamp(0, 1)
        k = classes.shape[1]
        pairs = valid.unsqueeze(1) & valid.unsqueeze(2) & ~torch.eye(k, dtype=torch.bool, device=p.device)
        reduced = 1 / (inv_mass.unsqueeze(1) + inv_mass.unsqueeze(2))  # (B, K, K)
        for _ in range(n_sub):
            # friction against the sliding, v - spin: it slows v and spins a ball up until they meet
            slip = v - spin
            sliding = _length(slip)
            step = torch.minimum(slow, sliding / (1 + gain))
            v, spin = v - step * slip / sliding, spin + gain * step * slip / sliding
            rolling = (gain > 0) & (sliding <= slow * (1 + gain))
            speed = _length(v)
            v = torch.where(rolling, v * (speed - roll).clamp_min(0) / speed, v)
            spin = torch.where(rolling, v, spin)
            p = p + v / n_sub
            if not collide:
                continue
            b, i, j = self.contacts(p, v, pairs, 1 / n_sub).nonzero(as_tuple=True)
            if not len(b):
                continue
            # the pairs that touched only (few), each twice, once for each object: an impulse along
            # the normal where they touched, and friction's against the surfaces' relative sliding;
            # the object then moves at its new velocity for the rest of the substep
            d, w = p[b, j] - p[b, i], v[b, j] - v[b, i]
            back = self.touch(d.detach(), w.detach(), 1 / n_sub)
            at = d - w * back
            n = at / _length(at)
            c, m = (w * n).sum(-1, keepdim=True), reduced[b, i, j].unsqueeze(-1)
            push = ((1 + restitution) * c * m * n + grip * m * (w - c * n)) * inv_mass[b, i].unsqueeze(-1)
            push = push * (c < 0)  # only pairs closing at the touch: parting ones were pushed before
            v = v.index_put((b, i), push, accumulate=True)
            p = p.index_put((b, i), push * back, accumulate=True)
        return p, v, spin

    @torch.no_grad()
    def contacts(self, p: torch.Tensor, v: torch.Tensor, pairs: torch.Tensor, dt: float) -> torch.Tensor:
        """The `pairs` (bool (B, K, K)) that came within contact distance during the substep of
        `dt` frames that ended at positions p (B, K, 2) with velocities v (B, K, 2).

        Contact is looked for along the substep's straight paths, not only at its end: a glancing
        pair that comes within reach and parts again between two checks collides too.
        """
        d = p.unsqueeze(1) - p.unsqueeze(2)  # [b, i, j] = p_j - p_i
        w = v.unsqueeze(1) - v.unsqueeze(2)
        ww = (w * w).sum(-1).clamp_min(_EPS)
        back = ((d * w).sum(-1) / ww).clamp(0, dt).unsqueeze(-1)  # back from the end to the closest
        return pairs & ((d - w * back).square().sum(-1) < (2 * self.radius) ** 2)

    @torch.no_grad()
    def touch(self, d: torch.Tensor, w: torch.Tensor, dt: float) -> torch.Tensor:
        """How long (N, 1) before the end of a substep of `dt` frames two objects in contact first
        touched, from the gap d (N, 2) and relative velocity w (N, 2) between them at its end;
        `dt` where they already touched when it began. When it happened is a detected event,
        held fixed for the gradient like the contact itself."""
        ww = (w * w).sum(-1, keepdim=True).clamp_min(_EPS)
        dw = (d * w).sum(-1, keepdim=True)
        gap = (d * d).sum(-1, keepdim=True) - (2 * self.radius) ** 2
        return ((dw + (dw * dw - ww * gap).clamp_min(0).sqrt()) / ww).clamp(0, dt)

    def simulate(self, q: torch.Tensor, classes: torch.Tensor, steps: int, *, present: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None, collide: bool = True) -> torch.Tensor:
        """Positions (B, K, steps, 2) after the past positions q (B, K, T, 2), metric space
        (`present`, `scale`: see `start`)."""
        valid = classes != BACKGROUND
        p, v, spin = self.start(q, classes, present, scale=scale)
        out = []
        for _ in range(steps):
            p, v, spin = self.advance(p, v, spin, classes, valid, collide=collide)
            out.append(p)
        return torch.stack(out, -2)

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, classes: torch.Tensor, filled: torch.Tensor,
            error: Callable[[torch.Tensor], torch.Tensor], *, diameter: float,
            present: torch.Tensor | None = None, scale: torch.Tensor | None = None,
            steps: int, frames_grid: tuple[int, ...] = (2, 3, 4),
            iterations: int = 300) -> dict[str, float]:
        """Fit every number to training tracks (see the module doc).

        Args:
            classes: long (N, K), 0 for empty slots.
            filled: past positions (N, K, T, 2) in ground coordinates, gaps filled.
            error: forecast (N, K, steps, 2) in ground coordinates -> mean error.
            diameter: an object's width in motion-space units, about (the contact radius is searched
                around half of it, in metric units).
            present: bool (N, K, T), where the objects were seen (see `start`).
            scale: (N, K) pixels per unit of motion space at each object (see `start`); None: the
                starting velocity is the mean over the last frames only (`window` 0).
            steps: frames forecast, as many as `error` compares.

        Returns:
            the error after each stage ("free", "radius", "collisions") for the chosen span.
        """
        valid = classes != BACKGROUND
        classes = torch.where(valid, classes, BACKGROUND)

        def forecast(collide: bool) -> torch.Tensor:
            return self.from_metric(self.simulate(self.to_metric(filled), classes, steps, present=present,
                                                  scale=scale, collide=collide))

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
            free = descend([self.metric, self.log_friction, self.spin_up, self.log_rolling], False, 3e-3,
                           iterations)
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
        scores["collisions"] = descend([self.log_mass, self.restitution, self.grip], True, 2e-2, iterations // 3)
        if scale is None:
            self.window.fill_(0)
        return scores

    @torch.no_grad()
    def fit_window(self, classes: torch.Tensor, filled: torch.Tensor,
                   error: Callable[[torch.Tensor], torch.Tensor], *, present: torch.Tensor, scale: torch.Tensor,
                   steps: int) -> float:
        """Set `window` to the tolerance of `WINDOW_GRID` whose forecast of tracks has the least
        error (arguments as `fit`'s); returns that error. Tracks of segmented masks are
        noisier than those of true masks and want a looser tolerance: fit it to tracks like the
        ones that will be forecast."""
        classes = torch.where(classes != BACKGROUND, classes, BACKGROUND)
        trials = []
        for tolerance in WINDOW_GRID:
            self.window.fill_(tolerance)
            forecast = self.simulate(self.to_metric(filled), classes, steps, present=present, scale=scale)
            trials.append((float(error(self.from_metric(forecast))), tolerance))
        best, tolerance = min(trials)
        self.window.fill_(tolerance)
        return best
