"""Objects placed by their silhouettes where their boxes are cut or partly hidden."""

from __future__ import annotations

import math

import numpy as np
import torch
from test_camera import CAMERA, SHAPE_CLASS, on_axis

from simvp_unet.objects.camera import CUBE, CYLINDER, SPHERE
from simvp_unet.objects.placing import (
    cube_turns,
    draw,
    fit_points,
    fit_pose,
    fit_position,
    whole_centers,
)
from simvp_unet.objects.silhouette import paint
from simvp_unet.objects.tracks import extract_tracks


def whole_box_center(shape: int, xy: np.ndarray, yaw: float) -> np.ndarray:
    """Where the center of the whole box of an object is, pixels (the camera's own box)."""
    box = CAMERA.boxes(np.array([shape]), xy[None], np.array([yaw]))[0]
    return (box[:2] + box[2:]) / 2


def slot(tracks, class_id: int) -> int:
    return int((tracks.classes[0] == class_id).nonzero()[0, 0])


def test_objects_cut_by_the_border_are_placed_where_their_whole_boxes_are():
    """An object entering the view shows part of itself: its visible box's center is pixels
    inward of the whole box's, and the silhouette fit puts it back to within a third of a pixel."""
    yaw = math.radians(25)
    for shape in (CUBE, SPHERE, CYLINDER):
        for edge in (0, 1):  # the left border, then the bottom one
            xy = on_axis(CAMERA)
            for _ in range(1000):  # move the object out until about a third of it is hidden
                box = CAMERA.boxes(np.array([shape]), xy[None], np.array([yaw]))[0]
                if (box[0] < -0.35 * (box[2] - box[0])) if edge == 0 else (box[3] > 160 + 0.35 * (box[3] - box[1])):
                    break
                xy = xy + ([-0.05, 0.0] if edge == 0 else [0.0, -0.05])
            mask = paint(CAMERA, [(SHAPE_CLASS[shape], shape, xy, yaw)])
            masks = torch.from_numpy(mask[None, None])
            tracks = extract_tracks(masks)
            k = slot(tracks, SHAPE_CLASS[shape])
            assert bool(tracks.cut[0, k, 0]) and not bool(tracks.whole[0, k, 0])
            truth = whole_box_center(shape, xy, yaw)
            seen = tracks.center[0, k, 0].double().numpy()
            placed = whole_centers(CAMERA, tracks, masks, cube_turns(CAMERA, tracks), tracks.center)[0, k, 0].numpy()
            assert np.linalg.norm(seen - truth) > 2, (shape, edge)
            assert np.linalg.norm(placed - truth) < 0.35, (shape, edge, placed, truth)


def test_a_partly_hidden_object_is_placed_by_what_shows_and_a_whole_one_where_it_is():
    """A cube seen whole in one frame and a third hidden behind a nearer sphere in the next: both
    sightings are placed where the cube is."""
    far = on_axis(CAMERA) + [0.5, 2.0]
    near = far + [0.6, -2.2]  # hides a third of it
    yaw = math.radians(40)
    # the sphere is in view in both frames (a class seen only beside another would be taken for
    # a piece of it, `extract_tracks`' flicker repair)
    frames = [paint(CAMERA, [(SHAPE_CLASS[CUBE], CUBE, far, yaw), (SHAPE_CLASS[SPHERE], SPHERE, near + [-6, 0], 0.0)]),
              paint(CAMERA, [(SHAPE_CLASS[CUBE], CUBE, far, yaw), (SHAPE_CLASS[SPHERE], SPHERE, near, 0.0)])]
    masks = torch.from_numpy(np.stack(frames)[None])
    tracks = extract_tracks(masks)
    k = slot(tracks, SHAPE_CLASS[CUBE])
    assert bool(tracks.whole[0, k, 0]) and not bool(tracks.whole[0, k, 1])
    truth = whole_box_center(CUBE, far, yaw)
    placed = whole_centers(CAMERA, tracks, masks, cube_turns(CAMERA, tracks), tracks.center)[0, k].numpy()
    assert np.linalg.norm(tracks.center[0, k, 1].double().numpy() - truth) > 1  # the hidden box is off
    assert np.linalg.norm(placed[1] - truth) < 0.35
    assert np.linalg.norm(placed[0] - truth) < 0.35


def test_a_sighting_the_camera_cannot_see_is_not_fitted():
    mask = paint(CAMERA, [(SHAPE_CLASS[SPHERE], SPHERE, on_axis(CAMERA), 0.0)])[None, None]
    above_the_horizon = np.array([[120.0, -200.0]])
    xy, fitted = fit_points(CAMERA, np.array([SPHERE]), above_the_horizon, np.zeros(1), mask, np.zeros(1, int),
                            np.zeros(1, int), np.array([SHAPE_CLASS[SPHERE]]))
    assert not fitted[0]


