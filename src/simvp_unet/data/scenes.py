"""The scene recipe (CLEVRER-like): which objects, where, how they move. Pure numpy, no physics.

A scene has 3-6 objects in view at the start (some resting, some sliding, some aimed at
others so that they collide) and 0-3 objects that enter from outside the view later, aimed at
an object or a point in view; about a third of the videos have an object entering at frame 11 or
later. All objects have one size (as in CLEVRER) and no two share shape, material and color.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..classes import NUM_CLASSES, attributes
from . import layout

# CLEVR camera and key light (Blender units), at 240 x 160 a vertical field of view of 33.9 deg.
CAMERA_EYE = np.array([7.48, -6.51, 5.34])
CAMERA_TARGET = np.zeros(3)
CAMERA_UP = np.array([0.0, 0.0, 1.0])
FOV_DEG = 33.9
LIGHT_DIRECTION = np.array([6.45, -2.91, 4.26])

RADIUS = 0.4  # sphere and cylinder radius; the cylinder is as tall as it is wide
CUBE_HALF = 0.36  # a bit smaller than RADIUS so that the three shapes look the same size
STEPS_PER_FRAME = 10  # physics at 240 Hz -> 24 frames per second
MAX_ENTERING = 3
MAX_SPEED = 5.5  # of objects that start in view (floor units per second)
LATE_ENTRY = 0.35  # share of videos with an object entering at frame >= 11 (planned)
MARGIN_PX = 18  # centers of initial objects keep this far from the image border
ENTRY_MARGIN_PX = 18  # entering objects start this far outside the border (just out of sight)


@dataclass
class ObjectPlan:
    """One object of a scene: its class, where it starts and its initial velocity."""

    class_id: int
    position: tuple[float, float]  # on the floor plane (x, y)
    yaw: float
    velocity: tuple[float, float]
    spawn_frame: int  # 0: in the scene from the start; >0: added just before this frame

    @property
    def attributes(self) -> tuple[str, str, str]:
        """(shape, material, color) names."""
        return attributes(self.class_id)


# ---------------------------------------------------------------------------------------------
# camera geometry


@functools.cache
def camera_axes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right, up and forward unit vectors of the camera (cached: do not modify)."""
    forward = CAMERA_TARGET - CAMERA_EYE
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, CAMERA_UP)
    right = right / np.linalg.norm(right)
    return right, np.cross(right, forward), forward


def project(points: np.ndarray) -> np.ndarray:
    """World points (..., 3) -> pixel coordinates (..., 2) as (column, row) floats."""
    right, up, forward = camera_axes()
    rel = np.asarray(points, dtype=np.float64) - CAMERA_EYE
    depth = rel @ forward
    tan_half = math.tan(math.radians(FOV_DEG) / 2)
    aspect = layout.WIDTH / layout.HEIGHT
    x = (rel @ right) / depth / (tan_half * aspect)
    y = (rel @ up) / depth / tan_half
    return np.stack([(x + 1) * layout.WIDTH / 2, (1 - y) * layout.HEIGHT / 2], axis=-1)


def pixel_rays() -> np.ndarray:
    """(H, W, 3) ray direction through each pixel center, scaled to a unit forward component
    (so that eye + ray * depth is the point at camera-space depth `depth`)."""
    right, up, forward = camera_axes()
    tan_half = math.tan(math.radians(FOV_DEG) / 2)
    aspect = layout.WIDTH / layout.HEIGHT
    cols = (np.arange(layout.WIDTH) + 0.5) / layout.WIDTH * 2 - 1
    rows = 1 - (np.arange(layout.HEIGHT) + 0.5) / layout.HEIGHT * 2
    return (forward + cols[None, :, None] * tan_half * aspect * right
            + rows[:, None, None] * tan_half * up)


def floor_points() -> np.ndarray:
    """(H, W, 2) floor coordinates (x, y) seen at each pixel center (the camera looks down)."""
    rays = pixel_rays()
    scale = -CAMERA_EYE[2] / rays[..., 2]
    return (CAMERA_EYE + scale[..., None] * rays)[..., :2]


