"""The task's shape is data: other frame counts, scored frames and image sizes, end to end.

Each example shape generates a tiny dataset, trains tiny runs of every kind on it through the
CLI, evaluates every row and writes and scores a submission; a run trained for one shape
refuses another in one line. The numbers are poor (a few steps); the plumbing is checked.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from simvp_unet.cli import main
from simvp_unet.data import layout, manifest
from simvp_unet.data.generate import GenerateConfig, generate
from simvp_unet.data.layout import COMPETITION, TaskShape
from simvp_unet.errors import ConfigError
from simvp_unet.kinds import KINDS
from simvp_unet.runs import load_run

pytestmark = pytest.mark.slow

SHAPES = {
    "8 in, frame 16 scored": TaskShape(frames=22, input_frames=8, target=15),
    "11 in, frame 30 of 32": TaskShape(frames=32, input_frames=11, target=29, height=80, width=120),
    "128 x 192": TaskShape(height=128, width=192),
}
# every tiny run trains on the train split's true masks (the data has no pseudo-labels)
ONLY_TRAIN = {kind: ("train_splits=[train]",) for kind in ("predictor", "forecaster", "dynamics")}


def _cli(*args: object) -> int:
    return main([str(a) for a in args])


def _train_all(data, out, tiny_args) -> None:
    for kind in KINDS:
        extra = [arg for item in ONLY_TRAIN.get(kind, ()) for arg in ("--set", item)]
        assert _cli("train", kind, "--data", data, *tiny_args(kind), *extra, "--workers", "0",
                    "--out", out / kind) == 0


@pytest.fixture(scope="module", params=list(SHAPES))
def shaped(request, tmp_path_factory, tiny_args):
    """(shape, dataset root, runs folder) of one example shape: a tiny dataset and every kind trained on it."""
    shape = SHAPES[request.param]
    root = tmp_path_factory.mktemp("shape")
    data = root / "data"
    generate(data, GenerateConfig(train=3, val=2, unlabeled=0, hidden=2, shape=shape), workers=1, progress=False)
    _train_all(data, root, tiny_args)
    return shape, data, root


def test_generated_files_follow_the_shape(shaped):
    shape, data, _ = shaped
    assert manifest.task_shape(data) == shape
    assert manifest.inferred_shape(data) == TaskShape(frames=shape.frames, input_frames=shape.input_frames,
                                                      target=shape.frames - 1, height=shape.height,
                                                      width=shape.width)
    video = data / "train" / "video_0"
    assert layout.read_frames(video, range(shape.frames)).shape == (shape.frames, shape.height, shape.width, 3)
    assert not (video / layout.frame_name(shape.frames)).exists()
    hidden = layout.list_videos(data, "hidden")[0][1]
    assert sorted(p.name for p in hidden.glob("*.png")) == sorted(layout.frame_name(t) for t in range(shape.input_frames))
    assert layout.read_mask(video, shape).shape == (shape.frames, shape.height, shape.width)


def test_runs_record_the_shape_and_every_row_evaluates(shaped, capsys):
    shape, data, runs = shaped
    for kind in KINDS:
        module = load_run(runs / kind)
        assert module.shape == shape, kind
    predictor = load_run(runs / "predictor")
    assert predictor.model.config.in_frames == shape.input_frames
    assert predictor.model.config.out_frames == min(shape.future_frames, shape.input_frames)
    assert load_run(runs / "dynamics").model.config.steps == shape.future_frames
    frames = torch.zeros(1, shape.input_frames, 3, *shape.size, dtype=torch.uint8)
    assert predictor.predict_frames(frames).shape == (1, shape.future_frames, 3, *shape.size)
    out = runs / "eval"
    assert _cli("evaluate", "--data", data, "--split", "val",
                "--segmenter", runs / "segmenter", "--predictor", runs / "predictor",
                "--forecaster", runs / "forecaster", "--dynamics", runs / "dynamics",
                "--out", out, "--pictures", "1") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["shape"] == shape.as_dict()
    assert {"copy-last", "frames", "oracle", "masks", "objects-cv", "objects", "no-entries"} <= set(results["jaccard"])
    # an exact row (no-entries, when nothing enters late): torchmetrics' float32 mean of ones can round above 1
    assert all(0.0 <= j <= 1.0 for j in results["jaccard"].values())
    assert list((out / "pictures").glob("video_*.png"))


def test_copy_last_scores_the_shapes_own_frames(shaped):
    """The copy-last row's Jaccard from the true masks is the Jaccard of the last input mask
    against the scored one: computed here from the files, with the shape's frame indices."""
    from simvp_unet.metrics import MaskScore

    shape, data, runs = shaped
    out = runs / "eval-true"
    assert _cli("evaluate", "--data", data, "--split", "val", "--segmenter", runs / "segmenter",
                "--input-masks", "true", "--out", out, "--pictures", "0") == 0
    got = json.loads((out / "results.json").read_text())["jaccard"]["copy-last"]
    score = MaskScore()
    for _, folder in layout.list_videos(data, "val"):
        mask = layout.read_mask(folder, shape)
        score.update(torch.from_numpy(mask[shape.last_input]), torch.from_numpy(mask[shape.target]))
    assert got == pytest.approx(score.jaccard(), abs=1e-6)