def test_a_whole_sighting_with_a_ragged_edge_is_placed_by_its_outline_not_its_extremes():
    """Three pixels a segmenter adds past an object's left edge widen its box by three and
    move its center by one and a half; the silhouette fit, which answers for all of the outline, does not
    follow them."""
    xy, cls = on_axis(CAMERA) + [1.0, 1.0], SHAPE_CLASS[SPHERE]
    mask = paint(CAMERA, [(cls, SPHERE, xy, 0.0)])
    rows, cols = np.nonzero(mask == cls)
    row = int(np.median(rows[cols == cols.min()]))
    mask[row, cols.min() - 3:cols.min()] = cls  # a spur on the left
    masks = torch.from_numpy(mask[None, None])
    tracks = extract_tracks(masks)
    k = slot(tracks, cls)
    assert bool(tracks.whole[0, k, 0])
    truth = whole_box_center(SPHERE, xy, 0.0)
    placed = whole_centers(CAMERA, tracks, masks, cube_turns(CAMERA, tracks), tracks.center)[0, k, 0].numpy()
    assert np.linalg.norm(tracks.center[0, k, 0].double().numpy() - truth) > 1
    assert np.linalg.norm(placed - truth) < 0.35


def test_a_cube_turned_since_its_template_is_fitted_in_place_and_turn():
    """The true-position row's fit: a cube seen at one turn in the input and at another in the
    true mask it is fitted to is drawn at that turn and place, where the template's turn alone
    leaves a mismatch of many pixels."""
    xy = on_axis(CAMERA) + [0.5, 1.0]
    before, after = math.radians(10), math.radians(50)
    masks = torch.from_numpy(paint(CAMERA, [(SHAPE_CLASS[CUBE], CUBE, xy, before)])[None, None])
    tracks = extract_tracks(masks)
    truth = paint(CAMERA, [(SHAPE_CLASS[CUBE], CUBE, xy + [0.3, -0.2], after)])
    visible, free = truth == SHAPE_CLASS[CUBE], truth == 0
    start = xy + [0.1, 0.1]
    turn_read = float(cube_turns(CAMERA, tracks)[0, slot(tracks, SHAPE_CLASS[CUBE])])
    kept = fit_position(CAMERA, CUBE, start, turn_read, visible, free)[1]
    place, turn, cost = fit_pose(CAMERA, CUBE, start, turn_read, visible, free)
    assert kept > 40 and cost < 10, (kept, cost)
    assert abs((turn - after + math.pi / 4) % (math.pi / 2) - math.pi / 4) < math.radians(2)
    assert np.linalg.norm(place - (xy + [0.3, -0.2])) < 0.05
    centers = torch.full((1, tracks.classes.shape[1], 2), math.nan, dtype=torch.float64)
    centers[0, slot(tracks, SHAPE_CLASS[CUBE])] = torch.from_numpy(whole_box_center(CUBE, start, before))
    drawn = draw(CAMERA, tracks, centers, fit_to=torch.from_numpy(truth)[None])[0].numpy()
    assert np.count_nonzero(drawn != truth) < 10  # the row draws it so


def test_training_reads_the_sightings_placed_as_served(tmp_path, tiny_config):
    """The dynamics trains on what it is served: once the run has a camera, every sighting of
    the training and validation videos is placed by its silhouette, inputs and targets. A
    cylinder sliding in from the left border and behind a nearer sphere is placed where its whole
    box is, while the box of what shows is a pixel or more off, and a resumed run
    (`on_fit_start`) places the sets it was given."""
    import simvp_unet.train.dynamics as dynamics
    from simvp_unet.data.layout import COMPETITION

    shape = CYLINDER
    xy = on_axis(CAMERA) + [0.0, 2.0]
    while CAMERA.boxes(np.array([shape]), xy[None], np.zeros(1))[0][0] > -12:
        xy = xy + [-0.05, 0.0]  # the first frame: half of it beyond the left border
    places = [xy + [0.12 * t, 0.0] for t in range(COMPETITION.frames)]
    near = places[14] + [0.6, -2.2]  # hides part of it from about frame 12 on
    masks = np.stack([paint(CAMERA, [(SHAPE_CLASS[shape], shape, p, 0.0), (SHAPE_CLASS[SPHERE], SPHERE, near, 0.0)])
                      for p in places]).astype(np.uint8)
    path = tmp_path / "mask.npy"
    np.save(path, masks)
    arrays = extract_tracks(torch.from_numpy(masks[None]), templates=False).arrays()
    arrays["pseudo"] = np.array([False])
    train, val = dynamics.TrackDataset(arrays, [path]), dynamics.TrackDataset(arrays, [path])
    module = dynamics.DynamicsModule(tiny_config("dynamics"))
    module.model.floor.set(CAMERA)
    module.use_datasets(train, val, progress=False)
    module.on_fit_start()  # a resumed run: the camera restored, nothing placed yet
    k = slot(extract_tracks(torch.from_numpy(masks[None])), SHAPE_CLASS[shape])
    truth = np.stack([whole_box_center(shape, p, 0.0) for p in places])
    for data in (train, val):
        placed, box = data.arrays["placed"][0, k].double().numpy(), data.arrays["center"][0, k].double().numpy()
        assert np.linalg.norm(box - truth, axis=-1).max() > 1  # hidden in part
        assert np.linalg.norm(placed - truth, axis=-1).max() < 0.5
    classes, present, center, size, placed, target, counts = dynamics.window(train.arrays, 0, COMPETITION)
    assert torch.equal(placed, train.arrays["placed"][:, : placed.shape[1], :11])
    assert torch.equal(target, train.arrays["placed"][:, : placed.shape[1], 11:])
    # without mask files (or a camera) the tracks stay box centers
    plain = dynamics.TrackDataset(arrays)
    dynamics.place_sightings(module.model, plain, progress=False)
    assert dynamics.window(plain.arrays, 0, COMPETITION)[4] is None
