"""The object physics: friction, collisions, and fitting its numbers to tracks where they are known."""

from __future__ import annotations

import math

import pytest
import torch

from simvp_unet.objects.physics import Physics

METAL_CUBE, RUBBER_CUBE, METAL_SPHERE = 1, 9, 17  # class ids: shape x material x color


def still_then(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Past positions (B, K, 11, 2) that end at p with velocity v (constant velocity)."""
    t = torch.arange(-10, 1, dtype=torch.float32).view(1, 1, 11, 1)
    return p.unsqueeze(2) + v.unsqueeze(2) * t


def test_friction_slows_by_a_constant_amount_and_stops():
    physics = Physics(substeps=1, frames=1)
    with torch.no_grad():
        physics.log_friction.fill_(math.log(0.1))
    q = still_then(torch.zeros(1, 1, 2), torch.tensor([[[0.5, 0.0]]]))
    path = physics.simulate(q, torch.tensor([[METAL_CUBE]]), 11, collide=False).detach()[0, 0, :, 0]
    speeds = torch.diff(torch.cat([torch.zeros(1), path]))
    expected = (0.5 - 0.1 * torch.arange(1, 12)).clamp_min(0)  # Coulomb: 0.4, 0.3, ... then rest
    assert torch.allclose(speeds, expected, atol=1e-5)


def test_head_on_collision_conserves_momentum_and_exchanges_velocities():
    physics = Physics(substeps=4, frames=1)
    with torch.no_grad():
        physics.log_friction.fill_(-30.0)  # no friction
        physics.radius.fill_(0.5)
    classes = torch.tensor([[METAL_CUBE, METAL_CUBE]])  # equal masses
    v0 = torch.tensor([[[0.4, 0.0], [-0.4, 0.0]]])
    q = still_then(torch.tensor([[[0.0, 0.0], [3.0, 0.0]]]), v0)
    for restitution, after in ((1.0, [-0.4, 0.4]), (0.0, [0.0, 0.0])):
        with torch.no_grad():
            physics.restitution.fill_(restitution)
        path = physics.simulate(q, classes, 11).detach()
        velocity = path[0, :, -1, 0] - path[0, :, -2, 0]
        assert velocity.tolist() == pytest.approx(after, abs=1e-4)
        gap = float(path[0, 1, -1, 0] - path[0, 0, -1, 0])
        assert gap >= 1.0 - 1e-4  # parted from where they touched: never inside contact
    # unequal masses: the momentum before equals the momentum after
    with torch.no_grad():
        physics.log_mass.copy_(torch.tensor([0.0, 0.0, 0.0, math.log(3.0), 0.0]))  # metal 3x rubber
        physics.restitution.fill_(0.5)
    classes = torch.tensor([[METAL_CUBE, RUBBER_CUBE]])
    path = physics.simulate(q, classes, 11).detach()
    velocity = path[0, :, -1, 0] - path[0, :, -2, 0]
    assert float(3 * velocity[0] + velocity[1]) == pytest.approx(3 * 0.4 - 0.4, abs=1e-4)
    assert velocity[0] < 0.4 and velocity[1] > -0.4


def test_objects_part_from_where_they_touched_whatever_the_substeps():
    """Contact is found at the time it happens within a substep, not at the next check: the exact
    elastic exchange of two equal objects closing at 0.8 per frame with a gap of 2 puts the first
    at 0.4 * 2.5 - 0.4 * 8.5 = -2.4 after 11 frames, with one substep as with eight."""
    for substeps in (1, 4, 8):
        physics = Physics(substeps=substeps, frames=1)
        with torch.no_grad():
            physics.log_friction.fill_(-30.0)
            physics.radius.fill_(0.5)
            physics.restitution.fill_(1.0)
        q = still_then(torch.tensor([[[0.0, 0.0], [3.0, 0.0]]]), torch.tensor([[[0.4, 0.0], [-0.4, 0.0]]]))
        path = physics.simulate(q, torch.tensor([[METAL_CUBE, METAL_CUBE]]), 11).detach()
        assert float(path[0, 0, -1, 0]) == pytest.approx(-2.4, abs=1e-4)


def test_a_glancing_blow_between_two_checks_still_collides():
    """A fast object passes a resting one 0.9 apart (contact at 1.0): at one substep a frame it is
    0.6 before and 0.6 past it at two checks in a row, both out of contact, yet their paths
    touched. It strikes it where they touched, x = 3 - sqrt(1 - 0.81): equal
    masses, elastic, no grip, so the struck one leaves along that normal with the striker's speed
    along it."""
    physics = Physics(substeps=1, frames=1)
    with torch.no_grad():
        physics.log_friction.fill_(-30.0)
        physics.radius.fill_(0.5)
        physics.restitution.fill_(1.0)
        physics.grip.fill_(0.0)
    q = still_then(torch.tensor([[[0.0, 0.0], [3.0, 0.9]]]), torch.tensor([[[1.2, 0.0], [0.0, 0.0]]]))
    path = physics.simulate(q, torch.tensor([[METAL_CUBE, METAL_CUBE]]), 4).detach()
    normal = torch.tensor([math.sqrt(1 - 0.81), 0.9])
    struck = path[0, 1, -1] - path[0, 1, -2]
    assert struck.tolist() == pytest.approx((1.2 * normal[0] * normal).tolist(), abs=1e-4)


def test_grip_takes_a_share_of_the_sliding_at_contact_and_conserves_momentum():
    """A glancing blow: without grip only the velocities along the contact normal change (equal
    masses, elastic: the two leave at a right angle); with grip g the two surfaces' sliding past
    each other keeps 1 - g of its speed."""
    physics = Physics(substeps=4, frames=1)
    with torch.no_grad():
        physics.log_friction.fill_(-30.0)
        physics.radius.fill_(0.5)
        physics.restitution.fill_(1.0)
    classes = torch.tensor([[METAL_CUBE, METAL_CUBE]])
    v0 = torch.tensor([[[0.4, 0.0], [0.0, 0.0]]])
    q = still_then(torch.tensor([[[0.0, 0.0], [3.0, 0.6]]]), v0)
    after = {}
    for grip in (0.0, 0.5):
        with torch.no_grad():
            physics.grip.fill_(grip)
        path = physics.simulate(q, classes, 11).detach()
        after[grip] = path[0, :, -1] - path[0, :, -2]
        assert after[grip].sum(0).tolist() == pytest.approx([0.4, 0.0], abs=1e-5)  # momentum
    assert float(after[0.0][0] @ after[0.0][1]) == pytest.approx(0.0, abs=1e-5)  # a right angle
    normal = after[0.0][1] / after[0.0][1].norm()  # the struck object leaves along the normal
    tangent = torch.stack([-normal[1], normal[0]])
    sliding = {g: float((v[1] - v[0]) @ tangent) for g, v in after.items()}
    assert abs(sliding[0.0]) > 0.1 and sliding[0.5] == pytest.approx(0.5 * sliding[0.0], abs=1e-5)


def test_objects_apart_and_empty_slots_do_not_collide():
    physics = Physics(substeps=2, frames=1)
    with torch.no_grad():
        physics.log_friction.fill_(-30.0)
        physics.radius.fill_(0.5)
    v = torch.tensor([[[0.2, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    q = still_then(torch.tensor([[[0.0, 0.0], [0.0, 5.0], [1.5, 0.0]]]), v)
    path = physics.simulate(q, torch.tensor([[METAL_CUBE, METAL_SPHERE, 0]]), 11).detach()  # slot 2 is empty
    assert torch.allclose(path[0, 0, :, 0], 0.2 * torch.arange(1, 12.0), atol=1e-5)
    assert torch.allclose(path[0, 1], torch.tensor([0.0, 5.0]).expand(11, 2))


def test_fit_recovers_friction_metric_and_masses():
    """Tracks simulated with known numbers (on an anisotropic floor) are forecast almost
    exactly after `fit`, which finds the frictions, the metric up to rotation and the masses."""
    torch.manual_seed(0)
    truth = Physics(substeps=4, frames=2)
    metric = torch.tensor([[1.0, 0.0], [0.0, 1.4]])
    with torch.no_grad():
        truth.metric.copy_(metric)
        truth.log_friction.copy_(torch.log(torch.tensor([0.002, 0.004])))
        truth.log_mass.copy_(torch.tensor([0.0, 0.0, 0.0, math.log(2.5), 0.0]))
        truth.restitution.fill_(0.3)
        truth.radius.fill_(0.05)
    n, k = 96, 3
    classes = torch.tensor([METAL_CUBE, RUBBER_CUBE, METAL_SPHERE]).expand(n, k)
    g = torch.rand(n, k, 2) * 0.8 - 0.4
    g[:, 2] = g[:, 0] + torch.randn(n, 2) * 0.02 + 0.15  # the sphere near the metal cube: collisions
    v = (torch.rand(n, k, 2) - 0.5) * 0.05
    v[:, 0] = (g[:, 2] - g[:, 0]) * 0.08  # the metal cube slides at the sphere
    with torch.no_grad():
        past = still_then(g, v)  # frames 1..11 at constant velocity (friction starts at 11)
        future = truth.from_metric(truth.simulate(truth.to_metric(past), classes, 11))

    def error(forecast: torch.Tensor) -> torch.Tensor:
        return (forecast - future).norm(dim=-1).mean() * 100

    fitted = Physics(substeps=4)
    scores = fitted.fit(classes, past, error, diameter=0.1, steps=11, frames_grid=(1,), iterations=300)
    assert scores["collisions"] < 0.4 * scores["free"]  # the collisions are simulated
    m = fitted.metric.detach()
    assert float(m[1].norm() / m[0].norm()) == pytest.approx(1.4, rel=0.15)  # the floor made isotropic
    # metal is 2.5x heavier than rubber; the friction of rubber twice that of metal
    mass = fitted.log_mass.detach()
    assert float(mass[3] - mass[4]) == pytest.approx(math.log(2.5), abs=0.3)
    friction = fitted.log_friction.detach().exp()
    assert float(friction[1] / friction[0]) == pytest.approx(2.0, rel=0.2)


def test_training_leaves_the_fitted_physics_as_fitted(tiny_config):
    """By default the network alone learns: the simulator's fitted numbers are in no group of
    the optimizer and need no gradient (refined with the network, they served worse on every set
    measured)."""
    from simvp_unet.train.dynamics import DynamicsModule

    module = DynamicsModule(tiny_config("dynamics"))
    (group,) = module.parameter_groups()
    physics = {id(p) for p in module.model.physics.parameters()}
    assert not physics & {id(p) for p in group["params"]}
    assert not any(p.requires_grad for p in module.model.physics.parameters())
    assert sorted(id(p) for p in group["params"]) == sorted(id(p) for p in module.parameters() if id(p) not in physics)


def test_training_does_not_decay_the_fitted_physics(tiny_config):
    """Weight decay would pull the simulator's log-frictions and log-masses toward 0 (bench: the
    validation error rose from 2.45 to 2.80 px over the preset's training): refined in training
    (`train_physics`), its parameters get a group without it, every other parameter keeps the
    configured decay."""
    from simvp_unet.train.dynamics import DynamicsModule

    module = DynamicsModule(tiny_config("dynamics", "train_physics=true"))
    groups = module.parameter_groups()
    physics = {id(p) for p in module.model.physics.parameters()}
    assert [{id(p) for p in g["params"]} == physics for g in groups] == [False, True]
    assert groups[1]["weight_decay"] == 0.0 and "weight_decay" not in groups[0]
    counted = [id(p) for g in groups for p in g["params"]]
    assert sorted(counted) == sorted(id(p) for p in module.parameters())


def test_fits_before_training_use_at_most_fit_videos(tiny_config, monkeypatch):
    import numpy as np

    import simvp_unet.train.dynamics as dynamics

    n, k, t = 12, 3, 22
    rng = np.random.default_rng(0)
    start = rng.uniform(30, 130, (n, k, 1, 2))
    arrays = {"classes": np.tile(np.array([METAL_CUBE, RUBBER_CUBE, METAL_SPHERE]), (n, 1)),
              "present": np.ones((n, k, t), bool), "whole": np.ones((n, k, t), bool),
              "center": (start + np.arange(t)[None, None, :, None] * rng.uniform(-1, 1, (n, k, 1, 2))
                         ).astype(np.float32),
              "size": np.full((n, k, t, 2), 20.0, np.float32), "area": np.full((n, k, t), 300.0, np.float32),
              "pseudo": np.zeros(n, bool)}
    seen = []
    monkeypatch.setattr(dynamics, "FIT_VIDEOS", 5)
    monkeypatch.setattr(Physics, "fit", lambda self, classes, *a, **kw: seen.append(len(classes)) or {})
    monkeypatch.setattr(Physics, "fit_window", lambda self, classes, *a, **kw: seen.append(len(classes)) or 0.0)
    dynamics.DynamicsModule(tiny_config("dynamics")).fit_to_data(dynamics.TrackDataset(arrays))
    assert seen == [5, 5]


def test_a_ball_launched_without_spin_rolls_once_it_has_lost_two_sevenths_of_its_speed():
    """Friction slows a ball and spins it up (5/2 as fast for a solid ball) until it rolls at
    5/7 of its launch speed, and then it keeps that speed (no rolling friction here); a cube
    with the same friction slides until it stops. A blow that reverses the rolling ball's
    velocity leaves its spin: it slides again, to (5 v + 2 spin) / 7."""
    physics = Physics(substeps=1)
    with torch.no_grad():
        physics.log_friction.fill_(math.log(0.01))
        physics.spin_up.fill_(2.5)
        physics.log_rolling.fill_(-30.0)
    classes, valid = torch.tensor([[METAL_SPHERE, METAL_CUBE]]), torch.ones(1, 2, dtype=torch.bool)
    p, v, spin = torch.zeros(1, 2, 2), torch.tensor([[[0.5, 0.0], [0.5, 0.0]]]), torch.zeros(1, 2, 2)
    speeds = []
    with torch.no_grad():
        for _ in range(60):
            p, v, spin = physics.advance(p, v, spin, classes, valid, collide=False)
            speeds.append(v[0, :, 0].tolist())
    ball, cube = zip(*speeds, strict=True)
    assert ball[0] == pytest.approx(0.49) and ball[13] == pytest.approx(0.5 - 0.14)  # sliding
    assert ball[20:] == pytest.approx([0.5 * 5 / 7] * 40)  # rolling from frame 15 on
    assert spin[0, 0].tolist() == pytest.approx(v[0, 0].tolist()) and spin[0, 1].tolist() == [0.0, 0.0]
    assert cube[48] == pytest.approx(0.01, abs=1e-5) and cube[49:] == pytest.approx([0.0] * 11, abs=1e-5)
    v = -v  # bounced straight back
    with torch.no_grad():
        for _ in range(30):
            p, v, spin = physics.advance(p, v, spin, classes, valid, collide=False)
    assert float(v[0, 0, 0]) == pytest.approx((5 * -0.5 * 5 / 7 + 2 * 0.5 * 5 / 7) / 7, abs=1e-5)


def test_a_ball_seen_long_enough_starts_rolling_and_one_just_seen_slides():
    """At the last input frame a ball's spin is what friction gave it since it was first seen,
    at most its speed: seen for 10 frames at a slow speed it already rolls on at that speed;
    seen for 2 frames it slides and slows (spin up 2.5 x 0.002 x frames)."""
    physics = sliding_physics()
    with torch.no_grad():
        physics.spin_up.fill_(2.5)
        physics.log_rolling.fill_(-30.0)
    t = torch.arange(-10, 1.0).view(1, -1, 1)
    q = (torch.tensor([0.1, 0.3]) + torch.tensor([[[0.03, 0.0]], [[0.1, 0.0]]]) * t).unsqueeze(0)  # (1, 2, 11, 2)
    present = torch.ones(1, 2, 11, dtype=torch.bool)
    present[0, 1, :-3] = False  # the fast ball entered the view at frame 9
    classes = torch.tensor([[METAL_SPHERE, METAL_SPHERE]])
    with torch.no_grad():
        _, v, spin = physics.start(q, classes, present)
        path = physics.simulate(q, classes, 11, present=present, collide=False)
    assert torch.allclose(spin[0, 0], v[0, 0]) and float(spin[0, 1, 0]) == pytest.approx(2.5 * 0.002 * 2)
    steps = path[0, :, -1, 0] - path[0, :, -2, 0]
    assert float(steps[0]) == pytest.approx(float(v[0, 0, 0]), abs=1e-6)  # rolls on
    assert float(steps[1]) < float(v[0, 1, 0]) - 10 * 0.002  # slid for all 11 frames


def sliding_path(end: torch.Tensor, v: torch.Tensor, friction: float, frames: int = 11) -> torch.Tensor:
    """Past positions (1, 1, frames, 2) of an object sliding against `friction` that reaches
    `end` with velocity `v` (it was faster before)."""
    t = torch.arange(1 - frames, 1, dtype=torch.float32).view(-1, 1)
    u = v / v.norm()
    return (end + v * t - friction * t * t / 2 * u).view(1, 1, frames, 2)


def sliding_physics() -> Physics:
    physics = Physics(substeps=4, frames=2)
    with torch.no_grad():
        physics.log_friction.fill_(math.log(0.002))
    return physics


def test_the_starting_path_is_fitted_through_pixel_noise():
    """Box centers carry pixel noise: the velocity fitted to the whole sliding path is far
    nearer the truth than the mean over the last frames, and exact without noise."""
    physics, classes = sliding_physics(), torch.tensor([[METAL_CUBE]])
    v = torch.tensor([0.03, -0.01])
    clean = sliding_path(torch.tensor([0.2, 0.1]), v, 0.002)
    scale = torch.full((1, 1), 100.0)  # pixels per unit: the noise below is +-0.3 px
    with torch.no_grad():
        p, fitted, _ = physics.start(clean, classes, scale=scale)
    assert torch.allclose(fitted[0, 0], v, atol=1e-5) and torch.allclose(p[0, 0], clean[0, 0, -1], atol=1e-5)
    errors = {"fitted": [], "mean": []}
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        noisy = clean + (torch.rand(clean.shape, generator=generator) - 0.5) * 0.006
        with torch.no_grad():
            errors["fitted"].append(float((physics.start(noisy, classes, scale=scale)[1] - v).norm()))
            errors["mean"].append(float((physics.start(noisy, classes)[1] - v).norm()))
    assert sum(errors["fitted"]) < 0.4 * sum(errors["mean"])


def test_the_starting_path_begins_after_a_collision_and_a_resting_object_stays():
    physics, scale = sliding_physics(), torch.full((1, 2), 100.0)
    after = sliding_path(torch.tensor([0.3, 0.0]), torch.tensor([0.04, 0.0]), 0.002, frames=5)
    before = after[:, :, :1] + torch.tensor([0.0, -0.05]) * torch.arange(-6, 0.0).view(1, 1, -1, 1)
    hit = torch.cat([before, after], 2)  # moving up until frame 6, then knocked to the right
    rest = torch.full((1, 1, 11, 2), 0.5) + (torch.rand(1, 1, 11, 2, generator=torch.Generator().manual_seed(1))
                                             - 0.5) * 0.004
    q = torch.cat([hit, rest], 1)
    with torch.no_grad():
        _, v, _ = physics.start(q, torch.tensor([[METAL_CUBE, RUBBER_CUBE]]), scale=scale)
        path = physics.simulate(q, torch.tensor([[METAL_CUBE, RUBBER_CUBE]]), 11, scale=scale, collide=False)
    assert torch.allclose(v[0, 0], torch.tensor([0.04, 0.0]), atol=1e-4)
    assert float((path[0, 1, -1] - q[0, 1, -1]).norm()) * 100 < 0.5  # pixels: it stays where it was


def test_a_window_of_zero_is_the_mean_velocity():
    physics = sliding_physics()
    q = sliding_path(torch.tensor([0.2, 0.1]), torch.tensor([0.03, -0.01]), 0.002)
    with torch.no_grad():
        physics.window.fill_(0)
        fitted = physics.start(q, torch.tensor([[METAL_CUBE]]), scale=torch.full((1, 1), 100.0))
        mean = physics.start(q, torch.tensor([[METAL_CUBE]]))
    assert all(torch.equal(a, b) for a, b in zip(fitted, mean, strict=True))


def test_the_loss_caps_each_error(tiny_config):
    """A forecast far off (an object entering the view, a pseudo-label's stray box) adds nothing
    to the gradient: the small errors the score is made of decide the training."""
    from simvp_unet.train.dynamics import DynamicsModule

    target = torch.zeros(1, 2, 11, 2)
    counts = torch.ones(1, 2, 11, dtype=torch.bool)
    for clip, far_moves in ((5.0, False), (0.0, True)):
        module = DynamicsModule(tiny_config("dynamics", f"loss_clip={clip}"))
        pred = torch.zeros(1, 2, 11, 2)
        pred[0, 0] = 1.5  # 1.5 px off in x and y
        pred[0, 1] = 100.0
        pred.requires_grad_(True)
        module._loss(pred, target, counts).backward()
        assert float(pred.grad[0, 0].abs().min()) > 0
        assert bool((pred.grad[0, 1] != 0).any()) == far_moves
    with pytest.raises(ValueError, match="loss_clip must be >= 0"):
        tiny_config("dynamics", "loss_clip=-1")
