"""The scene recipe (CLEVRER-like): which objects, where, how they move. Pure numpy, no physics.

A scene, with the default world (`WorldConfig`), has 3-6 objects in view at the start (some
resting, some sliding, some aimed at others so that they collide) and 0-3 objects that enter
from outside the view later, aimed at an object or a point in view; about a third of the videos
have an object entering after the input frames. All objects have one size (as in CLEVRER) and
no two share shape, material and color. The world's settings (how many objects, how fast, the
camera, the physics) are a `WorldConfig`, the `world:` section of a data preset; the image size
and frame counts come from the task shape (`layout.TaskShape`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..classes import NUM_CLASSES, attributes
from ..errors import ConfigError
from .layout import COMPETITION, TaskShape

CAMERA_UP = np.array([0.0, 0.0, 1.0])
LIGHT_DIRECTION = np.array([6.45, -2.91, 4.26])  # CLEVR's key light (Blender units)
# Pixel margins at the competition's image height, scaled with the height of other sizes.
MARGIN_PX = 18  # centers of initial objects keep this far from the image border
ENTRY_MARGIN_PX = 18  # entering objects start this far outside the border (just out of sight)
# How fast the objects that stop soonest slow down (floor units/s^2): rubber on the default floor,
# a little more than g x 0.3 x 0.8 (Bullet multiplies the two frictions); other frictions scale it.
_DECELERATION = 2.4
_DEFAULT_FRICTION = 0.3 * 0.8
_ENTERING_MAX_SPEED = 9.0  # entering objects come from further away than the ones in view


@dataclass(frozen=True)
class WorldConfig:
    """The generated world: how many objects, how they move, the camera, the physics.

    The defaults are the CLEVRER-like world every dataset of generator version 1 was made with
    (the CLEVR camera, Kubric MOVi-A frictions, physics at 240 Hz, 24 frames per second).
    A data preset changes them in its `world:` section; `--set world.objects=[4,8]` on the
    command line.

    Args:
        objects: objects in view at the start, (min, max), both included.
        entering: probabilities of 0, 1, 2, ... objects entering the view after the first
            frame (the list's length minus one is the most that enter).
        late_entry: share of the videos where an object enters at or after the first forecast
            frame (one no method can forecast from the input frames), in [0, 1].
        sliding: share of the objects in view at the start that slide, in [0, 1].
        speed: speed range of sliding objects, (min, max), floor units per second.
        max_speed: cap on the speed of a slider aimed at another object (it is given the speed
            that reaches its target, with some to spare).
        aimed: share of the sliding and entering objects aimed at another object (a collision);
            the others slide in a random direction, or enter toward a random point in view.
        camera_eye: camera position (x, y, z), floor units; z is the height above the floor.
        camera_target: the point the camera looks at (x, y, z).
        fov: vertical field of view in degrees, in (0, 180); the horizontal one follows from
            the task shape's width / height.
        radius: radius of spheres and cylinders (a cylinder is as tall as it is wide); a cube's
            half side is 0.9 of it so that the three shapes look the same size.
        floor_friction: lateral friction of the floor.
        metal_friction: lateral friction of metal objects.
        rubber_friction: lateral friction of rubber objects.
        physics_hz: physics steps per second.
        steps_per_frame: physics steps between two frames (frames per second: physics_hz /
            steps_per_frame).
    """

    objects: tuple[int, int] = (3, 6)
    entering: tuple[float, ...] = (0.2, 0.45, 0.25, 0.1)
    late_entry: float = 0.35
    sliding: float = 0.55
    speed: tuple[float, float] = (2.0, 4.5)
    max_speed: float = 5.5
    aimed: float = 0.7
    camera_eye: tuple[float, float, float] = (7.48, -6.51, 5.34)
    camera_target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov: float = 33.9
    radius: float = 0.4
    floor_friction: float = 0.3
    metal_friction: float = 0.4
    rubber_friction: float = 0.8
    physics_hz: int = 240
    steps_per_frame: int = 10

    def __post_init__(self) -> None:
        low, high = _pair(self.objects, "objects")
        if not 1 <= low <= high:
            raise ConfigError(f"objects must be [min, max] with 1 <= min <= max, got {list(self.objects)}")
        p = self.entering
        if len(p) < 1 or any(not 0 <= v <= 1 for v in p) or abs(sum(p) - 1) > 1e-6:
            raise ConfigError(f"entering must be probabilities of 0, 1, 2, ... entering objects that sum to 1, "
                              f"got {list(p)}")
        if high + len(p) - 1 > NUM_CLASSES - 1:
            raise ConfigError(f"objects and entering allow {high + len(p) - 1} objects in a video; no two may "
                              f"share a class, and there are {NUM_CLASSES - 1}")
        for name in ("late_entry", "sliding", "aimed"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} is a share of videos or objects: it must be in [0, 1], "
                                  f"got {getattr(self, name)}")
        low, high = _pair(self.speed, "speed")
        if not 0 <= low <= high:
            raise ConfigError(f"speed must be [min, max] with 0 <= min <= max, got {list(self.speed)}")
        for name in ("max_speed", "radius"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("floor_friction", "metal_friction", "rubber_friction"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("physics_hz", "steps_per_frame"):
            if not getattr(self, name) >= 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.fov < 180:
            raise ConfigError(f"fov is the vertical field of view in degrees: it must be in (0, 180), "
                              f"got {self.fov}")
        for name in ("camera_eye", "camera_target"):
            if len(getattr(self, name)) != 3:
                raise ConfigError(f"{name} must be [x, y, z], got {list(getattr(self, name))}")
        if not self.camera_eye[2] > 2 * self.radius:
            raise ConfigError(f"camera_eye must be above the objects (z > {2 * self.radius}), got "
                              f"{list(self.camera_eye)}")
        forward = np.subtract(self.camera_target, self.camera_eye)
        if np.linalg.norm(forward[:2]) <= 1e-6 * np.linalg.norm(forward):
            raise ConfigError(f"camera_eye {list(self.camera_eye)} looks straight down (or not at all) at "
                              f"camera_target {list(self.camera_target)}; move one of them sideways")
        _, up, forward = _axes(np.array(self.camera_eye, dtype=float), np.array(self.camera_target, dtype=float))
        if forward[2] + math.tan(math.radians(self.fov) / 2) * up[2] >= 0:
            raise ConfigError(f"the camera (camera_eye {list(self.camera_eye)}, camera_target "
                              f"{list(self.camera_target)}, fov {self.fov}) sees the horizon; it must see "
                              "the floor at every pixel: raise camera_eye, bring camera_target closer to "
                              "it or narrow fov")

    @property
    def cube_half(self) -> float:
        """Half the side of a cube (0.36 for the default radius 0.4, exactly)."""
        return self.radius * 9 / 10

    @property
    def fps(self) -> float:
        """Frames per second of the videos."""
        return self.physics_hz / self.steps_per_frame

    @property
    def deceleration(self) -> float:
        """How fast the sliding objects that stop soonest slow down (floor units/s^2)."""
        friction = self.floor_friction * max(self.metal_friction, self.rubber_friction)
        return _DECELERATION * (friction / _DEFAULT_FRICTION)


def _pair(values: tuple, name: str) -> tuple:
    if len(values) != 2:
        raise ConfigError(f"{name} must be [min, max], got {list(values)}")
    return tuple(values)


def _axes(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right, up and forward unit vectors of a camera at `eye` looking at `target`."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, CAMERA_UP)
    right = right / np.linalg.norm(right)
    return right, np.cross(right, forward), forward


DEFAULT_WORLD = WorldConfig()  # the CLEVRER-like world of the default data presets


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


class Camera:
    """The pinhole camera of a world at a task shape's image size (the one PyBullet renders
    with): world points to pixels, pixels to rays and to the floor.

    Args:
        world: the camera's position, target and vertical field of view; the objects' radius
            (their centers' height at rest).
        shape: the image size (the aspect ratio follows it).
    """

    def __init__(self, world: WorldConfig, shape: TaskShape) -> None:
        self.eye = np.array(world.camera_eye, dtype=np.float64)
        self.right, self.up, self.forward = _axes(self.eye, np.array(world.camera_target, dtype=np.float64))
        self.tan_half = math.tan(math.radians(world.fov) / 2)
        self.width, self.height = shape.width, shape.height
        self.rest_height = world.radius
        self.margin = MARGIN_PX * shape.height / COMPETITION.height
        self.entry_margin = ENTRY_MARGIN_PX * shape.height / COMPETITION.height

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixel coordinates (..., 2) as (column, row) floats."""
        rel = np.asarray(points, dtype=np.float64) - self.eye
        depth = rel @ self.forward
        aspect = self.width / self.height
        x = (rel @ self.right) / depth / (self.tan_half * aspect)
        y = (rel @ self.up) / depth / self.tan_half
        return np.stack([(x + 1) * self.width / 2, (1 - y) * self.height / 2], axis=-1)

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) ray direction through each pixel center, scaled to a unit forward component
        (so that eye + ray * depth is the point at camera-space depth `depth`)."""
        aspect = self.width / self.height
        cols = (np.arange(self.width) + 0.5) / self.width * 2 - 1
        rows = 1 - (np.arange(self.height) + 0.5) / self.height * 2
        return (self.forward + cols[None, :, None] * self.tan_half * aspect * self.right
                + rows[:, None, None] * self.tan_half * self.up)

    def floor_points(self) -> np.ndarray:
        """(H, W, 2) floor coordinates (x, y) seen at each pixel center (the camera looks down)."""
        rays = self.pixel_rays()
        scale = -self.eye[2] / rays[..., 2]
        return (self.eye + scale[..., None] * rays)[..., :2]

    def in_view(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether floor points (..., 2) (object centers at rest height) project inside the image,
        at least `margin` pixels from the border."""
        xy = np.asarray(xy, dtype=np.float64)
        points = np.concatenate([xy, np.full(xy.shape[:-1] + (1,), self.rest_height)], axis=-1)
        px = self.project(points)
        return ((px[..., 0] >= margin) & (px[..., 0] < self.width - margin)
                & (px[..., 1] >= margin) & (px[..., 1] < self.height - margin))

    def floor_at_pixel(self, col: float, row: float) -> np.ndarray:
        """Floor point (x, y) under an object whose center is seen at pixel (col, row)."""
        x = col / self.width * 2 - 1
        y = 1 - row / self.height * 2
        ray = (self.forward + x * self.tan_half * self.width / self.height * self.right
               + y * self.tan_half * self.up)
        point = self.eye + ray * (self.rest_height - self.eye[2]) / ray[2]  # where the ray is at center height
        return point[:2]


