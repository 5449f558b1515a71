"""The dynamics network: object motion over frames 12..22, constant velocity or learned.

    net = DynamicsNet(DynamicsNetConfig())
    net.plane.fit(...); net.set_constant_velocity(frames=2, damping=0.97)
    net.physics.fit(...)
    centers = net(classes, present, center, learned=True)   # (B, K, 11, 2) pixels

The learned model is a simulator (`physics.Physics`: Coulomb friction per material and
collisions between objects of fitted masses, on the floor, numbers fitted to the training
tracks) plus a network that corrects it: each frame, every object's velocity is changed by
an acceleration made of a self term (the object's own history) and the sum of pairwise
terms from every other object, then the simulator advances one frame. The network's last
layers start at zero, so before training the forecast is the fitted simulator's. Motion is
simulated on the floor as a camera fitted to the training tracks sees it (`camera.FloorSpace`);
without one, on the ground plane (`ground.py`); before either is fitted, in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..classes import BACKGROUND, MATERIALS, SHAPES, shape_and_material
from .camera import FloorSpace
from .ground import GroundPlane
from .motion import MIN_SIGHTINGS, consistent_sightings, constant_velocity, fill_gaps
from .physics import Physics

# Scales that bring motion-space numbers to about unit size for the network.
VELOCITY_SCALE = 50.0
POSITION_SCALE = 4.0


@dataclass
class DynamicsNetConfig:
    """The dynamics network.

    Args:
        hidden: width of every layer.
        history: past frame-to-frame displacements each object's encoder reads.
        steps: frames forecast (12..22).
        image_size: (H, W) of the frames.
        substeps: simulation steps (and collision checks) per frame. Contacts are found at the
            time they happen within a substep, so more substeps change little but where several
            objects meet within one, at a longer simulation (benchmarks/results/pipelines.md).
    """

    hidden: int = 64
    history: int = 6
    steps: int = 11
    image_size: tuple[int, int] = (160, 240)
    substeps: int = 4

    def __post_init__(self) -> None:
        if self.hidden <= 0 or self.history <= 0 or self.steps <= 0 or self.substeps <= 0:
            raise ValueError("hidden, history, steps and substeps must be positive")


def mlp(n_in: int, hidden: int, n_out: int, *, zero_last: bool = False) -> nn.Sequential:
    """Two hidden layers with SiLU; the last layer optionally starts at zero."""
    last = nn.Linear(hidden, n_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), last)


def attributes(classes: torch.Tensor) -> torch.Tensor:
    """One-hot shape and material of class ids (B, K) -> (B, K, 5); zeros for empty slots."""
    shape, material = shape_and_material(classes)
    shape = nn.functional.one_hot(shape, len(SHAPES))
    material = nn.functional.one_hot(material, len(MATERIALS))
    return torch.cat([shape, material], -1).float() * (classes != BACKGROUND).unsqueeze(-1)


# ---- the learned interaction network ---------------------------------------------------


class InteractionNet(nn.Module):
    """Encoder of each object's past, and one simulation step for all objects at once."""

    def __init__(self, *, hidden: int, history: int):
        super().__init__()
        n_in = 2 + 2 * history + (history + 1) + len(SHAPES) + len(MATERIALS)
        self.history = history
        self.encoder = mlp(n_in, hidden, hidden)
        self.initial_velocity = mlp(hidden, hidden, 2, zero_last=True)
        # the pair network's first layer, split so that the object codes are projected once
        # per object rather than once per pair
        self.pair_geometry = nn.Linear(2 + 2 + 1, hidden)
        self.pair_receiver = nn.Linear(hidden, hidden, bias=False)
        self.pair_sender = nn.Linear(hidden, hidden, bias=False)
        self.pair = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.accel = mlp(2 + 2 * hidden, hidden, 2, zero_last=True)

    def encode(self, filled: torch.Tensor, present: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        """Past positions (B, K, T, 2), presence (B, K, T) and attributes -> (B, K, hidden)."""
        recent = filled[..., -self.history - 1:, :]
        steps = (recent[..., 1:, :] - recent[..., :-1, :]) * VELOCITY_SCALE
        features = [filled[..., -1, :] * POSITION_SCALE, steps.flatten(-2),
                    present[..., -self.history - 1:].float(), attrs]
        return self.encoder(torch.cat(features, -1))

    def step(self, p: torch.Tensor, v: torch.Tensor, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Acceleration (B, K, 2) of every object from positions, velocities and codes."""
        k = p.shape[1]
        rel = p.unsqueeze(1) - p.unsqueeze(2)  # (B, K, K, 2): [b, i, j] = p_j - p_i
        rel_v = v.unsqueeze(1) - v.unsqueeze(2)
        dist = rel.norm(dim=-1, keepdim=True)
        geometry = torch.cat([rel * POSITION_SCALE, rel_v * VELOCITY_SCALE, dist * POSITION_SCALE], -1)
        z = (self.pair_geometry(geometry) + self.pair_receiver(h).unsqueeze(2)
             + self.pair_sender(h).unsqueeze(1))
        others = valid.unsqueeze(1) & valid.unsqueeze(2) & ~torch.eye(k, dtype=torch.bool, device=p.device)
        pushes = (self.pair(z) * others.unsqueeze(-1)).sum(2)
        return self.accel(torch.cat([v * VELOCITY_SCALE, h, pushes], -1)) / VELOCITY_SCALE


# ---- the dynamics network ---------------------------------------------------------------


class DynamicsNet(nn.Module):
    """Future box centers of tracked objects: constant velocity, or the simulator plus the
    interaction network's corrections.

    Args:
        config: the network's settings.
    """

    def __init__(self, config: DynamicsNetConfig):
        super().__init__()
        self.config = config
        self.plane = GroundPlane(image_size=config.image_size)
        self.floor = FloorSpace(image_size=config.image_size)
        self.register_buffer("cv_frames", torch.tensor(2))
        self.register_buffer("cv_damping", torch.tensor(0.97))
        self.physics = Physics(substeps=config.substeps)
        self.net = InteractionNet(hidden=config.hidden, history=config.history)

    def set_constant_velocity(self, *, frames: int, damping: float) -> None:
        """Store the fitted constant-velocity settings (the `objects-cv` forecast)."""
        self.cv_frames.fill_(frames)
        self.cv_damping.fill_(damping)

    def to_space(self, xy: torch.Tensor) -> torch.Tensor:
        """Pixels -> motion space (the floor, else the ground plane)."""
        return self.floor.to_floor(xy) if self.floor.fitted else self.plane.to_ground(xy)

    def to_pixels(self, u: torch.Tensor) -> torch.Tensor:
        """Motion space (the floor, else the ground plane) -> pixels."""
        return self.floor.to_image(u) if self.floor.fitted else self.plane.to_image(u)

    def legacy_weights(self) -> dict[str, torch.Tensor]:
        """Weights that runs made before they existed lack, with the values that keep such a run
        forecasting as it did: no camera, the mean starting velocity, no friction at contact, balls
        that slide like the other shapes."""
        return {"floor.principal": self.floor.principal, "floor.numbers": torch.zeros_like(self.floor.numbers),
                "physics.window": torch.zeros_like(self.physics.window),
                "physics.grip": torch.zeros_like(self.physics.grip),
                "physics.spin_up": torch.zeros_like(self.physics.spin_up),
                "physics.log_rolling": self.physics.log_rolling.detach().clone()}

    @torch.no_grad()
    def pixel_scale(self, filled: torch.Tensor) -> torch.Tensor:
        """Pixels per motion-space unit (B, K) at the last of past positions (B, K, T, 2)."""
        g = filled[..., -1, :]
        px = self.to_pixels(g)
        eps = 1e-3
        moves = [(self.to_pixels(g + eps * e.to(g)) - px).norm(dim=-1) for e in torch.eye(2)]
        return (moves[0] + moves[1]) / (2 * eps)

    def object_width(self) -> float:
        """An object's width in motion space, about (a sphere's; the median shape's on the plane)."""
        if self.floor.fitted:
            return 2 * FloorSpace.SCALE
        return float(self.plane.shape_size.median()) / float(self.plane.frame[0])

    def sightings(self, classes: torch.Tensor, present: torch.Tensor, center: torch.Tensor,
                  size: torch.Tensor) -> torch.Tensor:
        """`present` (B, K, T) without the sightings whose box cannot be one whole object at its
        place (`motion.consistent_sightings`: a segmenter's class with a second blob, or only a
        piece of the object); an object left with none keeps them all. Before the plane is
        fitted it knows no object's size (1 pixel each), and nothing is dropped."""
        if bool((self.plane.shape_size <= 1).all()):
            return present
        keep = consistent_sightings(classes, present, center, size, self.plane, min_sightings=1)
        return torch.where(keep.any(-1, keepdim=True), keep, present)

    def drawable(self, classes: torch.Tensor, present: torch.Tensor, center: torch.Tensor,
                 size: torch.Tensor) -> torch.Tensor:
        """bool (B, K): the objects whose forecast is worth drawing, those seen whole and
        consistent (`sightings`) in at least `motion.MIN_SIGHTINGS` input frames. With fewer
        an object's motion is barely known (one sighting gives none, two cut by the border give
        a poor one) or it is a segmenter's stray class, and drawing it where the forecast puts
        it costs the score more than leaving it out."""
        return (classes != BACKGROUND) & (self.sightings(classes, present, center, size).sum(-1) >= MIN_SIGHTINGS)

    def past(self, classes: torch.Tensor, present: torch.Tensor, center: torch.Tensor,
             size: torch.Tensor | None = None) -> torch.Tensor:
        """Past positions in motion space, gaps filled: (B, K, T, 2) from pixel centers read where
        present, corrected first for boxes cut by the image border when `size` is given
        (`GroundPlane.uncut`)."""
        center = center.float()
        if size is not None:
            center = self.plane.uncut(classes, present, center, size.float())
        return fill_gaps(present, self.to_space(center))

    def forward(self, classes: torch.Tensor, present: torch.Tensor, center: torch.Tensor,
                *, size: torch.Tensor | None = None, learned: bool = True) -> torch.Tensor:
        """Forecast centers.

        Args:
            classes: long (B, K), 0 for empty slots.
            present: bool (B, K, T) over the input frames.
            center: (B, K, T, 2) pixels, read where present.
            size: (B, K, T, 2) box sizes as `extract_tracks` measures them; given, sightings
                that cannot be one whole object are dropped (`sightings`) and the centers of
                boxes cut by the image border are corrected (`GroundPlane.uncut`).
            learned: the simulator and the network; False gives the constant-velocity forecast.

        Returns:
            (B, K, steps, 2) forecast centers in pixels (empty slots: meaningless).
        """
        if size is not None:
            present = self.sightings(classes, present, center, size)
        filled = self.past(classes, present, center, size)
        if not learned:
            return self.to_pixels(constant_velocity(filled, frames=int(self.cv_frames), damping=self.cv_damping,
                                                    steps=self.config.steps, present=present))
        valid = (classes != BACKGROUND) & present.any(-1)
        classes = torch.where(valid, classes, BACKGROUND)
        q = self.physics.to_metric(filled)
        h = self.net.encode(q, present, attributes(classes))
        p, v, spin = self.physics.start(q, classes, present, scale=self.pixel_scale(filled))
        v = v + self.net.initial_velocity(h) / VELOCITY_SCALE
        out = []
        for _ in range(self.config.steps):
            p, v, spin = self.physics.advance(p, v + self.net.step(p, v, h, valid), spin, classes, valid)
            out.append(p)
        return self.to_pixels(self.physics.from_metric(torch.stack(out, -2)))
