"""Pipelines on the stand-in moving-squares world, and on a world of 3D shapes drawn by a known
camera, whose answers are known exactly."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from standins import Forecaster, Predictor, Segmenter, masks_to_frames, world_masks

from simvp_unet import pipelines
from simvp_unet.classes import class_id
from simvp_unet.data import layout
from simvp_unet.data.layout import COMPETITION
from simvp_unet.errors import ConfigError
from simvp_unet.kinds import KINDS
from simvp_unet.metrics import jaccard, skill
from simvp_unet.objects.camera import CUBE, CYLINDER, SPHERE, Camera
from simvp_unet.objects.silhouette import paint
from simvp_unet.pipelines import (
    Batch,
    Models,
    drop_absent_classes,
)


def make_batch(models: Models, *, with_frame22: bool = True) -> tuple[Batch, torch.Tensor]:
    masks = world_masks()
    frames = masks_to_frames(masks)
    batch = Batch(models, frames[:, :COMPETITION.input_frames], frames[:, COMPETITION.target] if with_frame22 else None)
    return batch, masks[:, COMPETITION.target]


def scores(models: Models) -> dict[str, float]:
    batch, target = make_batch(models)
    return {name: jaccard(pipelines.run(name, batch), target)
            for name in pipelines.available(models, with_frame22=True)}


def test_perfect_models_score_one_and_copy_last_does_not():
    j = scores(Models(Segmenter(), Predictor(), Forecaster()))
    assert list(j) == ["copy-last", "frames", "oracle", "masks", "masks+absent"]
    for name in ("frames", "oracle", "masks", "masks+absent"):
        assert j[name] == pytest.approx(1.0), name
    # objects moved 33 pixels, more than their size: copying frame 11 only gets background right
    assert j["copy-last"] < 0.5
    assert skill(j["masks"], j["copy-last"], j["oracle"]) == pytest.approx(1.0)


def constant_velocity_dynamics(image_size=(16, 80)):
    """An untrained dynamics run with constant velocity, its simulator without friction or
    collisions (exact for the squares world)."""
    from simvp_unet.objects import DynamicsNet, DynamicsNetConfig
    from simvp_unet.objects.serve import Dynamics

    model = DynamicsNet(DynamicsNetConfig(image_size=image_size))
    model.set_constant_velocity(frames=1, damping=1.0)
    with torch.no_grad():
        model.physics.log_friction.fill_(-30.0)
        model.physics.radius.zero_()
        model.physics.frames.fill_(1)
    return Dynamics(model)


def test_objects_rows_forecast_the_squares_exactly():
    j = scores(Models(Segmenter(), dynamics=constant_velocity_dynamics()))
    assert list(j) == ["copy-last", "oracle", "objects-cv", "objects"]
    assert j["objects-cv"] == pytest.approx(1.0) and j["objects"] == pytest.approx(1.0)  # untrained = CV
    assert j["copy-last"] < 0.5


def test_given_input_masks_replace_the_segmenter():
    masks = world_masks()
    segmenter = Segmenter()
    batch = Batch(Models(segmenter, dynamics=constant_velocity_dynamics()),
                  masks_to_frames(masks)[:, :COMPETITION.input_frames], input_masks=masks[:, :COMPETITION.input_frames])
    assert torch.equal(pipelines.run("copy-last", batch), masks[:, COMPETITION.input_frames - 1])
    pipelines.run("objects", batch)
    assert segmenter.images == 0


def test_static_predictor_is_no_better_than_copy_last():
    j = scores(Models(Segmenter(), Predictor(static=True)))
    assert list(j) == ["copy-last", "frames", "oracle"]
    assert j["frames"] == pytest.approx(j["copy-last"])
    assert skill(j["frames"], j["copy-last"], j["oracle"]) == pytest.approx(0.0)


def test_rows_answer_frame_22_with_the_right_shape_and_dtype():
    batch, target = make_batch(Models(Segmenter(), Predictor(), Forecaster()))
    for name in pipelines.available(batch.models, with_frame22=True):
        mask = pipelines.run(name, batch)
        assert mask.shape == target.shape and mask.dtype == torch.long, name


def test_masks_are_segmented_once_per_batch():
    segmenter, forecaster = Segmenter(), Forecaster()
    batch, _ = make_batch(Models(segmenter, forecaster=forecaster))
    for name in ("copy-last", "masks", "masks+absent"):
        pipelines.run(name, batch)
    assert segmenter.images == 2 * 11  # the 11 input frames of 2 videos, nothing more
    assert forecaster.calls == 1


def test_copy_last_without_forecaster_segments_only_frame_11():
    segmenter = Segmenter()
    batch, _ = make_batch(Models(segmenter))
    pipelines.run("copy-last", batch)
    assert segmenter.images == 2


def test_absent_class_post_processing_removes_a_hallucination():
    models = Models(Segmenter(), forecaster=Forecaster(extra=40))
    batch, target = make_batch(models)
    raw = pipelines.run("masks", batch)
    assert (raw == 40).any()
    assert jaccard(raw, target) < 1.0
    fixed = pipelines.run("masks+absent", batch)
    assert not (fixed == 40).any()
    assert jaccard(fixed, target) == pytest.approx(1.0)


def test_drop_absent_classes_hand_case():
    mask = torch.tensor([[[1, 2], [3, 0]], [[1, 2], [3, 0]]])
    reference = torch.tensor([[[1, 1], [0, 0]], [[2, 3], [3, 3]]])
    expected = torch.tensor([[[1, 0], [0, 0]], [[0, 2], [3, 0]]])
    assert torch.equal(drop_absent_classes(mask, reference), expected)


def test_errors_name_what_is_missing():
    batch, _ = make_batch(Models(Segmenter()), with_frame22=False)
    with pytest.raises(ConfigError, match="frame 22"):
        pipelines.run("oracle", batch)
    with pytest.raises(ConfigError, match="forecaster"):
        pipelines.run("masks", batch)
    with pytest.raises(ConfigError, match="predictor"):
        pipelines.run("frames", batch)
    with pytest.raises(ConfigError, match="unknown pipeline"):
        pipelines.run("magic", batch)
    with pytest.raises(ConfigError, match="uint8 frames"):
        Batch(batch.models, batch.frames.float())
    assert pipelines.available(batch.models, with_frame22=False) == ["copy-last"]


@pytest.mark.gpu
def test_pipelines_and_metric_run_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from simvp_unet.metrics import MaskScore

    models = Models(Segmenter(), Predictor(), Forecaster(extra=40))
    masks = world_masks().cuda()
    frames = masks_to_frames(masks.cpu()).cuda()
    batch = Batch(models, frames[:, :COMPETITION.input_frames], frames[:, COMPETITION.target])
    for name in pipelines.available(models, with_frame22=True):
        answer = pipelines.run(name, batch)
        assert answer.is_cuda, name
        score = MaskScore(device="cuda")
        score.update(answer, masks[:, COMPETITION.target])
        expected = jaccard(answer.cpu(), masks[:, COMPETITION.target].cpu())
        assert score.jaccard() == pytest.approx(expected), name


def test_one_table_of_rows_names_what_each_row_needs():
    assert list(pipelines.PIPELINES) == ["copy-last", "frames", "oracle", "objects@true", "shapes@true",
                                         "no-entries", "masks", "masks+absent", "objects-cv", "objects"]
    for name, row in pipelines.PIPELINES.items():
        assert row.name == name and row.description and callable(row.function)
        assert "segmenter" in row.needs and set(row.needs) <= set(KINDS), name
    upper = ["oracle", "objects@true", "shapes@true", "no-entries"]
    assert [n for n, row in pipelines.PIPELINES.items() if row.reads_frame22] == upper
    assert [n for n, row in pipelines.PIPELINES.items() if row.reads_truth] == upper[1:]  # all read frame 22
    assert [n for n, row in pipelines.PIPELINES.items() if row.reads_camera] == ["shapes@true"]


def test_default_row_is_the_best_the_models_allow():
    assert pipelines.default_row(Models(Segmenter())) == "copy-last"
    assert pipelines.default_row(Models(Segmenter(), Predictor())) == "frames"
    assert pipelines.default_row(Models(Segmenter(), Predictor(), Forecaster())) == "masks"
    assert pipelines.default_row(Models(Segmenter(), Predictor(), Forecaster(), object())) == "objects"
    with pytest.raises(ConfigError, match="segmenter"):
        pipelines.default_row(Models())
    assert [f.name for f in dataclasses.fields(Models)] == list(KINDS)
    with pytest.raises(TypeError, match="tracker"):
        Models(tracker=object())
    with pytest.raises(TypeError, match="segmenter"):
        Models(Segmenter(), segmenter=Segmenter())


def test_results_table_reads_the_row_descriptions():
    from simvp_unet.report import results_table

    table = results_table({"videos": 1, "split": "val", "jaccard": {"masks": 0.5}, "skill": {"masks": None}})
    assert f"| masks | {pipelines.PIPELINES['masks'].description} | 0.5000 | n/a |" in table


@pytest.mark.gpu
def test_objects_forecast_on_cuda_equals_the_cpu_one():
    """The simulator and the network (friction, collisions, random corrections) on a GPU give the
    CPU's forecast."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from simvp_unet.objects import DynamicsNet, DynamicsNetConfig
    from simvp_unet.objects.serve import Dynamics

    torch.manual_seed(0)
    model = DynamicsNet(DynamicsNetConfig(image_size=(16, 80)))
    with torch.no_grad():
        model.physics.radius.fill_(0.2)  # squares 8 px apart touch: collisions happen
        for p in model.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    masks = world_masks()[:, :COMPETITION.input_frames].long()
    on_cpu = Dynamics(model).forecast_objects(masks)
    # full float32 matrix products: a trainer earlier in this process allows TF32 (10-bit
    # mantissas), which moved the centers by up to 5e-3 px here on an H100 after 11 steps
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        on_gpu = Dynamics(model.cuda()).forecast_objects(masks.cuda())
    finally:
        torch.set_float32_matmul_precision(precision)
    assert on_gpu.mask.is_cuda
    assert torch.allclose(on_gpu.centers, on_cpu.centers, atol=1e-3)
    assert torch.equal(on_gpu.mask.cpu(), on_cpu.mask)


