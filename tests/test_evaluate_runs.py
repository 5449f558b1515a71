"""The commands on real (tiny) trained runs and generated data, through the CLI.

Tiny models trained for a few steps: the numbers are poor, the plumbing is what is checked
(run loading, resizing to the working resolution and back, file formats, exit codes).
"""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from simvp_unet.cli import main
from simvp_unet.data import layout
from simvp_unet.kinds import KINDS
from simvp_unet.models.export import load_safetensors
from simvp_unet.pipelines import Models
from simvp_unet.runs import load_exported, load_run
from simvp_unet.videos import forecast

# training a tiny run of every kind takes 10-30 s depending on the load of the machine
pytestmark = pytest.mark.slow

ROWS = ["copy-last", "frames", "oracle", "objects@true", "shapes@true", "no-entries", "masks", "masks+absent",
        "objects-cv", "objects"]


def _cli(*args: str) -> None:
    assert main([str(a) for a in args]) == 0


@pytest.fixture(scope="module")
def runs(tiny_args, tiny_data, tmp_path_factory):
    """Tiny segmenter, predictor, forecaster and dynamics runs, on a copy of the tiny data
    (labelled in place, so that the forecaster and the dynamics train on pseudo-labels too)."""
    root = tmp_path_factory.mktemp("runs")
    data = root / "data"
    shutil.copytree(tiny_data, data)
    for kind in KINDS:  # in training order: the segmenter first
        _cli("train", kind, "--data", data, *tiny_args(kind), "--workers", "0", "--out", root / kind)
        if kind == "segmenter":  # pseudo-labels, before the forecaster trains
            _cli("label", "--data", data, "--segmenter", root / "segmenter")
    return root


def test_label_wrote_valid_pseudo_labels_and_resumes(runs, capsys):
    data = runs / "data"
    videos = layout.list_videos(data, "unlabeled")
    assert videos
    for _, folder in videos:
        mask = np.load(folder / layout.PRED_MASK_FILE)
        assert mask.dtype == np.uint8 and mask.shape == (22, layout.COMPETITION.height, layout.COMPETITION.width)
        assert mask.max() < 49
        assert not (folder / layout.MASK_FILE).exists()
    _cli("label", "--data", data, "--segmenter", runs / "segmenter")
    assert f"wrote 0 mask_pred.npy, skipped {len(videos)}" in capsys.readouterr().out


def test_evaluate_all_rows_from_real_runs(runs, capsys):
    out = runs / "eval"
    _cli("evaluate", "--data", runs / "data", "--segmenter", runs / "segmenter", "--predictor",
         runs / "predictor", "--forecaster", runs / "forecaster", "--dynamics", runs / "dynamics",
         "--out", out, "--pictures", "1")
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert list(results["jaccard"]) == ROWS and list(results["skill"]) == ROWS
    # no-entries is exact here (nothing enters late), and the metric's float32 mean of ones can round above 1
    assert all(0.0 <= j <= 1.0 for j in results["jaccard"].values())
    assert results["videos"] == len(layout.list_videos(runs / "data", "val"))
    assert results["runs"]["forecaster"] == str(runs / "forecaster")
    assert (out / "results.md").read_text() in printed
    assert len(list((out / "pictures").glob("video_*.png"))) == 1
    assert len(list((out / "pictures").glob("video_*.gif"))) == 1
    # the breakdown by events after frame 11 covers every video twice (collision or not, entry or not)
    parts = results["breakdown"]
    assert sum(p["videos"] for p in parts.values()) == 2 * results["videos"]
    assert "Jaccard by subset" in printed
    assert results["input_masks"] == "segmented"


def test_evaluate_from_true_input_masks(runs):
    """With the true masks of frames 1..11, copy-last is exactly the true frame-11 mask."""
    out = runs / "eval-true"
    _cli("evaluate", "--data", runs / "data", "--segmenter", runs / "segmenter", "--dynamics",
         runs / "dynamics", "--out", out, "--pictures", "0", "--input-masks", "true")
    results = json.loads((out / "results.json").read_text())
    assert results["input_masks"] == "true"
    camera = load_run(runs / "dynamics").model.floor.camera()  # shapes@true draws with the run's own
    assert results["camera"]["focal"] == pytest.approx(camera.focal)
    from simvp_unet.metrics import MaskScore
    score = MaskScore()
    for _, folder in layout.list_videos(runs / "data", "val"):
        mask = np.load(folder / layout.MASK_FILE)
        score.update(torch.from_numpy(mask[layout.COMPETITION.last_input]), torch.from_numpy(mask[layout.COMPETITION.target]))
    assert results["jaccard"]["copy-last"] == pytest.approx(score.jaccard())
    assert {"objects-cv", "objects"} <= set(results["jaccard"])


def test_dynamics_run_loads_without_lightning_and_exports(runs, tmp_path):
    dynamics = load_run(runs / "dynamics")
    # the run fitted a camera to its training tracks and moves the objects on its floor, from
    # starting paths within a fitted tolerance
    from simvp_unet.objects.physics import WINDOW_GRID
    assert dynamics.model.floor.fitted and float(dynamics.model.physics.window) in WINDOW_GRID
    masks = torch.from_numpy(np.stack([np.load(folder / layout.MASK_FILE)[: layout.COMPETITION.input_frames]
                                       for _, folder in layout.list_videos(runs / "data", "val")]))
    result = dynamics.forecast_objects(masks)
    assert result.mask.shape == (len(masks), layout.COMPETITION.height, layout.COMPETITION.width)
    assert result.centers.shape[2:] == (layout.COMPETITION.future_frames, 2)
    # the forecast starts from the sightings placed by their silhouettes: near the tracked boxes
    seen = result.tracks.present
    assert result.past.shape == result.tracks.center.shape and torch.isfinite(result.past[seen]).all()
    assert (result.past[seen] - result.tracks.center[seen]).norm(dim=-1).median() < 3
    _cli("export", runs / "dynamics", "--format", "safetensors", "--out", tmp_path / "dyn.safetensors")
    rebuilt = load_exported(tmp_path / "dyn.safetensors")
    assert torch.equal(rebuilt.plane.slope, dynamics.model.plane.slope)
    assert torch.equal(rebuilt.floor.numbers, dynamics.model.floor.numbers)
    assert main(["export", str(runs / "dynamics"), "--format", "onnx", "--out", str(tmp_path / "d.onnx")]) == 2
    assert (runs / "data" / "tracks" / "unlabeled.npz").is_file()  # pseudo-label tracks were cached


