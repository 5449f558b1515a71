"""Simulate and render one scene with PyBullet: frames, exact masks and per-frame metadata.

One `World` per process (a PyBullet client holds the GIL and cannot be pickled), built from
the world's settings (`scenes.WorldConfig`: camera, object size, frictions, frame rate) and the
task shape (frames per video, image size); the simulation is rebuilt from scratch for every
video (`resetSimulation`), which makes a video depend only on its scene plan.

Rendering: TinyRenderer draws only the objects (the floor is a collision plane with no
visual, which makes a frame ~7x cheaper); the floor, with soft blob shadows, is painted
analytically where the segmentation buffer is empty. Metal and rubber get one render pass
each, with a low and a high specular coefficient (TinyRenderer takes one per call); metal
pixels come from the high pass, chosen by the segmentation buffer, so metal shows strong
highlights and rubber stays matte.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pybullet as p
from pybullet_utils.bullet_client import BulletClient

from ..classes import COLOR_RGB, class_name
from .layout import COMPETITION, TaskShape
from .scenes import CAMERA_UP, DEFAULT_WORLD, LIGHT_DIRECTION, Camera, ObjectPlan, WorldConfig

# Kubric MOVi-A physics: (restitution, density); the frictions are the world's settings
MATERIAL_PHYSICS = {"metal": (0.3, 2.7), "rubber": (0.7, 1.1)}
ROLLING_FRICTION = 0.002  # lets rolling spheres come to rest, as sliding objects do
GRAVITY = -9.81

LIGHT = {"lightAmbientCoeff": 0.55, "lightDiffuseCoeff": 0.55, "lightSpecularCoeff": 0.05}
NEAR, FAR = 0.1, 100.0
FLOOR_GRAY = 118.0
SHADOW_DARKEN = 0.45
_SHADOW_WINDOW = 40  # pixels around a shadow's center that it may darken (at a height of 160)


def _volume(shape: str, world: WorldConfig) -> float:
    if shape == "cube":
        return (2 * world.cube_half) ** 3
    if shape == "sphere":
        return 4 / 3 * math.pi * world.radius**3
    return math.pi * world.radius**2 * 2 * world.radius


def _floor_image(points: np.ndarray) -> np.ndarray:
    """The shadow-free floor, (H, W) gray levels: a soft spotlight falloff as in CLEVR renders."""
    dist2 = (points**2).sum(-1)
    return FLOOR_GRAY * (0.82 + 0.25 * np.exp(-dist2 / (2 * 4.5**2)))


class World:
    """A PyBullet client (DIRECT) that turns scene plans into rendered videos.

    Args:
        meshes: shape name -> OBJ file (see `meshes.write_meshes`).
        world: camera, object size, frictions and frame rate.
        shape: frames per video and image size.
    """

    def __init__(self, meshes: dict[str, Path], *, world: WorldConfig = DEFAULT_WORLD,
                 shape: TaskShape = COMPETITION) -> None:
        self.meshes = {k: str(v) for k, v in meshes.items()}
        self.config, self.task_shape = world, shape
        self.camera = Camera(world, shape)
        self.friction = {"metal": world.metal_friction, "rubber": world.rubber_friction}
        self.client = BulletClient(connection_mode=p.DIRECT)
        self.view = self.client.computeViewMatrix(list(world.camera_eye), list(world.camera_target),
                                                  CAMERA_UP.tolist())
        self.projection = self.client.computeProjectionMatrixFOV(
            world.fov, shape.width / shape.height, NEAR, FAR)
        self.floor_xy = self.camera.floor_points()
        self.floor = _floor_image(self.floor_xy)
        light = LIGHT_DIRECTION / np.linalg.norm(LIGHT_DIRECTION)
        self.light = light
        self.rays = self.camera.pixel_rays()
        self.shadow_shift = -light[:2] / light[2]  # floor offset of a shadow per unit of height
        self.shadow_window = round(_SHADOW_WINDOW * shape.height / COMPETITION.height)

    # -- building ------------------------------------------------------------------------------

    def _reset(self) -> None:
        c = self.client
        c.resetSimulation()
        c.setPhysicsEngineParameter(deterministicOverlappingPairs=1,
                                    fixedTimeStep=1 / self.config.physics_hz)
        c.setGravity(0, 0, GRAVITY)
        plane = c.createCollisionShape(p.GEOM_PLANE)
        # a visual far below the floor: without one, PyBullet would draw the collision plane
        hidden = c.createVisualShape(p.GEOM_SPHERE, radius=0.001, visualFramePosition=[0, 0, -50])
        floor = c.createMultiBody(0, plane, hidden)
        c.changeDynamics(floor, -1, lateralFriction=self.config.floor_friction, restitution=0.5)

    def _add(self, obj: ObjectPlan, position: np.ndarray) -> int:
        c, radius, half = self.client, self.config.radius, self.config.cube_half
        shape, material, color = obj.attributes
        friction = self.friction[material]
        restitution, density = MATERIAL_PHYSICS[material]
        rgb = np.array(COLOR_RGB[color]) / 255
        if shape == "cube":
            collision = c.createCollisionShape(p.GEOM_BOX, halfExtents=[half] * 3)
            scale = [half] * 3
        elif shape == "sphere":
            collision = c.createCollisionShape(p.GEOM_SPHERE, radius=radius)
            scale = [radius] * 3
        else:
            collision = c.createCollisionShape(p.GEOM_CYLINDER, radius=radius, height=2 * radius)
            scale = [radius] * 3
        visual = c.createVisualShape(p.GEOM_MESH, fileName=self.meshes[shape], meshScale=scale,
                                     rgbaColor=[*rgb.tolist(), 1.0])
        height = half if shape == "cube" else radius
        body = c.createMultiBody(density * _volume(shape, self.config), collision, visual,
                                 basePosition=[float(position[0]), float(position[1]), height],
                                 baseOrientation=c.getQuaternionFromEuler([0, 0, obj.yaw]))
        c.changeDynamics(body, -1, lateralFriction=friction, restitution=restitution,
                         rollingFriction=ROLLING_FRICTION, spinningFriction=ROLLING_FRICTION,
                         linearDamping=0.0, angularDamping=0.0)
        c.resetBaseVelocity(body, linearVelocity=[*obj.velocity, 0.0])
        return body

    def _free_spot(self, obj: ObjectPlan, bodies: dict[int, int]) -> np.ndarray:
        """The object's planned start, pushed back along its path while it would overlap a body."""
        position = np.array(obj.position)
        velocity = np.array(obj.velocity)
        back = -velocity / (np.linalg.norm(velocity) or 1.0)
        others = [np.array(self.client.getBasePositionAndOrientation(b)[0][:2]) for b in bodies.values()]
        for _ in range(50):
            if all(np.linalg.norm(position - o) > 2.4 * self.config.radius for o in others):
                break
            position = position + 0.6 * self.config.radius * back
        return position

    # -- rendering -----------------------------------------------------------------------------

    def _render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        size = self.task_shape.size
        _, _, rgba, depth, seg = self.client.getCameraImage(
            self.task_shape.width, self.task_shape.height, self.view, self.projection,
            lightDirection=LIGHT_DIRECTION.tolist(), shadow=0,
            renderer=p.ER_TINY_RENDERER, **LIGHT)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(*size, 4)[..., :3]
        depth = np.asarray(depth, dtype=np.float64).reshape(size)
        return rgb, np.asarray(seg, dtype=np.int64).reshape(size), depth

    def _normals(self, shape: str, body: int, points: np.ndarray) -> np.ndarray:
        """Exact surface normals (N, 3) of a body at surface points (N, 3)."""
        position, orientation = self.client.getBasePositionAndOrientation(body)
        rotation = np.array(self.client.getMatrixFromQuaternion(orientation)).reshape(3, 3)
        local = (points - np.array(position)) @ rotation  # body frame
        if shape == "sphere":
            normals = local
        elif shape == "cube":
            axis = np.abs(local).argmax(-1)
            normals = np.zeros_like(local)
            rows = np.arange(len(local))
            normals[rows, axis] = np.sign(local[rows, axis])
        else:  # cylinder along the body's z axis: points at cap height are on a cap
            radial = np.linalg.norm(local[:, :2], axis=-1)
            # the depth buffer is a little noisy: a tolerance keeps the rim from fraying
            radius = self.config.radius
            cap = (np.abs(local[:, 2]) > radius - 0.02) & (radial < radius - 0.005)
            normals = np.where(cap[:, None], np.stack([0 * radial, 0 * radial, np.sign(local[:, 2])], -1),
                               np.concatenate([local[:, :2], np.zeros((len(local), 1))], -1))
        normals = normals @ rotation.T  # back to the world frame
        return normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-9)

    def _metal(self, rgb: np.ndarray, seg: np.ndarray, depth: np.ndarray,
               metal: dict[int, tuple[str, np.ndarray]]) -> np.ndarray:
        """Shade metal pixels as a mirror of a simple studio: bright sky, a sharp highlight toward
        the key light, the gray floor below the horizon, tinted by the object's color."""
        z = FAR * NEAR / (FAR - (FAR - NEAR) * depth)  # camera-space depth
        out = rgb.copy()
        for body, (shape, color) in metal.items():
            pixels = seg == body
            if not pixels.any():
                continue
            rays = self.rays[pixels]
            points = self.camera.eye + rays * z[pixels][:, None]
            normals = self._normals(shape, body, points)
            view = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
            reflect = view - 2 * (view * normals).sum(-1, keepdims=True) * normals
            up = reflect[:, 2]
            sky = 1.0 + 0.5 * np.clip(up, 0, 1)
            # the floor seen in the mirror: darker toward the horizon's foot, like CLEVR's metal
            ground = 0.32 + 0.3 * np.clip(-up, 0, 1)
            env = ground + (sky - ground) * np.clip(up / 0.1 + 0.5, 0, 1)  # soft horizon
            aligned = np.clip(reflect @ self.light, 0, 1)
            highlight = 1.5 * aligned**60 + 0.25 * aligned**6
            lit = 0.2 + 0.4 * np.clip(normals @ self.light, 0, 1)
            value = color * (0.7 * env + 0.3 * lit)[:, None] + 255 * highlight[:, None]
            out[pixels] = value.clip(0, 255).astype(np.uint8)
        return out

    def _floor_with_shadows(self, positions: list[np.ndarray]) -> np.ndarray:
        shade = np.ones(self.floor.shape)
        window, (height, width), radius = self.shadow_window, self.task_shape.size, self.config.radius
        for pos in positions:
            center = pos[:2] + self.shadow_shift * pos[2]
            col, row = self.camera.project(np.array([center[0], center[1], 0.0]))
            if not (-window < col < width + window and -window < row < height + window):
                continue
            # only a window around the shadow: a soft disc is a few dozen pixels wide at most
            r0, r1 = max(int(row) - window, 0), min(int(row) + window, height)
            c0, c1 = max(int(col) - window, 0), min(int(col) + window, width)
            if r0 >= r1 or c0 >= c1:
                continue
            dist = np.sqrt(((self.floor_xy[r0:r1, c0:c1] - center) ** 2).sum(-1))
            # full shadow inside 0.8 R, fading out by 1.5 R
            edge = np.clip((dist - 0.8 * radius) / (0.7 * radius), 0, 1)
            shaded = shade[r0:r1, c0:c1]
            np.minimum(shaded, 1 - SHADOW_DARKEN * (1 - edge), out=shaded)
        gray = (self.floor * shade).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)

    def _frame(self, bodies: dict[int, int], metal: dict[int, tuple[str, np.ndarray]]
               ) -> tuple[np.ndarray, np.ndarray]:
        rgb, seg, depth = self._render()
        if metal:
            rgb = self._metal(rgb, seg, depth, metal)
        positions = [np.array(self.client.getBasePositionAndOrientation(b)[0]) for b in bodies.values()]
        rgb = np.where((seg < 0)[..., None], self._floor_with_shadows(positions), rgb)
        return rgb, seg

    # -- one video -----------------------------------------------------------------------------

    def run(self, plan: list[ObjectPlan]) -> tuple[np.ndarray, np.ndarray, dict]:
        """Simulate and render a scene: frames (T, H, W, 3) uint8, masks (T, H, W) uint8, meta
        (T frames of H x W: the task shape's)."""
        self._reset()
        c = self.client
        bodies: dict[int, int] = {}  # object number in the plan -> body id
        size = (self.task_shape.frames, *self.task_shape.size)
        frames = np.zeros((*size, 3), np.uint8)
        masks = np.zeros(size, np.uint8)
        states: list[list[dict | None]] = []
        touching_before: set[tuple[int, int]] = set()
        events: list[dict] = []
        for t in range(self.task_shape.frames):
            for k, obj in enumerate(plan):
                if obj.spawn_frame == t:
                    bodies[k] = self._add(obj, self._free_spot(obj, bodies) if t else obj.position)
            owner = {b: k for k, b in bodies.items()}
            touching: set[tuple[int, int]] = set()
            if t > 0:
                for _ in range(self.config.steps_per_frame):
                    c.stepSimulation()
                    for contact in c.getContactPoints():
                        a, b = owner.get(contact[1]), owner.get(contact[2])
                        if a is not None and b is not None:
                            touching.add((min(a, b), max(a, b)))
            for pair in sorted(touching - touching_before):
                events.append({"type": "collision", "frame": t,
                               "objects": [plan[pair[0]].class_id, plan[pair[1]].class_id]})
            touching_before = touching
            metal = {b: (plan[k].attributes[0], np.array(COLOR_RGB[plan[k].attributes[2]], float))
                     for k, b in bodies.items() if plan[k].attributes[1] == "metal"}
            rgb, seg = self._frame(bodies, metal)
            lut = np.zeros(max(bodies.values(), default=0) + 2, np.uint8)  # index = body id + 1
            for k, b in bodies.items():
                lut[b + 1] = plan[k].class_id
            frames[t] = rgb
            masks[t] = lut[seg + 1]
            states.append(self._states(plan, bodies, seg))
        meta = {"objects": [_object_meta(o) for o in plan],
                "frames": [{"t": t, "objects": s} for t, s in enumerate(states)],
                "events": sorted(events + _view_events(plan, states, self.task_shape),
                                 key=lambda e: (e["frame"], e["type"], e["objects"]))}
        return frames, masks, meta

    def _states(self, plan: list[ObjectPlan], bodies: dict[int, int], seg: np.ndarray) -> list:
        counts = np.bincount(seg.ravel() + 1, minlength=max(bodies.values(), default=0) + 2)
        states = []
        for k, obj in enumerate(plan):
            if k not in bodies:
                states.append(None)
                continue
            b = bodies[k]
            position = np.array(self.client.getBasePositionAndOrientation(b)[0])
            box = None
            if counts[b + 1]:
                rows, cols = np.nonzero(seg == b)
                box = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
            center = self.camera.project(position)
            states.append({"class_id": obj.class_id,
                           "position": [round(float(v), 4) for v in position],
                           "pixel": [round(float(v), 2) for v in center],
                           "box": box, "pixels": int(counts[b + 1])})
        return states


def _object_meta(obj: ObjectPlan) -> dict:
    shape, material, color = obj.attributes
    return {"class_id": obj.class_id, "name": class_name(obj.class_id), "shape": shape,
            "material": material, "color": color, "spawn_frame": obj.spawn_frame,
            "start": [round(float(v), 4) for v in obj.position],
            "velocity": [round(float(v), 4) for v in obj.velocity]}


def _visible(state: dict | None, shape: TaskShape) -> bool:
    """In view: some pixels drawn, or (hidden behind another object) its center inside the image."""
    if state is None:
        return False
    col, row = state["pixel"]
    return state["pixels"] > 0 or (0 <= col < shape.width and 0 <= row < shape.height)


def _view_events(plan: list[ObjectPlan], states: list[list[dict | None]], shape: TaskShape) -> list[dict]:
    """Enter and exit events: an object comes into / goes out of the image."""
    events = []
    for k, obj in enumerate(plan):
        seen = [_visible(frame[k], shape) for frame in states]
        for t in range(1, len(seen)):
            if seen[t] != seen[t - 1]:
                events.append({"type": "enter" if seen[t] else "exit", "frame": t,
                               "objects": [obj.class_id]})
    return events
