"""Pipelines on the stand-in moving-squares world, whose answers are known exactly."""

import dataclasses

import pytest
import torch
from standins import Forecaster, Predictor, Segmenter, masks_to_frames, world_masks

from simvp_unet import pipelines
from simvp_unet.data.layout import COMPETITION
from simvp_unet.errors import ConfigError
from simvp_unet.kinds import KINDS
from simvp_unet.metrics import jaccard, skill
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


def constant_velocity_dynamics():
    """An untrained dynamics run with constant velocity, its simulator without friction or
    collisions (exact for the squares world)."""
    from simvp_unet.objects import DynamicsNet, DynamicsNetConfig
    from simvp_unet.objects.serve import Dynamics

    model = DynamicsNet(DynamicsNetConfig(image_size=(16, 80)))
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
    assert list(pipelines.PIPELINES) == ["copy-last", "frames", "oracle", "masks", "masks+absent",
                                         "objects-cv", "objects"]
    for name, row in pipelines.PIPELINES.items():
        assert row.name == name and row.description and callable(row.function)
        assert "segmenter" in row.needs and set(row.needs) <= set(KINDS), name
    assert [n for n, row in pipelines.PIPELINES.items() if row.reads_frame22] == ["oracle"]


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
