"""The fitted camera and the silhouettes it draws, on scenes made by a known camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simvp_unet.classes import class_id
from simvp_unet.objects.camera import CUBE, CYLINDER, SPHERE, Camera, FloorSpace, fit_camera
from simvp_unet.objects.placing import estimate_yaws, fit_points, fit_position
from simvp_unet.objects.silhouette import paint
from simvp_unet.objects.tracks import extract_tracks

# about the generator's CLEVR camera (lengths in sphere radii: a cube's half side is 0.9)
CAMERA = Camera(focal=262.5, pitch=0.494, height=13.35, cube_half=0.9)
SHAPE_CLASS = {CUBE: class_id("cube", "rubber", "red"), SPHERE: class_id("sphere", "metal", "blue"),
               CYLINDER: class_id("cylinder", "rubber", "green")}


def on_axis(camera: Camera) -> np.ndarray:
    """The floor point under a sphere whose center is on the optical axis."""
    return np.array([0.0, (camera.height - 1) / math.tan(camera.pitch)])


def pixel_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the True pixels, as `extract_tracks` measures boxes."""
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def test_sphere_on_the_optical_axis_is_the_analytic_disc():
    xy = on_axis(CAMERA)
    mask = paint(CAMERA, [(1, SPHERE, xy, 0.0)]) == 1
    distance = (CAMERA.height - 1) / math.sin(CAMERA.pitch)
    radius = CAMERA.focal / math.sqrt(distance**2 - 1)  # the tangent cone's image: a circle
    v, u = np.mgrid[: mask.shape[0], : mask.shape[1]] + 0.5
    r = np.hypot(u - CAMERA.principal[0], v - CAMERA.principal[1])
    assert mask[r < radius - 0.01].all() and not mask[r > radius + 0.01].any()


def test_nearer_sphere_is_larger_and_lower():
    near, far = on_axis(CAMERA) + [0, -6], on_axis(CAMERA) + [0, 8]
    masks = [paint(CAMERA, [(1, SPHERE, xy, 0.0)]) == 1 for xy in (near, far)]
    areas = [m.sum() for m in masks]
    depths = CAMERA.depth(np.array([SPHERE, SPHERE]), np.stack([near, far]))
    assert areas[0] > 2 * areas[1]
    assert areas[0] / areas[1] == pytest.approx((depths[1] / depths[0]) ** 2, rel=0.05)  # size ~ 1 / depth
    assert pixel_box(masks[0])[1] > pixel_box(masks[1])[3]  # entirely below the far one


def test_cube_turned_an_eighth_is_wider_and_a_quarter_turn_is_the_same():
    xy = on_axis(CAMERA)
    square, eighth, quarter = (paint(CAMERA, [(1, CUBE, xy, yaw)]) == 1 for yaw in (0, math.pi / 4, math.pi / 2))
    assert np.array_equal(square, quarter)
    width = [pixel_box(m)[2] - pixel_box(m)[0] for m in (square, eighth)]
    side = 2 * CAMERA.cube_half * CAMERA.focal / CAMERA.depth(np.array(CUBE), xy)  # a side at the center's depth
    assert width[0] == pytest.approx(side, abs=1.5)
    assert width[1] == pytest.approx(math.sqrt(2) * side, abs=1.5)  # the diagonal across the view


def test_boxes_hold_the_silhouettes_and_the_floor_point_comes_back_from_the_box_center():
    rng = np.random.default_rng(0)
    shapes = np.array([CUBE, SPHERE, CYLINDER] * 4)
    xy = on_axis(CAMERA) + rng.uniform(-4, 4, (len(shapes), 2))
    yaw = rng.uniform(0, math.pi / 2, len(shapes))
    boxes = CAMERA.boxes(shapes, xy, yaw)
    for k, shape in enumerate(shapes):
        mask = paint(CAMERA, [(1, int(shape), xy[k], yaw[k])]) == 1
        # a pixel is drawn when its center is inside: no pixel box edge is more than half a pixel
        # outside the box, or a pixel inside it (a cube's corner may fall between pixel centers)
        inward = (np.array(pixel_box(mask)) - boxes[k]) * [1, 1, -1, -1]
        assert inward.min() >= -0.5 - 1e-6 and inward.max() <= 1, shape
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert np.allclose(CAMERA.floor_position(shapes, centers, yaw), xy, atol=1e-6)