# ---- upper bounds: rows that read the true masks ---------------------------------------


def test_upper_bound_rows_are_exact_on_the_squares_world():
    """Squares keep their shape: painted at their true places they are the true frame 22; no
    square enters late, so removing late entries changes nothing."""
    masks = world_masks()
    models = Models(Segmenter(), dynamics=constant_velocity_dynamics())
    batch = Batch(models, masks_to_frames(masks)[:, :COMPETITION.input_frames],
                  masks_to_frames(masks)[:, COMPETITION.target], truth=masks)
    assert pipelines.available(models, with_frame22=True, with_truth=True) == [
        "copy-last", "oracle", "objects@true", "no-entries", "objects-cv", "objects"]
    for name in ("objects@true", "no-entries"):
        assert torch.equal(pipelines.run(name, batch), masks[:, COMPETITION.target]), name
    with pytest.raises(ConfigError, match="camera"):
        pipelines.run("shapes@true", batch)
    without = Batch(models, batch.frames, batch.frame22)
    with pytest.raises(ConfigError, match="true masks"):
        pipelines.run("no-entries", without)
    with pytest.raises(ConfigError, match="true masks"):
        Batch(models, batch.frames, truth=masks[:, :COMPETITION.target])


def test_objects_entering_after_the_input_are_left_out():
    masks = world_masks()
    late = masks.clone()
    late[:, COMPETITION.input_frames + 2:, -4:, :6] = 40  # an object comes in after frame 11
    batch = Batch(Models(Segmenter(), dynamics=constant_velocity_dynamics()),
                  masks_to_frames(masks)[:, :COMPETITION.input_frames], truth=late,
                  frame22=masks_to_frames(late)[:, COMPETITION.target])
    for name in ("objects@true", "no-entries"):
        answer = pipelines.run(name, batch)
        assert not (answer == 40).any() and torch.equal(answer, masks[:, COMPETITION.target]), name