def in_view(xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Whether floor points (..., 2) (object centers at rest height) project inside the image,
    at least `margin` pixels from the border."""
    xy = np.asarray(xy, dtype=np.float64)
    points = np.concatenate([xy, np.full(xy.shape[:-1] + (1,), RADIUS)], axis=-1)
    px = project(points)
    return ((px[..., 0] >= margin) & (px[..., 0] < layout.WIDTH - margin)
            & (px[..., 1] >= margin) & (px[..., 1] < layout.HEIGHT - margin))


# ---------------------------------------------------------------------------------------------
# scene sampling


def _sample_in_view(rng: np.random.Generator, taken: list[np.ndarray], min_gap: float) -> np.ndarray:
    """A floor point seen at a uniformly random pixel (so that near and far parts of the image
    get objects alike), at least `min_gap` from every point in `taken`."""
    for _ in range(1000):
        col = rng.uniform(MARGIN_PX, layout.WIDTH - MARGIN_PX)
        row = rng.uniform(MARGIN_PX, layout.HEIGHT - MARGIN_PX)
        xy = _floor_at_pixel(col, row)
        if in_view(xy, MARGIN_PX) and all(np.linalg.norm(xy - t) >= min_gap for t in taken):
            return xy
    raise RuntimeError("could not place an object in view")  # unreachable with <= 6 objects


def _floor_at_pixel(col: float, row: float) -> np.ndarray:
    """Floor point (x, y) under an object whose center is seen at pixel (col, row)."""
    right, up, forward = camera_axes()
    tan_half = math.tan(math.radians(FOV_DEG) / 2)
    x = col / layout.WIDTH * 2 - 1
    y = 1 - row / layout.HEIGHT * 2
    ray = forward + x * tan_half * layout.WIDTH / layout.HEIGHT * right + y * tan_half * up
    point = CAMERA_EYE + ray * (RADIUS - CAMERA_EYE[2]) / ray[2]  # where the ray is at center height
    return point[:2]


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _entry_point(target: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Walk back from `target` against `direction` until the object is fully out of view."""
    point = target.copy()
    for _ in range(200):
        point = point - 0.1 * direction
        if not in_view(point, -ENTRY_MARGIN_PX):
            return point
    return point


def _reaching_speed(distance: float, rng: np.random.Generator) -> float:
    """A speed that carries a sliding object `distance` further against friction
    (deceleration up to about 2.4 for rubber on the floor), with some to spare."""
    return math.sqrt(2 * 2.4 * distance) * rng.uniform(1.05, 1.3)


def sample_scene(rng: np.random.Generator) -> list[ObjectPlan]:
    """Sample the objects of one video from `rng` (the only source of randomness)."""
    n_initial = int(rng.integers(3, 7))
    n_entering = int(rng.choice(MAX_ENTERING + 1, p=[0.2, 0.45, 0.25, 0.1]))
    classes = rng.choice(np.arange(1, NUM_CLASSES), size=n_initial + n_entering, replace=False)
    positions: list[np.ndarray] = []
    for _ in range(n_initial):
        positions.append(_sample_in_view(rng, positions, 3.2 * RADIUS))
    objects = []
    for k in range(n_initial):
        velocity = np.zeros(2)
        if rng.random() < 0.55:  # sliding
            speed = rng.uniform(2.0, 4.5)
            angle = rng.uniform(0, 2 * math.pi)
            others = [p for j, p in enumerate(positions) if j != k]
            if others and rng.random() < 0.7:  # aimed at another object: a collision
                aim = others[int(rng.integers(len(others)))] - positions[k]
                angle = math.atan2(aim[1], aim[0]) + rng.normal(0, 0.08)
                speed = min(_reaching_speed(float(np.linalg.norm(aim)), rng), MAX_SPEED)
            velocity = speed * _unit(angle)
        objects.append(ObjectPlan(int(classes[k]), tuple(positions[k]), float(rng.uniform(0, 2 * math.pi)),
                                  tuple(velocity), 0))
    late = rng.random() < LATE_ENTRY  # one entering object appears at frame >= 11
    for k in range(n_entering):
        if k == 0 and late:
            frame = int(rng.integers(layout.INPUT_FRAMES, layout.FRAMES - 4))
        else:
            frame = int(rng.integers(1, layout.INPUT_FRAMES - 1))
        if rng.random() < 0.7:
            target = positions[int(rng.integers(n_initial))]
        else:
            target = _sample_in_view(rng, [], 0.0)
        direction = _unit(rng.uniform(0, 2 * math.pi))
        start = _entry_point(target, direction)
        distance = float(np.linalg.norm(target - start))
        speed = min(_reaching_speed(distance, rng) + 0.5, 9.0)
        objects.append(ObjectPlan(int(classes[n_initial + k]), tuple(start),
                                  float(rng.uniform(0, 2 * math.pi)), tuple(speed * direction), frame))
    return objects