def test_nearer_object_hides_the_farther_whatever_the_order():
    far = on_axis(CAMERA)
    near = far + [0.3, -2.5]
    objects = [(1, CYLINDER, far, 0.0), (2, SPHERE, near, 0.0)]
    mask = paint(CAMERA, objects)
    assert np.array_equal(mask, paint(CAMERA, objects[::-1]))
    alone = paint(CAMERA, objects[:1]) == 1
    hidden = alone & (mask == 2)
    assert hidden.any() and (mask == 2).sum() == (paint(CAMERA, objects[1:]) == 2).sum()


def test_cube_turn_and_place_read_back_from_masks():
    """A cube's turn is read from its mask to a few degrees (the silhouettes it is compared with
    are placed by the mask's box, whole pixels), and its place from part of its mask exactly."""
    xy = on_axis(CAMERA) + [1.0, 2.0]
    for degrees in (10, 33, 71):
        yaw = math.radians(degrees)
        mask = paint(CAMERA, [(SHAPE_CLASS[CUBE], CUBE, xy, yaw)])
        tracks = extract_tracks(torch.from_numpy(mask[None, None]))
        template = tracks.templates[0][int((tracks.classes[0] == SHAPE_CLASS[CUBE]).nonzero()[0, 0])]
        found = estimate_yaws(CAMERA, [template])[0]
        assert abs((found - yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4) < math.radians(3.5), degrees
    # a place read from the mask alone, with half of the cube hidden behind something near
    visible = mask == SHAPE_CLASS[CUBE]
    cols = np.nonzero(visible.any(0))[0]
    hider = np.zeros_like(visible)
    hider[:, : (cols.min() + cols.max()) // 2] = True
    start = xy + [0.4, -0.3]
    shown = np.where(hider, SHAPE_CLASS[SPHERE], np.where(visible, SHAPE_CLASS[CUBE], 0))  # the hider: another object
    uv = CAMERA.project(np.array([*start, CAMERA.cube_half]))
    place, fitted = fit_points(CAMERA, np.array([CUBE]), uv[None], np.array([yaw]), shown[None, None], np.zeros(1, int),
                               np.zeros(1, int), np.array([SHAPE_CLASS[CUBE]]))
    assert fitted[0] and np.linalg.norm(place[0] - xy) < 0.05
    place, cost = fit_position(CAMERA, CUBE, start, yaw, visible & ~hider, ~visible & ~hider)  # one at a time, finely
    assert cost == 0 and np.linalg.norm(place - xy) < 0.05


def test_fit_recovers_the_camera_from_boxes_of_rendered_masks():
    """Videos of three objects sliding across the floor, rendered by a known camera: the camera
    fitted to the boxes of their whole views is the known one."""
    rng = np.random.default_rng(1)
    camera = Camera(focal=240.0, pitch=0.6, height=11.0, cube_half=0.85, cylinder_radius=1.1, cylinder_half=0.9)
    videos = []
    for _ in range(24):
        start = on_axis(camera) + rng.uniform(-5, 5, (3, 2))
        step = rng.uniform(-0.5, 0.5, (3, 2))
        yaw = rng.uniform(0, math.pi / 2)
        frames = [paint(camera, [(SHAPE_CLASS[s], s, start[k] + step[k] * t, yaw) for k, s in
                                 enumerate((CUBE, SPHERE, CYLINDER))]) for t in range(6)]
        videos.append(np.stack(frames))
    tracks = extract_tracks(torch.from_numpy(np.stack(videos)), templates=False)
    fitted = fit_camera(tracks.classes.numpy(), tracks.center.numpy(), tracks.size.numpy(),
                        tracks.whole.numpy(), image_size=camera.image_size)
    assert fitted is not None
    assert fitted.pitch == pytest.approx(camera.pitch, abs=math.radians(1.5))
    for name in ("focal", "height", "cube_half", "cylinder_radius", "cylinder_half"):
        assert getattr(fitted, name) == pytest.approx(getattr(camera, name), rel=0.04), name


def test_fit_needs_whole_spheres():
    classes = np.full((2, 1), SHAPE_CLASS[CUBE])
    views = np.ones((2, 1, 11), bool)
    center = np.full((2, 1, 11, 2), 80.0)
    assert fit_camera(classes, center, center / 4, views, image_size=(160, 240)) is None
    with pytest.raises(ValueError, match="pitch"):
        Camera(focal=200.0, pitch=-0.1, height=10.0)


def test_floor_space_moves_uniformly_where_the_floor_does():
    """A sphere sliding at one speed covers fewer pixels a frame far away than near, but equal
    steps of the floor space, the camera it holds comes back, and pixels map back to themselves."""
    floor = FloorSpace(image_size=CAMERA.image_size)
    assert not floor.fitted and floor.camera() is None
    floor.set(CAMERA)
    assert floor.fitted and floor.camera() == CAMERA
    start = on_axis(CAMERA) + np.array([-3.0, 6.0])
    path = start + np.arange(11)[:, None] * np.array([0.4, -0.9])  # toward the camera, sphere radii
    pixels = torch.from_numpy(CAMERA.project(np.c_[path, np.ones(11)])).float()
    steps = pixels.diff(dim=0).norm(dim=-1)
    assert float(steps[-1]) > 1.2 * float(steps[0])  # nearer: more pixels a frame
    g = floor.to_floor(pixels)
    floor_steps = g.diff(dim=0).norm(dim=-1) / FloorSpace.SCALE
    assert torch.allclose(floor_steps, torch.full_like(floor_steps, math.hypot(0.4, 0.9)), rtol=1e-3)
    assert torch.allclose(floor.to_image(g), pixels, atol=1e-3)


def test_render_pastes_templates_near_their_place_and_draws_travelled_objects_as_shapes():
    """With a camera, an object that stays within `TEMPLATE_REACH` of where its template was cut
    is its template, shifted; one that travelled further is its 3D shape where its box is
    centered; without a camera both are templates."""
    from simvp_unet.objects.ground import GroundPlane
    from simvp_unet.objects.render import TEMPLATE_REACH, render

    sphere_xy, cube_xy = on_axis(CAMERA) + [-2.5, 1.0], on_axis(CAMERA) + [2.5, -1.0]
    scene = [(SHAPE_CLASS[SPHERE], SPHERE, sphere_xy, 0.0), (SHAPE_CLASS[CUBE], CUBE, cube_xy, math.radians(20))]
    mask = paint(CAMERA, scene)
    tracks = extract_tracks(torch.from_numpy(mask[None, None]))
    slot = {int(c): k for k, c in enumerate(tracks.classes[0].tolist()) if c}
    centers = tracks.center[:, :, 0].clone()
    centers[0, slot[SHAPE_CLASS[CUBE]]] += torch.tensor([2.0, 0.0])  # within reach: the template
    travel = torch.tensor([0.0, 4 * TEMPLATE_REACH])
    centers[0, slot[SHAPE_CLASS[SPHERE]]] += travel  # nearer the camera: a larger sphere
    plane = GroundPlane(image_size=CAMERA.image_size)
    drawn = render(tracks, centers, plane, camera=CAMERA)[0].numpy()

    cube = mask == SHAPE_CLASS[CUBE]
    assert np.array_equal(drawn == SHAPE_CLASS[CUBE], np.roll(cube, 2, axis=1))
    new_center = centers[0, slot[SHAPE_CLASS[SPHERE]]].double().numpy()[None]
    sphere_there = paint(CAMERA, [(SHAPE_CLASS[SPHERE], SPHERE, CAMERA.floor_position(np.array([SPHERE]), new_center)[0],
                                   0.0)]) == SHAPE_CLASS[SPHERE]
    assert np.array_equal(drawn == SHAPE_CLASS[SPHERE], sphere_there)
    assert sphere_there.sum() > (mask == SHAPE_CLASS[SPHERE]).sum()
    pasted = render(tracks, centers, plane)[0].numpy() == SHAPE_CLASS[SPHERE]
    assert pasted.sum() == (mask == SHAPE_CLASS[SPHERE]).sum()  # the unfitted plane keeps its size
    # a forecast beyond the horizon, or one that overflowed, draws nothing and stops nothing
    for far in ([120.0, -1000.0], [1e30, 1e30]):
        centers[0, slot[SHAPE_CLASS[SPHERE]]] = torch.tensor(far)
        drawn = render(tracks, centers, plane, camera=CAMERA)[0].numpy()
        assert not (drawn == SHAPE_CLASS[SPHERE]).any() and (drawn == SHAPE_CLASS[CUBE]).any()
