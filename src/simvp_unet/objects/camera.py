"""A pinhole camera fitted to the objects themselves (no camera comes with a dataset).

The objects give one away: a few shapes of one size resting on one floor, so the box a whole
object has at each image position is a function of the focal length, the camera's height above
the floor, its pitch (roll 0: the horizon is level) and the objects' size. `fit_camera` finds
those numbers from the boxes of whole views (`Tracks.whole`): each box's center places its
object on the floor, and the box's width and height then say how far away the camera is and how
steeply it looks down (a cylinder looks flatter from higher up, and wider than tall near the
horizon). `silhouette.py` draws the objects it sees.

Frames (lengths in sphere radii):

    world: the floor is z = 0, the camera at (0, 0, height); x to the right (along image rows),
           y forward (the camera's view, level), z up
    image: pixel (row, col) covers [col, col + 1) x [row, row + 1); (u, v) = (col, row) + 0.5
           is its center; the principal point is the image center

    camera = fit_camera(classes, center, size, whole, image_size=(160, 240))
    xy = camera.floor_position(shapes, box_centers)      # (N, 2) floor points under the objects
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..classes import BACKGROUND, SHAPES, shape_and_material

CUBE, SPHERE, CYLINDER = (SHAPES.index(name) for name in ("cube", "sphere", "cylinder"))
_RIM = 48  # points on each rim of a cylinder for its box (which is then within 0.01 px)
_YAWS = 30  # cube turns tried when fitting, in [0, 90) degrees (a cube repeats every quarter turn)
_CUBE_HALVES = np.linspace(0.5, 1.5, 101)  # cube half sides tried when fitting, sphere radii
_NUMBERS = ("focal", "pitch", "height", "cube_half", "cylinder_radius", "cylinder_half")  # a Camera's


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera looking down at the floor, and the size of the objects on it.

    Args:
        focal: focal length, pixels.
        pitch: how far the optical axis points below the horizon, radians.
        height: the camera's height above the floor, sphere radii.
        cube_half: half the side of a cube, sphere radii.
        cylinder_radius: radius of an (upright) cylinder, sphere radii.
        cylinder_half: half the height of a cylinder, sphere radii.
        image_size: (H, W) of the frames.
    """

    focal: float
    pitch: float
    height: float
    cube_half: float = 1.0
    cylinder_radius: float = 1.0
    cylinder_half: float = 1.0
    image_size: tuple[int, int] = (160, 240)

    def __post_init__(self) -> None:
        numbers = (self.focal, self.height, self.cube_half, self.cylinder_radius, self.cylinder_half)
        if not all(math.isfinite(v) and v > 0 for v in numbers) or not 0 < self.pitch < math.pi / 2:
            raise ValueError(f"a camera needs positive focal length, height and sizes and a pitch in "
                             f"(0, pi/2), got {self}")

    @property
    def principal(self) -> np.ndarray:
        """(u, v) where the optical axis meets the image: its center."""
        h, w = self.image_size
        return np.array([w / 2, h / 2])

    @property
    def axes(self) -> np.ndarray:
        """(3, 3) rows: the camera's right, down (image rows) and forward axes in the world."""
        s, c = math.sin(self.pitch), math.cos(self.pitch)
        return np.array([[1.0, 0.0, 0.0], [0.0, -s, -c], [0.0, c, -s]])

    @property
    def eye(self) -> np.ndarray:
        """The camera's position (3,)."""
        return np.array([0.0, 0.0, self.height])

    def rest_height(self, shape: np.ndarray) -> np.ndarray:
        """Height (...) of the center of objects of shape indices (...) resting on the floor."""
        return np.array([self.cube_half, 1.0, self.cylinder_half])[shape]

    def bounding_radius(self, shape: int) -> float:
        """Radius of the smallest sphere around an object's center that holds it."""
        return (math.sqrt(3) * self.cube_half, 1.0, math.hypot(self.cylinder_radius, self.cylinder_half))[shape]

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixel coordinates (u, v) (..., 2)."""
        p = (np.asarray(points, dtype=np.float64) - self.eye) @ self.axes.T
        return self.principal + self.focal * p[..., :2] / p[..., 2:]

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """World directions (..., 3) of the rays through pixel coordinates (u, v) (..., 2),
        scaled to a unit forward component (so that t along a ray is the depth)."""
        n = (np.asarray(uv, dtype=np.float64) - self.principal) / self.focal
        right, down, forward = self.axes
        return forward + n[..., :1] * right + n[..., 1:] * down

    def on_floor(self, uv: np.ndarray, z: np.ndarray | float = 0.0) -> np.ndarray:
        """(x, y) (..., 2) where the rays through pixel coordinates (u, v) (..., 2) are at height z."""
        d = self.rays(uv)
        t = (np.asarray(z, dtype=np.float64) - self.height) / np.minimum(d[..., 2], -1e-9)
        return t[..., None] * d[..., :2]

    def depth(self, shape: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Camera depth (...) of the centers of objects of shape indices (...) at floor points (..., 2)."""
        points = np.concatenate([xy, self.rest_height(np.asarray(shape))[..., None]], -1)
        return (points - self.eye) @ self.axes[2]

    def boxes(self, shape: np.ndarray, xy: np.ndarray, yaw: np.ndarray | None = None) -> np.ndarray:
        """Image boxes (x0, y0, x1, y1) (N, 4), pixels, of objects of shape indices (N) at floor
        points (N, 2), cubes turned by `yaw` (N) radians (default 0)."""
        return _boxes(self.numbers(), torch.as_tensor(np.asarray(shape)).long(), _f64(xy),
                      None if yaw is None else _f64(yaw)).numpy()

    def floor_position(self, shape: np.ndarray, center: np.ndarray, yaw: np.ndarray | None = None) -> np.ndarray:
        """The floor points (N, 2) under objects of shape indices (N) whose whole boxes have
        centers (N, 2), pixels; cubes turned by `yaw` (N) radians (default 0).

        A box's center is not where the object's center projects (its near side looks bigger
        than its far side): start from the ray through the box center at the object's center
        height, then correct by the offset the camera predicts there, a few times.
        """
        return _floor_position(self.numbers(), torch.as_tensor(np.asarray(shape)).long(), _f64(center),
                               None if yaw is None else _f64(yaw)).numpy()

    def numbers(self) -> dict[str, torch.Tensor]:
        """The camera's numbers as float64 tensors, as the torch geometry below takes them."""
        return {**{k: torch.tensor(float(getattr(self, k)), dtype=torch.float64) for k in _NUMBERS},
                "principal": torch.from_numpy(self.principal)}


