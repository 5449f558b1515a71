"""The dynamics' training tracks: dropping the pseudo-label sightings that cannot be one whole object."""

from __future__ import annotations

import numpy as np
import torch

from simvp_unet.objects import extract_tracks
from simvp_unet.objects.ground import GroundPlane
from simvp_unet.objects.motion import consistent_sightings
from simvp_unet.train.dynamics import DynamicsConfig, DynamicsModule, TrackDataset

H, W = 160, 240
RED_CUBE, BLUE_SPHERE = 10, 27
SIDE = 16


def flat_plane() -> GroundPlane:
    """A plane seen from above: every whole object is a SIDE x SIDE box wherever it is."""
    plane = GroundPlane(image_size=(H, W))
    plane.shape_size.fill_(SIDE)
    return plane


def paint(masks: np.ndarray, t: int, x: float, y: float, class_id: int, side: int = SIDE) -> None:
    top, left = int(round(y - side / 2)), int(round(x - side / 2))
    masks[t, top:top + side, left:left + side] = class_id


def noisy_video() -> np.ndarray:
    """(22, H, W): a cube moving right 3 px a frame, with a segmenter's typical faults: in frames
    5 and 6 a second blob of its class far away, in frame 12 only a corner of it is found, and a
    stray class in frames 3 and 4."""
    masks = np.zeros((22, H, W), np.uint8)
    for t in range(22):
        paint(masks, t, 40 + 3 * t, 80, RED_CUBE)
    for t in (5, 6):
        paint(masks, t, 200, 30, RED_CUBE, side=6)  # 36 pixels: more than a noise blob
    masks[12][masks[12] == RED_CUBE] = 0
    paint(masks, 12, 40 + 3 * 12 + 5, 85, RED_CUBE, side=6)
    for t in (3, 4):
        paint(masks, t, 120, 130, BLUE_SPHERE, side=8)
    return masks


def keep_of(masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tracks = extract_tracks(torch.from_numpy(masks[None]), templates=False)
    keep = consistent_sightings(tracks.classes, tracks.present, tracks.center, tracks.size, flat_plane(),
                                area=tracks.area)
    return tracks.classes[0], tracks.present[0], keep[0]


def test_sightings_of_two_blobs_or_a_piece_are_dropped():
    classes, present, keep = keep_of(noisy_video())
    cube = classes.tolist().index(RED_CUBE)
    dropped = sorted((present[cube] & ~keep[cube]).nonzero().flatten().tolist())
    assert dropped == [5, 6, 12]
    assert keep[cube].sum() == 19


def test_a_class_seen_in_two_frames_is_dropped():
    classes, present, keep = keep_of(noisy_video())
    stray = classes.tolist().index(BLUE_SPHERE)
    assert present[stray].sum() == 2 and not keep[stray].any()


def test_a_clean_track_keeps_every_sighting_even_cut_by_the_border():
    masks = np.zeros((22, H, W), np.uint8)
    for t in range(22):
        paint(masks, t, 2 + 4 * t, 80, RED_CUBE)  # enters from the left border
    _, present, keep = keep_of(masks)
    assert present.any() and torch.equal(keep, present)


def test_training_filters_pseudo_labels_only():
    masks = noisy_video()
    arrays = extract_tracks(torch.from_numpy(np.stack([masks, masks])), templates=False).arrays()
    arrays["pseudo"] = np.array([False, True])
    before = {k: v.copy() for k, v in arrays.items()}
    data = TrackDataset(arrays)
    module = DynamicsModule(DynamicsConfig())
    module.model.plane.shape_size.fill_(SIDE)
    module.filter_pseudo(data)
    a = data.arrays
    for name in ("classes", "present", "whole"):  # true masks: untouched
        assert torch.equal(a[name][0], torch.from_numpy(before[name][0]))
    assert a["present"][1].sum() == before["present"][1].sum() - 3 - 2
    assert not (a["whole"][1] & ~a["present"][1]).any()
    assert BLUE_SPHERE in a["classes"][0].tolist() and BLUE_SPHERE not in a["classes"][1].tolist()


def test_forecast_ignores_a_sighting_of_two_blobs():
    """A second blob of the cube's class in the last input frame moves its box center far away:
    the forecast must follow the clean sightings instead."""
    from simvp_unet.objects import DynamicsNet, DynamicsNetConfig

    clean = np.zeros((11, H, W), np.uint8)
    for t in range(11):
        paint(clean, t, 40 + 3 * t, 80, RED_CUBE)
    noisy = clean.copy()
    paint(noisy, 10, 200, 30, RED_CUBE, side=6)
    net = DynamicsNet(DynamicsNetConfig())
    net.set_constant_velocity(frames=1, damping=1.0)

    def forecast(masks: np.ndarray) -> torch.Tensor:
        tracks = extract_tracks(torch.from_numpy(masks[None]), templates=False)
        return net(tracks.classes, tracks.present, tracks.center, size=tracks.size, learned=False)[0, 0, -1]

    assert not torch.allclose(forecast(noisy), forecast(clean), atol=1.0)  # unfitted plane: no check
    net.plane.shape_size.fill_(SIDE)
    assert torch.allclose(forecast(noisy), forecast(clean), atol=1.0)
    assert torch.allclose(forecast(clean), torch.tensor([40 + 3 * 21.0, 80.0]), atol=1.0)



def test_fits_read_filtered_tracks_when_all_are_pseudo_labels(tiny_config, monkeypatch):
    import simvp_unet.train.dynamics as dynamics
    from simvp_unet.objects.physics import Physics

    masks = noisy_video()
    arrays = extract_tracks(torch.from_numpy(np.stack([masks, masks])), templates=False).arrays()
    arrays["pseudo"] = np.array([True, True])
    seen = []
    monkeypatch.setattr(dynamics, "FIT_VIDEOS", 1)  # the fits read a subset: filtered too
    monkeypatch.setattr(Physics, "fit", lambda self, classes, filled, error, **kw: seen.append(classes) or {})
    DynamicsModule(tiny_config("dynamics")).fit_to_data(TrackDataset(arrays))
    (classes,) = seen
    assert classes.shape[0] == 1 and RED_CUBE in classes[0].tolist() and BLUE_SPHERE not in classes[0].tolist()
