"""Simulate and render one scene with PyBullet: frames, exact masks and per-frame metadata.

One `World` per process (a PyBullet client holds the GIL and cannot be pickled); the world
is rebuilt from scratch for every video (`resetSimulation`), which makes a video depend only
on its scene plan.

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
from . import layout, scenes
from .scenes import ObjectPlan

# Kubric MOVi-A physics: (lateral friction, restitution, density)
MATERIAL_PHYSICS = {"metal": (0.4, 0.3, 2.7), "rubber": (0.8, 0.7, 1.1)}
FLOOR_FRICTION = 0.3
ROLLING_FRICTION = 0.002  # lets rolling spheres come to rest, as sliding objects do
GRAVITY = -9.81

LIGHT = {"lightAmbientCoeff": 0.55, "lightDiffuseCoeff": 0.55, "lightSpecularCoeff": 0.05}
NEAR, FAR = 0.1, 100.0
FLOOR_GRAY = 118.0
SHADOW_DARKEN = 0.45
_SHADOW_WINDOW = 40  # pixels around a shadow's center that it may darken


def _volume(shape: str) -> float:
    if shape == "cube":
        return (2 * scenes.CUBE_HALF) ** 3
    if shape == "sphere":
        return 4 / 3 * math.pi * scenes.RADIUS**3
    return math.pi * scenes.RADIUS**2 * 2 * scenes.RADIUS


def _floor_image(points: np.ndarray) -> np.ndarray:
    """The shadow-free floor, (H, W) gray levels: a soft spotlight falloff as in CLEVR renders."""
    dist2 = (points**2).sum(-1)
    return FLOOR_GRAY * (0.82 + 0.25 * np.exp(-dist2 / (2 * 4.5**2)))


class World:
    """A PyBullet client (DIRECT) that turns scene plans into rendered videos.

    Args:
        meshes: shape name -> OBJ file (see `meshes.write_meshes`).
    """

    def __init__(self, meshes: dict[str, Path]) -> None:
        self.meshes = {k: str(v) for k, v in meshes.items()}
        self.client = BulletClient(connection_mode=p.DIRECT)
        self.view = self.client.computeViewMatrix(scenes.CAMERA_EYE.tolist(),
                                                  scenes.CAMERA_TARGET.tolist(),
                                                  scenes.CAMERA_UP.tolist())
        self.projection = self.client.computeProjectionMatrixFOV(
            scenes.FOV_DEG, layout.WIDTH / layout.HEIGHT, 0.1, 100.0)
        self.floor_xy = scenes.floor_points()
        self.floor = _floor_image(self.floor_xy)
        light = scenes.LIGHT_DIRECTION / np.linalg.norm(scenes.LIGHT_DIRECTION)
        self.light = light
        self.rays = scenes.pixel_rays()
        self.shadow_shift = -light[:2] / light[2]  # floor offset of a shadow per unit of height

    # -- building ------------------------------------------------------------------------------

    def _reset(self) -> None:
        c = self.client
        c.resetSimulation()
        c.setPhysicsEngineParameter(deterministicOverlappingPairs=1, fixedTimeStep=1 / 240)
        c.setGravity(0, 0, GRAVITY)
        plane = c.createCollisionShape(p.GEOM_PLANE)
        # a visual far below the floor: without one, PyBullet would draw the collision plane
        hidden = c.createVisualShape(p.GEOM_SPHERE, radius=0.001, visualFramePosition=[0, 0, -50])
        floor = c.createMultiBody(0, plane, hidden)
        c.changeDynamics(floor, -1, lateralFriction=FLOOR_FRICTION, restitution=0.5)

    def _add(self, obj: ObjectPlan, position: np.ndarray) -> int:
        c = self.client
        shape, material, color = obj.attributes
        friction, restitution, density = MATERIAL_PHYSICS[material]
        rgb = np.array(COLOR_RGB[color]) / 255
        if shape == "cube":
            collision = c.createCollisionShape(p.GEOM_BOX, halfExtents=[scenes.CUBE_HALF] * 3)
            scale = [scenes.CUBE_HALF] * 3
        elif shape == "sphere":
            collision = c.createCollisionShape(p.GEOM_SPHERE, radius=scenes.RADIUS)
            scale = [scenes.RADIUS] * 3
        else:
            collision = c.createCollisionShape(p.GEOM_CYLINDER, radius=scenes.RADIUS,
                                               height=2 * scenes.RADIUS)
            scale = [scenes.RADIUS] * 3
        visual = c.createVisualShape(p.GEOM_MESH, fileName=self.meshes[shape], meshScale=scale,
                                     rgbaColor=[*rgb.tolist(), 1.0])
        height = scenes.CUBE_HALF if shape == "cube" else scenes.RADIUS
        body = c.createMultiBody(density * _volume(shape), collision, visual,
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
            if all(np.linalg.norm(position - o) > 2.4 * scenes.RADIUS for o in others):
                break
            position = position + 0.6 * scenes.RADIUS * back
        return position

    # -- rendering -----------------------------------------------------------------------------

    def _render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, _, rgba, depth, seg = self.client.getCameraImage(
            layout.WIDTH, layout.HEIGHT, self.view, self.projection,
            lightDirection=scenes.LIGHT_DIRECTION.tolist(), shadow=0,
            renderer=p.ER_TINY_RENDERER, **LIGHT)
        shape = (layout.HEIGHT, layout.WIDTH)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(*shape, 4)[..., :3]
        depth = np.asarray(depth, dtype=np.float64).reshape(shape)
        return rgb, np.asarray(seg, dtype=np.int64).reshape(shape), depth

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
            cap = (np.abs(local[:, 2]) > scenes.RADIUS - 0.02) & (radial < scenes.RADIUS - 0.005)
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
            points = scenes.CAMERA_EYE + rays * z[pixels][:, None]
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
        for pos in positions:
            center = pos[:2] + self.shadow_shift * pos[2]
            col, row = scenes.project(np.array([center[0], center[1], 0.0]))
            if not (-_SHADOW_WINDOW < col < layout.WIDTH + _SHADOW_WINDOW
                    and -_SHADOW_WINDOW < row < layout.HEIGHT + _SHADOW_WINDOW):
                continue
            # only a window around the shadow: a soft disc is a few dozen pixels wide at most
            r0, r1 = max(int(row) - _SHADOW_WINDOW, 0), min(int(row) + _SHADOW_WINDOW, layout.HEIGHT)
            c0, c1 = max(int(col) - _SHADOW_WINDOW, 0), min(int(col) + _SHADOW_WINDOW, layout.WIDTH)
            if r0 >= r1 or c0 >= c1:
                continue
            dist = np.sqrt(((self.floor_xy[r0:r1, c0:c1] - center) ** 2).sum(-1))
            # full shadow inside 0.8 R, fading out by 1.5 R
            edge = np.clip((dist - 0.8 * scenes.RADIUS) / (0.7 * scenes.RADIUS), 0, 1)
            window = shade[r0:r1, c0:c1]
            np.minimum(window, 1 - SHADOW_DARKEN * (1 - edge), out=window)
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
        """Simulate and render a scene: frames (22, H, W, 3) uint8, masks (22, H, W) uint8, meta."""
        self._reset()
        c = self.client
        bodies: dict[int, int] = {}  # object number in the plan -> body id
        frames = np.zeros((layout.FRAMES, layout.HEIGHT, layout.WIDTH, 3), np.uint8)
        masks = np.zeros((layout.FRAMES, layout.HEIGHT, layout.WIDTH), np.uint8)
        states: list[list[dict | None]] = []
        touching_before: set[tuple[int, int]] = set()
        events: list[dict] = []
        for t in range(layout.FRAMES):
            for k, obj in enumerate(plan):
                if obj.spawn_frame == t:
                    bodies[k] = self._add(obj, self._free_spot(obj, bodies) if t else obj.position)
            owner = {b: k for k, b in bodies.items()}
            touching: set[tuple[int, int]] = set()
            if t > 0:
                for _ in range(scenes.STEPS_PER_FRAME):
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
                "events": sorted(events + _view_events(plan, states),
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
            center = scenes.project(position)
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


def _visible(state: dict | None) -> bool:
    """In view: some pixels drawn, or (hidden behind another object) its center inside the image."""
    if state is None:
        return False
    col, row = state["pixel"]
    return state["pixels"] > 0 or (0 <= col < layout.WIDTH and 0 <= row < layout.HEIGHT)


def _view_events(plan: list[ObjectPlan], states: list[list[dict | None]]) -> list[dict]:
    """Enter and exit events: an object comes into / goes out of the image."""
    events = []
    for k, obj in enumerate(plan):
        seen = [_visible(frame[k]) for frame in states]
        for t in range(1, len(seen)):
            if seen[t] != seen[t - 1]:
                events.append({"type": "enter" if seen[t] else "exit", "frame": t,
                               "objects": [obj.class_id]})
    return events