class FloorSpace(nn.Module):
    """Pixels <-> points on the floor as a fitted camera sees them: the space the objects move in.

    A pixel maps to where the ray through it is at a sphere's center height: an object's box
    center goes to (about) the point under the object, so motion that is uniform on the floor is
    uniform here, in every direction and at every depth. The floor points are in sphere radii
    times `SCALE`, which brings an object's speed to the size of the ground plane's units
    (`ground.py`), the space used before a camera is fitted (`fitted` False).

    Args:
        image_size: (H, W) of the frames.
    """

    SCALE = 0.05

    def __init__(self, *, image_size: tuple[int, int] = (160, 240)):
        super().__init__()
        h, w = image_size
        self.register_buffer("principal", torch.tensor([w / 2, h / 2]))
        self.register_buffer("numbers", torch.zeros(len(_NUMBERS), dtype=torch.float64))  # zeros: none fitted

    @property
    def fitted(self) -> bool:
        """Whether a camera is set."""
        return bool(self.numbers[0] > 0)

    def set(self, camera: Camera) -> FloorSpace:
        """Store a fitted camera's numbers."""
        self.numbers.copy_(torch.tensor([float(getattr(camera, k)) for k in _NUMBERS], dtype=torch.float64))
        return self

    def camera(self) -> Camera | None:
        """The stored camera, or None."""
        if not self.fitted:
            return None
        h, w = (int(round(2 * float(v))) for v in self.principal.flip(0))
        return Camera(**{k: float(v) for k, v in zip(_NUMBERS, self.numbers.tolist(), strict=True)}, image_size=(h, w))

    def _cam(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        n = self.numbers.to(like.dtype)
        return {"focal": n[0], "pitch": n[1], "height": n[2], "principal": self.principal.to(like.dtype)}

    def to_floor(self, xy: torch.Tensor) -> torch.Tensor:
        """Pixels (..., 2) -> floor points (..., 2), radii x `SCALE`."""
        flat = xy.reshape(-1, 2)
        g = _on_floor(self._cam(flat), flat, torch.ones_like(flat[:, 0]))
        return (g * self.SCALE).view_as(xy)

    def to_image(self, g: torch.Tensor) -> torch.Tensor:
        """Floor points (..., 2), radii x `SCALE` -> pixels (..., 2)."""
        g = g / self.SCALE
        points = torch.cat([g, torch.ones_like(g[..., :1])], -1)
        cam = self._cam(g)
        p = _to_camera(cam, points)
        return _pixels(cam, torch.cat([p[..., :2], p[..., 2:].clamp_min(1e-3)], -1))


def _f64(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """x as a float64 tensor."""
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


# ---- boxes and floor positions in torch (differentiable in the camera's numbers) -----------


def _to_camera(cam: dict[str, torch.Tensor], points: torch.Tensor) -> torch.Tensor:
    """World points (..., 3) -> camera coordinates (right, down, forward) (..., 3)."""
    s, c = torch.sin(cam["pitch"]), torch.cos(cam["pitch"])
    x, y, z = points.unbind(-1)
    z = z - cam["height"]
    return torch.stack([x, -s * y - c * z, c * y - s * z], -1)


def _pixels(cam: dict[str, torch.Tensor], p: torch.Tensor) -> torch.Tensor:
    """Camera coordinates (..., 3) -> (u, v) (..., 2)."""
    return cam["principal"] + cam["focal"] * p[..., :2] / p[..., 2:]


def _rest(cam: dict[str, torch.Tensor], shape: torch.Tensor) -> torch.Tensor:
    """Center heights (N) of objects of shape indices (N) resting on the floor."""
    return torch.stack([cam["cube_half"], torch.ones_like(cam["cube_half"]), cam["cylinder_half"]])[shape]


def _sphere_boxes(cam: dict[str, torch.Tensor], xy: torch.Tensor, yaw: torch.Tensor | None) -> torch.Tensor:
    """Boxes of spheres: the planes through the eye that hold an image column (row) and touch
    the sphere bound it."""
    p = _to_camera(cam, torch.cat([xy, torch.ones(len(xy), 1, dtype=torch.float64)], -1))
    z2 = p[:, 2] ** 2 - 1
    sides = []
    for axis in (0, 1):
        root = torch.sqrt((p[:, axis] ** 2 + z2).clamp_min(1e-9))
        sides.append([cam["principal"][axis] + cam["focal"] * (p[:, axis] * p[:, 2] + sign * root) / z2
                      for sign in (-1, 1)])
    return torch.stack([sides[0][0], sides[1][0], sides[0][1], sides[1][1]], -1)


def _points_box(cam: dict[str, torch.Tensor], xy: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Boxes of the images of points `local` (N, P, 3) placed around floor points (N, 2)."""
    points = local + torch.cat([xy, torch.zeros(len(xy), 1, dtype=torch.float64)], -1)[:, None]
    uv = _pixels(cam, _to_camera(cam, points))
    return torch.cat([uv.amin(1), uv.amax(1)], -1)


def _cylinder_boxes(cam: dict[str, torch.Tensor], xy: torch.Tensor, yaw: torch.Tensor | None) -> torch.Tensor:
    """Boxes of upright cylinders: those of their two rims."""
    angle = torch.arange(_RIM, dtype=torch.float64) * (2 * math.pi / _RIM)
    ring = torch.stack([torch.cos(angle), torch.sin(angle)], -1) * cam["cylinder_radius"]
    low = torch.zeros(_RIM, 1, dtype=torch.float64)
    rims = torch.cat([torch.cat([ring, low], -1), torch.cat([ring, low + 2 * cam["cylinder_half"]], -1)])
    return _points_box(cam, xy, rims.expand(len(xy), -1, -1))


def _cube_boxes(cam: dict[str, torch.Tensor], xy: torch.Tensor, yaw: torch.Tensor | None) -> torch.Tensor:
    """Boxes of cubes turned by `yaw`: those of their eight corners."""
    a = torch.tensor([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (0, 2)], dtype=torch.float64)
    a = a * cam["cube_half"]
    yaw = torch.zeros(len(xy), dtype=torch.float64) if yaw is None else yaw
    c, s = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
    corners = torch.stack([c * a[:, 0] - s * a[:, 1], s * a[:, 0] + c * a[:, 1], a[:, 2].expand(len(xy), -1)], -1)
    return _points_box(cam, xy, corners)


_SHAPE_BOXES = {CUBE: _cube_boxes, SPHERE: _sphere_boxes, CYLINDER: _cylinder_boxes}


def _boxes(cam: dict[str, torch.Tensor], shape: torch.Tensor, xy: torch.Tensor,
           yaw: torch.Tensor | None) -> torch.Tensor:
    """(x0, y0, x1, y1) (N, 4); see `Camera.boxes`."""
    out = torch.zeros(len(xy), 4, dtype=torch.float64)
    for kind, boxes in _SHAPE_BOXES.items():
        pick = shape == kind
        if pick.any():
            out = out.index_put((pick.nonzero()[:, 0],), boxes(cam, xy[pick], None if yaw is None else yaw[pick]))
    return out


def _on_floor(cam: dict[str, torch.Tensor], uv: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(x, y) (N, 2) where the rays through (u, v) (N, 2) are at heights z (N) (rays at or
    above the horizon: far away)."""
    n = (uv - cam["principal"]) / cam["focal"]
    s, c = torch.sin(cam["pitch"]), torch.cos(cam["pitch"])
    forward, down = c - n[:, 1] * s, -s - n[:, 1] * c  # the ray's y and z (x is n_x)
    t = (z - cam["height"]) / down.clamp_max(-1e-6)
    return torch.stack([t * n[:, 0], t * forward], -1)


def _floor_position(cam: dict[str, torch.Tensor], shape: torch.Tensor, center: torch.Tensor,
                    yaw: torch.Tensor | None, rounds: int = 3) -> torch.Tensor:
    """Floor points (N, 2) under objects whose boxes have centers (N, 2); see `Camera.floor_position`."""
    z = _rest(cam, shape)
    xy = _on_floor(cam, center, z)
    for _ in range(rounds):
        box = _boxes(cam, shape, xy, yaw)
        offset = (box[:, :2] + box[:, 2:]) / 2 - _pixels(cam, _to_camera(cam, torch.cat([xy, z[:, None]], -1)))
        xy = _on_floor(cam, center - offset, z)
    return xy


# ---- fitting -------------------------------------------------------------------------------


def _whole_views(classes: np.ndarray, center: np.ndarray, size: np.ndarray, whole: np.ndarray,
                 limit: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shape indices (N), box centers (N, 2) and sizes (N, 2) of at most `limit` whole views
    (a fixed random subset)."""
    use = whole & (classes[:, :, None] != BACKGROUND)
    shape = np.broadcast_to(shape_and_material(classes)[0][:, :, None], whole.shape)[use]
    c, s = center[use], size[use]
    if len(shape) > limit:
        keep = np.sort(np.random.default_rng(0).choice(len(shape), limit, replace=False))
        shape, c, s = shape[keep], c[keep], s[keep]
    return torch.from_numpy(np.asarray(shape)).long(), _f64(c), _f64(s)


def _size_errors(cam: dict[str, torch.Tensor], shape: torch.Tensor, center: torch.Tensor, size: torch.Tensor,
                 yaw: torch.Tensor | None = None) -> torch.Tensor:
    """Box size errors (N, 2), pixels, of whole views placed on the floor by their box centers."""
    box = _boxes(cam, shape, _floor_position(cam, shape, center, yaw, rounds=2), yaw)
    return (box[:, 2:] - box[:, :2]) - size


def _robust(errors: torch.Tensor) -> torch.Tensor:
    """Mean Huber loss (1 pixel) of errors: a partly hidden view taken for whole weighs little."""
    return torch.nn.functional.huber_loss(errors, torch.zeros_like(errors), delta=1.0)


def _fit_cube(cam: dict[str, torch.Tensor], center: torch.Tensor, size: torch.Tensor) -> float:
    """The cube half side whose boxes, each at its best-fitting turn, fit whole views of cubes best."""
    n = len(center)
    yaw = (torch.arange(_YAWS, dtype=torch.float64) * (math.pi / 2 / _YAWS)).repeat_interleave(n)
    shape = torch.full((n * _YAWS,), CUBE)
    scores = []
    for half in _CUBE_HALVES:
        trial = {**cam, "cube_half": torch.tensor(half, dtype=torch.float64)}
        errors = _size_errors(trial, shape, center.repeat(_YAWS, 1), size.repeat(_YAWS, 1), yaw).view(_YAWS, n, 2)
        best = errors.pow(2).sum(-1).argmin(0)
        scores.append(float(_robust(errors[best, torch.arange(n)])))
    return float(_CUBE_HALVES[int(np.argmin(scores))])


def _minimize(loss: Callable[[torch.Tensor], torch.Tensor], start: list[float], iterations: int) -> torch.Tensor:
    """L-BFGS (strong Wolfe line search) from `start`; the point it stops at, detached."""
    x = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss(x)
        value.backward()
        return value

    opt.step(closure)
    return x.detach()


def fit_camera(classes: np.ndarray, center: np.ndarray, size: np.ndarray, whole: np.ndarray, *,
               image_size: tuple[int, int], views: int = 2000, iterations: int = 40) -> Camera | None:
    """The camera and object sizes that best explain the boxes of whole views of objects.

    Each view's box center places its object on the floor (`Camera.floor_position`); the
    camera's numbers are fitted (L-BFGS on a robust loss) so that the boxes it predicts there
    have the widths and heights seen: first to spheres and cylinders (a sphere's radius is the
    unit of length; cylinders give their own radius and height), then the cube's size, each
    view of a cube at the turn that fits it best.

    Args:
        classes: (N, K) class ids; center, size: (N, K, T, 2) pixels; whole: (N, K, T), as
            `extract_tracks` measures them.
        image_size: (H, W) of the frames.
        views: fit to at most this many whole views (a fixed random subset).
        iterations: L-BFGS iterations from each of a few starting pitches.

    Returns:
        The fitted `Camera`, or None without a sphere and 20 whole views of round shapes (they
        fix the scale, the height and the pitch) or when no fit is a camera looking down.
    """
    shape, c, s = _whole_views(classes, center, size, whole, views)
    cube = shape == CUBE
    if int((~cube).sum()) < 20 or not bool((shape == SPHERE).any()):
        return None
    h, w = image_size
    principal = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    sphere = float(s[shape == SPHERE].prod(-1).sqrt().median())
    focal = h / (2 * math.tan(math.radians(20)))  # a usual field of view to start from

    def numbers(x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x = (log focal, pitch, log height, cylinder radius, cylinder half height)."""
        return {"focal": x[0].exp(), "pitch": x[1], "height": x[2].exp(), "cylinder_radius": x[3],
                "cylinder_half": x[4], "cube_half": torch.ones((), dtype=torch.float64), "principal": principal}

    def loss(x: torch.Tensor) -> torch.Tensor:
        return _robust(_size_errors(numbers(x), shape[~cube], c[~cube], s[~cube]))

    best: tuple[float, dict[str, torch.Tensor]] | None = None
    for pitch in (0.25, 0.6, 1.0):  # L-BFGS finds the nearest minimum: start from a few pitches
        height = 2 * focal / sphere * math.sin(pitch) + 1  # a sphere of the median size at the center
        x = _minimize(loss, [math.log(focal), pitch, math.log(height), 1.0, 1.0], iterations)
        with torch.no_grad():
            value, fitted = float(loss(x)), numbers(x)
        looks_down = 0 < float(fitted["pitch"]) < math.pi / 2 and min(
            float(fitted["cylinder_radius"]), float(fitted["cylinder_half"])) > 0
        if looks_down and math.isfinite(value) and (best is None or value < best[0]):
            best = (value, fitted)
    if best is None:
        return None
    cam = best[1]
    if cube.any():
        cam["cube_half"] = torch.tensor(_fit_cube(cam, c[cube], s[cube]), dtype=torch.float64)
    return Camera(**{k: float(cam[k]) for k in _NUMBERS}, image_size=(h, w))