# ---------------------------------------------------------------------------------------------
# scene sampling


def _sample_in_view(rng: np.random.Generator, camera: Camera, taken: list[np.ndarray],
                    min_gap: float) -> np.ndarray:
    """A floor point seen at a uniformly random pixel (so that near and far parts of the image
    get objects alike), at least `min_gap` from every point in `taken`."""
    margin = camera.margin
    for _ in range(1000):
        col = rng.uniform(margin, camera.width - margin)
        row = rng.uniform(margin, camera.height - margin)
        xy = camera.floor_at_pixel(col, row)
        if camera.in_view(xy, margin) and all(np.linalg.norm(xy - t) >= min_gap for t in taken):
            return xy
    raise ConfigError(f"could not place {len(taken) + 1} objects apart in view; lower world.objects or "
                      "world.radius, or widen the camera's view (world.fov, world.camera_eye)")


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _entry_point(camera: Camera, target: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Walk back from `target` against `direction` until the object is fully out of view."""
    point = target.copy()
    for _ in range(200):
        point = point - 0.1 * direction
        if not camera.in_view(point, -camera.entry_margin):
            return point
    return point


def _reaching_speed(distance: float, deceleration: float, rng: np.random.Generator) -> float:
    """A speed that carries a sliding object `distance` further against friction (that slows
    it by up to `deceleration`), with some to spare."""
    return math.sqrt(2 * deceleration * distance) * rng.uniform(1.05, 1.3)


def _entry_frame(rng: np.random.Generator, late: bool, shape: TaskShape) -> int:
    """When an entering object appears: among the input frames (after the first), or, when
    `late`, at or after the first forecast frame and a few frames before the video ends (when
    the video is long enough)."""
    if late:
        return int(rng.integers(shape.input_frames, max(shape.frames - 4, shape.input_frames + 1)))
    return int(rng.integers(1, max(shape.input_frames - 1, 2)))


def sample_scene(rng: np.random.Generator, world: WorldConfig = DEFAULT_WORLD,
                 shape: TaskShape = COMPETITION) -> list[ObjectPlan]:
    """Sample the objects of one video of `world` at `shape` from `rng` (the only source of
    randomness)."""
    camera = Camera(world, shape)
    n_initial = int(rng.integers(world.objects[0], world.objects[1] + 1))
    n_entering = int(rng.choice(len(world.entering), p=list(world.entering)))
    classes = rng.choice(np.arange(1, NUM_CLASSES), size=n_initial + n_entering, replace=False)
    positions: list[np.ndarray] = []
    for _ in range(n_initial):
        positions.append(_sample_in_view(rng, camera, positions, 3.2 * world.radius))
    objects = []
    for k in range(n_initial):
        velocity = np.zeros(2)
        if rng.random() < world.sliding:
            speed = rng.uniform(*world.speed)
            angle = rng.uniform(0, 2 * math.pi)
            others = [p for j, p in enumerate(positions) if j != k]
            if others and rng.random() < world.aimed:  # aimed at another object: a collision
                aim = others[int(rng.integers(len(others)))] - positions[k]
                angle = math.atan2(aim[1], aim[0]) + rng.normal(0, 0.08)
                speed = min(_reaching_speed(float(np.linalg.norm(aim)), world.deceleration, rng), world.max_speed)
            velocity = speed * _unit(angle)
        objects.append(ObjectPlan(int(classes[k]), tuple(positions[k]), float(rng.uniform(0, 2 * math.pi)),
                                  tuple(velocity), 0))
    late = rng.random() < world.late_entry  # one entering object appears after the input frames
    for k in range(n_entering):
        frame = _entry_frame(rng, k == 0 and late, shape)
        if rng.random() < world.aimed:
            target = positions[int(rng.integers(n_initial))]
        else:
            target = _sample_in_view(rng, camera, [], 0.0)
        direction = _unit(rng.uniform(0, 2 * math.pi))
        start = _entry_point(camera, target, direction)
        distance = float(np.linalg.norm(target - start))
        speed = min(_reaching_speed(distance, world.deceleration, rng) + 0.5, _ENTERING_MAX_SPEED)
        objects.append(ObjectPlan(int(classes[n_initial + k]), tuple(start),
                                  float(rng.uniform(0, 2 * math.pi)), tuple(speed * direction), frame))
    return objects