# A world of a cube (turned 30 degrees), a sphere and a cylinder sliding across the floor at
# the competition's size, drawn by a camera near the generator's (lengths in sphere radii).
CAMERA = Camera(focal=262.5, pitch=0.494, height=13.35, cube_half=0.9)
SHAPES = {class_id("cube", "rubber", "red"): CUBE, class_id("sphere", "metal", "blue"): SPHERE,
          class_id("cylinder", "rubber", "green"): CYLINDER}


def shapes_world(batch: int = 2) -> torch.Tensor:
    """long (B, 22, 160, 240): the true masks; video b starts a little further right."""
    ahead = (CAMERA.height - 1) / math.tan(CAMERA.pitch)  # where the optical axis meets the objects
    starts = np.array([[-7.0, ahead - 3], [-1.0, ahead + 4], [4.0, ahead - 1]])
    step = np.array([[0.25, 0.1], [0.2, -0.15], [0.15, 0.2]])
    videos = [[paint(CAMERA, [(cid, shape, starts[k] + [b, 0] + step[k] * t, math.radians(30))
                              for k, (cid, shape) in enumerate(SHAPES.items())])
               for t in range(COMPETITION.frames)] for b in range(batch)]
    return torch.from_numpy(np.array(videos))


def test_shapes_row_is_exact_on_a_world_drawn_by_its_camera():
    """Exact up to a few pixels on the objects' edges: a place read from pixels is known to a
    tenth of a pixel."""
    masks = shapes_world()
    frames = masks_to_frames(masks)
    models = Models(Segmenter(), dynamics=constant_velocity_dynamics(COMPETITION.size))
    batch = Batch(models, frames[:, :COMPETITION.input_frames], frames[:, COMPETITION.target], truth=masks,
                  camera=CAMERA)
    target = masks[:, COMPETITION.target]
    answer = pipelines.run("shapes@true", batch)
    for cid in SHAPES:
        assert ((answer == cid) != (target == cid)).sum() <= 0.01 * (target == cid).sum()
    assert torch.equal(pipelines.run("no-entries", batch), target)
    # the templates of frame 11, scaled by an unfitted (flat) ground plane, miss the perspective
    assert 0.5 < jaccard(pipelines.run("objects@true", batch), target) < 1.0