def test_predict_then_score(runs, capsys):
    submission = runs / "submission.pt"
    _cli("predict", "--data", runs / "data", "--segmenter", runs / "segmenter", "--forecaster",
         runs / "forecaster", "--out", submission)
    assert "pipeline masks" in capsys.readouterr().out
    _cli("predict", "--data", runs / "data", "--segmenter", runs / "segmenter", "--forecaster",
         runs / "forecaster", "--dynamics", runs / "dynamics", "--out", submission)
    assert "pipeline objects" in capsys.readouterr().out
    masks = torch.load(submission, weights_only=True)
    hidden = layout.list_videos(runs / "data", "hidden")
    assert masks.dtype == torch.uint8 and masks.shape == (len(hidden), layout.COMPETITION.height, layout.COMPETITION.width)
    _cli("score", submission, "--data", runs / "data")
    assert f"on {len(hidden)} hidden videos" in capsys.readouterr().out


def test_predict_videos_on_a_folder_of_two_videos(runs, tmp_path, capsys):
    """Your own videos: two folders of PNG frames (one in the dataset's names, one in other
    names and with more frames than the models read) get a palette PNG, a .npy and a picture
    each; their masks are the submission's for the same frames."""
    hidden = layout.list_videos(runs / "data", "hidden")[:2]
    videos = tmp_path / "videos"
    shutil.copytree(hidden[0][1], videos / "first")
    (videos / "second").mkdir(parents=True)
    n = layout.COMPETITION.input_frames
    for t in range(n):
        shutil.copy(hidden[1][1] / layout.frame_name(t), videos / "second" / f"frame_{t + 1}.png")
    shutil.copy(hidden[1][1] / layout.frame_name(0), videos / "second" / f"frame_{n + 1}.png")  # not read
    out = tmp_path / "forecasts"
    runs_args = ["--segmenter", runs / "segmenter", "--dynamics", runs / "dynamics"]
    _cli("predict", "--videos", videos, *runs_args, "--out", out)
    assert "of 2 videos" in capsys.readouterr().out
    _cli("predict", "--data", runs / "data", *runs_args, "--out", tmp_path / "s.pt")
    submission = torch.load(tmp_path / "s.pt", weights_only=True)
    for row, name in enumerate(["first", "second"]):
        mask = np.load(out / f"{name}.npy")
        assert mask.dtype == np.uint8 and mask.shape == (layout.COMPETITION.height, layout.COMPETITION.width)
        with Image.open(out / f"{name}.png") as image:
            assert image.mode == "P" and np.array_equal(np.asarray(image), mask)
        # the same frames as the submission's row (batches of another size: float rounding may
        # move an edge pixel)
        assert (mask == submission[row].numpy()).mean() > 0.999
        assert (out / f"{name}_picture.png").is_file()
    # the Python API, from a uint8 tensor of frames
    models = Models.load({"segmenter": runs / "segmenter", "dynamics": runs / "dynamics"})
    frames = torch.from_numpy(layout.read_frames(hidden[0][1], range(n))).permute(0, 3, 1, 2)[None]
    assert (forecast(models, frames)[0] == submission[0].long()).float().mean() > 0.999


def test_predict_videos_names_a_short_video(runs, tmp_path, capsys):
    (tmp_path / "videos" / "short").mkdir(parents=True)
    source = layout.list_videos(runs / "data", "hidden")[0][1]
    for t in range(3):
        shutil.copy(source / layout.frame_name(t), tmp_path / "videos" / "short")
    capsys.readouterr()
    code = main(["predict", "--videos", str(tmp_path / "videos"), "--segmenter", str(runs / "segmenter"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "short has 3 PNG frames" in err


def test_export_safetensors_and_onnx_match_the_run(runs, tmp_path):
    module = load_run(runs / "segmenter")
    _cli("export", runs / "segmenter", "--format", "safetensors", "--out", tmp_path / "seg.safetensors")
    rebuilt = load_safetensors(tmp_path / "seg.safetensors")
    x = torch.rand(1, 3, *module.resolution)
    with torch.no_grad():
        expected = module.model(x)
        assert torch.allclose(rebuilt(x), expected)

    _cli("export", runs / "forecaster", "--format", "onnx", "--out", tmp_path / "fc.onnx")
    forecaster = load_run(runs / "forecaster")
    ids = torch.randint(0, 49, (2, 11, *forecaster.resolution))
    session = ort.InferenceSession(str(tmp_path / "fc.onnx"))
    (got,) = session.run(None, {"input": ids.numpy()})
    with torch.no_grad():
        assert np.allclose(got, forecaster.model(ids).numpy(), atol=1e-4)


def test_missing_run_is_one_line_exit_2(runs, tmp_path, capsys):
    code = main(["evaluate", "--data", str(runs / "data"), "--segmenter", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope" in err
    assert not (tmp_path / "eval").exists()