def test_predict_and_score_in_the_shape(shaped):
    shape, data, runs = shaped
    out = runs / "submission.pt"
    assert _cli("predict", "--data", data, "--segmenter", runs / "segmenter", "--dynamics", runs / "dynamics",
                "--out", out) == 0
    submission = torch.load(out, weights_only=True)
    assert submission.shape == (2, *shape.size)
    assert _cli("score", out, "--data", data) == 0


def test_a_run_of_another_shape_is_refused_in_one_line(shaped, tiny_data, capsys):
    shape, data, runs = shaped
    capsys.readouterr()
    code = _cli("evaluate", "--data", tiny_data, "--split", "val", "--segmenter", runs / "segmenter",
                "--dynamics", runs / "dynamics", "--out", runs / "wrong")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1  # the dynamics works in pixels of its frames
    assert "the dynamics run was trained for" in err and "train it on data of this shape" in err


def test_resuming_on_data_of_another_shape_is_refused(shaped, tiny_data, tiny_args, tmp_path, capsys):
    shape, data, runs = shaped
    assert shape != COMPETITION
    run = tmp_path / "seg"
    shutil.copytree(runs / "segmenter", run)
    capsys.readouterr()
    assert _cli("train", "segmenter", "--data", tiny_data, "--resume", "--out", run) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot resume" in err and "was trained on" in err


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(ConfigError, match="input_frames must be >= 2"):
        TaskShape(input_frames=1, target=5)
    with pytest.raises(ConfigError, match="scored frame"):
        TaskShape(frames=22, input_frames=11, target=22)
    with pytest.raises(ConfigError, match="scored frame"):
        TaskShape(frames=22, input_frames=11, target=10)
    with pytest.raises(ConfigError, match="keys"):
        TaskShape.from_dict({"frames": 22})


def test_a_video_of_another_size_is_named(tiny_data, tmp_path, capsys):
    """A dataset whose videos disagree on the image size: training names the odd frame in one line."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("packed", "tracks"))
    odd = data / "train" / "video_1" / layout.frame_name(3)
    layout.write_frame(odd, np.zeros((80, 120, 3), np.uint8))
    capsys.readouterr()
    assert _cli("train", "segmenter", "--data", data, "--set", "epochs=1", "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(odd) in err and "120x80" in err


def test_settings_that_cannot_serve_the_shape_are_one_line_errors(tiny_config):
    """Frame counts come from the data; a window or history the data's videos cannot give is named."""
    from simvp_unet.train.dynamics import DynamicsModule
    from simvp_unet.train.forecaster import ForecasterModule
    from simvp_unet.train.predictor import PredictorModule

    short = TaskShape(frames=12, input_frames=4, target=9)
    with pytest.raises(ConfigError, match="model.history=6 displacements need 7 input frames; the data has 4"):
        DynamicsModule.for_shape(tiny_config("dynamics"), short)
    fitted = DynamicsModule.for_shape(tiny_config("dynamics", "model.history=3", "window_shift=2"), short)
    assert fitted.model.steps == short.future_frames and fitted.model.image_size == short.size
    with pytest.raises(ConfigError, match="window_shift must be in 0..7"):
        DynamicsModule.for_shape(tiny_config("dynamics", "model.history=3", "window_shift=8"), short)
    with pytest.raises(ConfigError, match="model.in_frames=10, but the data's task shape"):
        PredictorModule.for_shape(tiny_config("predictor", "model.in_frames=10", "model.out_frames=10"), short)
    predictor = PredictorModule.for_shape(tiny_config("predictor"), short)
    assert (predictor.model.in_frames, predictor.model.out_frames) == (4, 4)  # 6 forecast: rolled out
    with pytest.raises(ConfigError, match="rollout_frames must be in 0..6"):
        ForecasterModule.for_shape(tiny_config("forecaster", "rollout_frames=7"), short)