def test_evaluate_scores_every_row_without_meta_json(tmp_path):
    """A dataset of the real layout with no meta.json (as a real one): every row is scored, the
    camera is fitted to its true masks, and there is no breakdown by events."""
    from simvp_unet.evaluate import evaluate

    masks = shapes_world(batch=3)
    frames = masks_to_frames(masks).permute(0, 1, 3, 4, 2).numpy()
    for b in range(len(masks)):
        folder = tmp_path / "data" / "val" / layout.video_name(b)
        folder.mkdir(parents=True)
        for t in range(COMPETITION.frames):
            layout.write_frame(folder / layout.frame_name(t), frames[b, t])
        layout.write_mask(folder / layout.MASK_FILE, masks[b].numpy(), COMPETITION)
    models = Models(Segmenter(), dynamics=constant_velocity_dynamics(COMPETITION.size))
    results = evaluate(tmp_path / "data", "val", models, tmp_path / "eval", batch_size=2, pictures=1,
                       progress=False)
    assert list(results["jaccard"]) == pipelines.available(models, with_frame22=True, with_truth=True,
                                                           with_camera=True)
    assert {"objects@true", "shapes@true", "no-entries"} <= set(results["jaccard"])
    assert results["breakdown"] is None
    j = results["jaccard"]
    assert j["no-entries"] == pytest.approx(1.0) and j["oracle"] == pytest.approx(1.0)
    assert j["shapes@true"] > 0.97  # with a camera fitted to 3 videos, not the true one
    assert {"focal", "pitch", "height", "cube_half"} <= set(results["camera"])  # recorded
    assert results["skill"]["no-entries"] is not None
