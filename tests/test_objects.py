"""Objects from masks, motion and rendering, on synthetic masks where the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simvp_unet.objects import DynamicsNet, DynamicsNetConfig, extract_tracks, render
from simvp_unet.objects.motion import constant_velocity, fill_gaps, fit_constant_velocity
from simvp_unet.objects.tracks import drop_small_blobs, positions_in

H, W = 160, 240
RED_CUBE, BLUE_SPHERE, GREEN_CYL = 10, 27, 36


def square_video(frames: int, start: tuple[float, float], step: tuple[float, float], *, side: int = 16,
                 class_id: int = RED_CUBE, masks: np.ndarray | None = None) -> np.ndarray:
    """(T, H, W) class ids with a square moving at constant velocity (painted over `masks`)."""
    out = np.zeros((frames, H, W), np.uint8) if masks is None else masks
    for t in range(frames):
        x, y = start[0] + step[0] * t, start[1] + step[1] * t
        top, left = int(round(y - side / 2)), int(round(x - side / 2))
        out[t, max(top, 0):max(top + side, 0), max(left, 0):max(left + side, 0)] = class_id
    return out


def cv_net() -> DynamicsNet:
    net = DynamicsNet(DynamicsNetConfig())
    net.set_constant_velocity(frames=1, damping=1.0)
    return net


def test_constant_velocity_square_is_forecast_exactly():
    video = square_video(22, (40, 50), (4, 2))
    tracks = extract_tracks(torch.from_numpy(video[None, :11]))
    assert tracks.classes[0].tolist().count(RED_CUBE) == 1
    net = cv_net()
    centers = net(tracks.classes, tracks.present, tracks.center, learned=False)
    slot = int((tracks.classes[0] == RED_CUBE).nonzero()[0, 0])
    assert torch.allclose(centers[0, slot, -1], torch.tensor([40 + 4 * 21, 50 + 2 * 21.0]), atol=1e-3)
    mask = render(tracks, centers[:, :, -1], net.plane)
    assert torch.equal(mask[0], torch.from_numpy(video[21]).long())


def test_untrained_network_equals_the_simulation():
    """Before training, the learned forecast is the fitted physics alone (the network's last
    layers start at zero)."""
    video = np.stack([square_video(11, (40, 50), (3, 1)), square_video(11, (150, 90), (-2, 0.5),
                                                                          class_id=BLUE_SPHERE)])
    tracks = extract_tracks(torch.from_numpy(video))
    net = DynamicsNet(DynamicsNetConfig())
    with torch.no_grad():
        learned = net(tracks.classes, tracks.present, tracks.center, learned=True)
        filled = fill_gaps(tracks.present, net.to_space(tracks.center))
        physics = net.physics
        simulated = physics.from_metric(physics.simulate(physics.to_metric(filled), tracks.classes, 11,
                                                         present=tracks.present, scale=net.pixel_scale(filled)))
    valid = tracks.valid
    assert torch.allclose(learned[valid], net.to_pixels(simulated)[valid], atol=1e-3)
    assert not torch.allclose(learned[valid], net(tracks.classes, tracks.present, tracks.center,
                                                         learned=False)[valid], atol=0.1)  # friction


def test_occluded_object_keeps_its_track():
    video = square_video(11, (40, 80), (5, 0))
    video[4:7][video[4:7] == RED_CUBE] = 0  # hidden for 3 frames
    tracks = extract_tracks(torch.from_numpy(video[None]))
    slot = int((tracks.classes[0] == RED_CUBE).nonzero()[0, 0])
    assert tracks.present[0, slot].tolist() == [True] * 4 + [False] * 3 + [True] * 4
    filled = fill_gaps(tracks.present, tracks.center)
    assert torch.allclose(filled[0, slot, :, 0], torch.tensor([40 + 5.0 * t for t in range(11)]), atol=1e-3)


def test_object_split_by_occluder_is_one_object():
    video = square_video(11, (60, 80), (2, 0), side=20)
    video[:, :, 55:60][video[:, :, 55:60] == RED_CUBE] = GREEN_CYL  # a thin bar in front of it
    tracks = extract_tracks(torch.from_numpy(video[None]), min_pixels=0)
    slot = int((tracks.classes[0] == RED_CUBE).nonzero()[0, 0])
    assert tracks.center[0, slot, 0, 0] == pytest.approx(60, abs=0.6)


def test_border_cut_object_center_is_not_biased():
    video = square_video(11, (30, 80), (-3, 0), side=20)  # leaves through the left border
    tracks = extract_tracks(torch.from_numpy(video[None]))
    slot = int((tracks.classes[0] == RED_CUBE).nonzero()[0, 0])
    assert bool(tracks.cut[0, slot, -1])
    assert tracks.center[0, slot, -1, 0] == pytest.approx(30 - 3 * 10, abs=0.6)  # a plain box says 5
    assert tracks.size[0, slot, -1, 0] == pytest.approx(20, abs=0.6)


def test_entering_object_cut_in_every_frame_gets_its_whole_center():
    """An object entering through the left border, never seen whole: its box keeps its inner
    edge and gets the width the ground plane expects, so its center is not biased inward."""
    video = square_video(11, (-8, 80), (1.5, 0), side=20)  # x from -8 to 7: cut in every frame
    tracks = extract_tracks(torch.from_numpy(video[None]))
    slot = int((tracks.classes[0] == RED_CUBE).nonzero()[0, 0])
    assert bool(tracks.present[0, slot].all()) and bool(tracks.cut[0, slot].all())
    plane = DynamicsNet(DynamicsNetConfig()).plane
    plane.shape_size.fill_(20.0)  # whole objects are 20 x 20 pixels everywhere (flat plane)
    fixed = plane.uncut(tracks.classes, tracks.present, tracks.center, tracks.size)
    true_x = torch.tensor([-8 + 1.5 * t for t in range(11)])
    assert torch.allclose(fixed[0, slot, :, 0], true_x, atol=0.6)
    assert (tracks.center[0, slot, :, 0] - true_x).min() >= 0.9  # biased inward (to the right) before
    whole = plane.uncut(tracks.classes, tracks.present, tracks.center + 50, tracks.size)
    assert torch.equal(whole, tracks.center + 50)  # boxes inside the image are left alone


def test_velocity_of_an_object_that_just_appeared():
    """An object first seen at frame 10 moving 4 px a frame: its velocity over a 3-frame span is
    4, not the 4/3 that positions held before its first sighting would give."""
    from simvp_unet.objects.motion import velocity, velocity_span

    present = torch.tensor([[False] * 9 + [True, True], [False] * 10 + [True], [True] * 11])
    center = torch.zeros(3, 11, 2)
    center[:, :, 0] = 4.0 * torch.arange(11.0)
    filled = fill_gaps(present, center)
    assert velocity_span(present, 3).tolist() == [1, 0, 3]
    assert velocity(filled, 3, present)[:, 0].tolist() == pytest.approx([4.0, 0.0, 4.0])
    assert velocity(filled, 3)[0, 0] == pytest.approx(4 / 3)


def test_noise_blobs_and_flicker_are_repaired():
    video = square_video(11, (60, 80), (2, 0), side=20)
    video[:, 5:8, 200:203] = BLUE_SPHERE  # a 9-pixel noise blob far away
    video[3, 75:80, 55:62] = RED_CUBE + 8  # a few pixels of the cube given the rubber class
    cleaned = drop_small_blobs(video, 12)
    assert not (cleaned == BLUE_SPHERE).any()
    tracks = extract_tracks(torch.from_numpy(video[None]))
    assert sorted(c for c in tracks.classes[0].tolist() if c) == [RED_CUBE]
    # the masks the tracks were measured on, kept for the silhouette fits: noise gone, the
    # flicker pixels the cube's own
    assert tracks.masks.dtype == np.uint8 and tracks.masks.shape == (1, *video.shape)
    assert set(np.unique(tracks.masks).tolist()) == {0, RED_CUBE}
    assert (tracks.masks[0, 3, 75:80, 55:62] == RED_CUBE).all()
    assert extract_tracks(torch.from_numpy(video[None]), templates=False).masks is None


def test_class_flicker_over_frames_is_one_object_with_the_majority_class():
    video = square_video(11, (60, 80), (3, 0), side=16)
    video[[2, 5, 8]] = np.where(video[[2, 5, 8]] == RED_CUBE, RED_CUBE + 8, 0)  # 3 frames: red rubber cube
    other = square_video(11, (150, 40), (0, 0), side=16, class_id=RED_CUBE + 16)  # a real red sphere
    video = np.where(other > 0, other, video)
    tracks = extract_tracks(torch.from_numpy(video[None]))
    assert sorted(c for c in tracks.classes[0].tolist() if c) == [RED_CUBE, RED_CUBE + 16]
    slot = int((tracks.classes[0] == RED_CUBE).nonzero()[0, 0])
    assert bool(tracks.present[0, slot].all())


def test_render_paints_far_to_near_and_clips():
    video = np.zeros((1, H, W), np.uint8)
    video = square_video(1, (100, 60), (0, 0), side=20, class_id=RED_CUBE, masks=video)
    video = square_video(1, (100, 100), (0, 0), side=20, class_id=BLUE_SPHERE, masks=video)
    tracks = extract_tracks(torch.from_numpy(video[None]))
    net = cv_net()
    red = int((tracks.classes[0] == RED_CUBE).nonzero()[0, 0])
    blue = int((tracks.classes[0] == BLUE_SPHERE).nonzero()[0, 0])
    centers = torch.zeros(1, tracks.classes.shape[1], 2)
    centers[0, red] = torch.tensor([100.0, 90.0])   # farther (higher in the image)
    centers[0, blue] = torch.tensor([100.0, 100.0])  # nearer: drawn last, on top
    mask = render(tracks, centers, net.plane)[0]
    assert mask[100, 100] == BLUE_SPHERE and mask[82, 100] == RED_CUBE
    centers[0, blue] = torch.tensor([235.0, 100.0])  # half out of the image
    mask = render(tracks, centers, net.plane)[0]
    assert (mask == BLUE_SPHERE).sum() == 20 * 15


def test_render_skips_objects_with_a_diverged_forecast():
    video = square_video(11, (40, 50), (2, 0))
    video = square_video(11, (150, 90), (-2, 0), class_id=BLUE_SPHERE, masks=video)
    tracks = extract_tracks(torch.from_numpy(video[None]))
    net = cv_net()
    centers = net(tracks.classes, tracks.present, tracks.center, learned=False)[:, :, -1].clone()
    slot = {int(c): k for k, c in enumerate(tracks.classes[0]) if c}
    centers[0, slot[RED_CUBE]] = torch.tensor([float("nan"), 50.0])
    mask = render(tracks, centers, net.plane)
    assert not (mask == RED_CUBE).any() and (mask == BLUE_SPHERE).sum() == 16 * 16


def test_video_without_objects_and_single_sighting():
    empty = extract_tracks(torch.zeros(2, 11, H, W, dtype=torch.long))
    net = cv_net()
    centers = net(empty.classes, empty.present, empty.center)
    assert (render(empty, centers[:, :, -1], net.plane) == 0).all()
    once = np.zeros((11, H, W), np.uint8)
    once[4] = square_video(1, (50, 50), (0, 0))[0]
    tracks = extract_tracks(torch.from_numpy(once[None]))
    centers = net(tracks.classes, tracks.present, tracks.center)
    assert torch.isfinite(centers).all()
    mask = render(tracks, centers[:, :, -1], net.plane)
    assert (mask[0] == RED_CUBE).sum() == 16 * 16  # stays where it was seen


def test_objects_seen_in_too_few_frames_are_forecast_but_not_drawn():
    """One sighting says nothing of an object's motion, two cut by the border little: the served
    forecast leaves out objects seen in fewer than MIN_SIGHTINGS input frames (an object
    entering the view, or a segmenter's stray class) and draws the others."""
    from simvp_unet.objects.motion import MIN_SIGHTINGS
    from simvp_unet.objects.serve import Dynamics

    video = square_video(11, (60, 50), (2, 0))  # seen in every frame
    for frames, class_id, x in ((MIN_SIGHTINGS - 1, BLUE_SPHERE, 150), (MIN_SIGHTINGS, GREEN_CYL, 200)):
        video[11 - frames:] = square_video(frames, (x, 100), (0, 0), class_id=class_id, masks=video[11 - frames:])
    result = Dynamics(cv_net()).forecast_objects(torch.from_numpy(video[None]).long())
    drawn = set(result.mask.unique().tolist())
    assert drawn == {0, RED_CUBE, GREEN_CYL}
    assert BLUE_SPHERE in result.tracks.classes[0].tolist()  # tracked and forecast, only not drawn
    assert sorted(result.tracks.classes[0][result.drawn[0]].tolist()) == [RED_CUBE, GREEN_CYL]
    assert torch.isfinite(result.centers).all()
    assert torch.equal(result.past, result.tracks.center)  # no camera: the tracked box centers


def test_fit_constant_velocity_finds_the_damping():
    t = torch.arange(22, dtype=torch.float32)
    speed = 0.9 ** t
    x = torch.cat([torch.zeros(1), speed[1:].cumsum(0)])  # damped 0.9 per frame
    track = torch.stack([x, torch.zeros(22)], -1).view(1, 1, 22, 2)

    def error(forecast: torch.Tensor) -> torch.Tensor:
        return (forecast - track[:, :, 11:]).abs().mean()

    frames, damping, err = fit_constant_velocity(track[:, :, :11], error, steps=11, frames_grid=(1,),
                                                 damping_grid=(0.8, 0.85, 0.9, 0.95, 1.0))
    assert (frames, damping) == (1, 0.9) and err < 1e-4
    assert torch.allclose(constant_velocity(track[:, :, :11], frames=1, damping=0.9, steps=11),
                          track[:, :, 11:], atol=1e-4)


def test_ground_plane_recovers_inverse_depth():
    net = DynamicsNet(DynamicsNetConfig())
    plane = net.plane
    rng = np.random.default_rng(0)
    n = 200
    center = np.stack([rng.uniform(20, 220, n), rng.uniform(20, 140, n)], -1).astype(np.float32)
    w = 1 + 0.1 * (center[:, 0] / W - 0.5) + 1.2 * (center[:, 1] / H - 0.5)
    classes = np.full((n, 1), RED_CUBE)
    size = np.repeat((20 * w)[:, None], 2, 1).astype(np.float32)
    plane.fit(classes, center[:, None, None], size[:, None, None], np.ones((n, 1, 1), bool))
    assert plane.slope.tolist() == pytest.approx([0.1, 1.2], abs=1e-3)
    xy = torch.from_numpy(center)
    assert torch.allclose(plane.to_image(plane.to_ground(xy)), xy, atol=1e-3)


def test_dynamics_learns_a_constant_velocity_toy():
    """Objects moving at constant image velocity, but the simulator starts with strong friction:
    a few steps of training the network must bring its error down."""
    torch.manual_seed(0)
    n, k = 64, 3
    start = torch.rand(n, k, 2) * torch.tensor([200.0, 120.0]) + 20
    vel = (torch.rand(n, k, 2) - 0.5) * 4
    t = torch.arange(22, dtype=torch.float32).view(1, 1, 22, 1)
    center = start.unsqueeze(2) + vel.unsqueeze(2) * t
    classes = torch.tensor([RED_CUBE, BLUE_SPHERE, GREEN_CYL]).expand(n, k)
    present = torch.ones(n, k, 11, dtype=torch.bool)
    net = DynamicsNet(DynamicsNetConfig(hidden=32))
    with torch.no_grad():
        net.physics.log_friction.fill_(math.log(3e-3))
        net.physics.radius.zero_()  # no collisions

    def loss() -> torch.Tensor:
        pred = net(classes, present, center[:, :, :11])
        return (pred - center[:, :, 11:]).abs().mean()

    with torch.no_grad():
        before = float(loss())
    opt = torch.optim.Adam(net.net.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        assert float(loss()) < 0.3 * before


def test_positions_in_other_tracks_match_objects_by_class():
    video = square_video(3, (40, 50), (4, 0))
    video = square_video(3, (150, 90), (-2, 0), class_id=BLUE_SPHERE, masks=video)
    tracks = extract_tracks(torch.from_numpy(video[None, :2]))
    later = video.copy()
    later[2][later[2] == BLUE_SPHERE] = 0  # the sphere is gone in frame 3
    later = square_video(3, (100, 120), (0, 0), class_id=GREEN_CYL, masks=later)  # a newcomer
    centers, seen = positions_in(tracks, extract_tracks(torch.from_numpy(later[None])), 2)
    slot = {int(c): k for k, c in enumerate(tracks.classes[0]) if c}
    assert seen[0].tolist().count(True) == 1 and bool(seen[0, slot[RED_CUBE]])
    assert centers[0, slot[RED_CUBE]].tolist() == pytest.approx([48.0, 50.0])
