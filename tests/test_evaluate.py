"""evaluate / predict / score / label (the library and the commands) on an on-disk moving-squares dataset with stand-in models.

The stand-ins are exact (see standins.py), so every number below is known in advance. The
same commands on real trained runs are covered in tests/test_evaluate_runs.py.
"""

import json
import os

import numpy as np
import pytest
import torch
from standins import Forecaster, Predictor, Segmenter, world_masks, write_squares_dataset

from simvp_unet.cli import main
from simvp_unet.data import layout
from simvp_unet.data.layout import COMPETITION
from simvp_unet.errors import ConfigError
from simvp_unet.evaluate import evaluate
from simvp_unet.label import label
from simvp_unet.metrics import jaccard
from simvp_unet.pipelines import Models, default_row
from simvp_unet.submission import predict, score


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    write_squares_dataset(root)
    return root


def test_evaluate_rows_numbers_and_files(squares, tmp_path):
    models = Models(Segmenter(), Predictor(static=True), Forecaster(extra=40))
    out = tmp_path / "eval"
    results = evaluate(squares, "val", models, out, batch_size=2, pictures=2,
                          runs={"segmenter": "stand-in"}, progress=False)
    assert list(results["jaccard"]) == ["copy-last", "frames", "oracle", "no-entries", "masks", "masks+absent"]
    masks = world_masks(batch=3, height=layout.COMPETITION.height, width=layout.COMPETITION.width)
    copy_last = jaccard(masks[:, COMPETITION.last_input], masks[:, COMPETITION.target])
    j = results["jaccard"]
    assert j["copy-last"] == pytest.approx(copy_last)
    assert j["frames"] == pytest.approx(copy_last)  # the static predictor repeats frame 11
    assert j["oracle"] == pytest.approx(1.0)
    assert j["masks"] < 1.0  # the hallucinated class 40 costs a class of IoU 0
    assert j["masks+absent"] == pytest.approx(1.0)
    assert results["skill"]["copy-last"] == 0.0 and results["skill"]["oracle"] == 1.0
    assert results["skill"]["masks+absent"] == pytest.approx(1.0)
    assert results["videos"] == 3 and results["split"] == "val"
    per_class = results["per_class_iou"]["masks"]
    assert per_class["40 yellow metal cylinder"] == 0.0 and per_class["5 brown metal cube"] == 1.0
    assert per_class["1 gray metal cube"] is None

    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    table = (out / "results.md").read_text()
    assert "| masks+absent |" in table and "| 1.0000 |" in table
    pictures = sorted(p.name for p in (out / "pictures").iterdir())
    assert pictures == ["video_1000.gif", "video_1000.png", "video_1010.gif", "video_1010.png"]
    # written through a temporary file, yet with the mode of any file made under this umask
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "results.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_evaluate_limit_and_segmenter_only(squares, tmp_path):
    results = evaluate(squares, "val", Models(Segmenter()), tmp_path, limit=1, pictures=0,
                          progress=False)
    assert list(results["jaccard"]) == ["copy-last", "oracle", "no-entries"]
    assert results["videos"] == 1
    assert not (tmp_path / "pictures").exists()
    with pytest.raises(ConfigError, match="labeled split"):
        evaluate(squares, "hidden", Models(Segmenter()), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="--limit"):
        evaluate(squares, "val", Models(Segmenter()), tmp_path, limit=0, progress=False)


def test_predict_writes_ordered_uint8_and_score_round_trip(squares, tmp_path, capsys):
    out = tmp_path / "submission.pt"
    submission = predict(squares, Models(Segmenter(), forecaster=Forecaster()), out,
                            batch_size=2, progress=False)
    assert submission.dtype == torch.uint8 and submission.shape == (3, layout.COMPETITION.height, layout.COMPETITION.width)
    loaded = torch.load(out, weights_only=True)
    assert torch.equal(loaded, submission)
    # ascending video index: 15000, 15010, 15020 are videos b = 0, 1, 2 of the world
    truth = world_masks(batch=3, height=layout.COMPETITION.height, width=layout.COMPETITION.width)[:, COMPETITION.target]
    assert torch.equal(loaded.long(), truth)
    assert score(out, squares) == {"jaccard": pytest.approx(1.0), "videos": 3}
    assert main(["score", str(out), "--data", str(squares)]) == 0
    assert "Jaccard 1.0000 on 3 hidden videos" in capsys.readouterr().out

    copy_last = predict(squares, Models(Segmenter()), out, pipeline=None, progress=False)
    assert score(out, squares)["jaccard"] == pytest.approx(jaccard(copy_last, truth))
    assert default_row(Models(Segmenter(), Predictor())) == "frames"
    with pytest.raises(ConfigError, match="frame 22"):
        predict(squares, Models(Segmenter()), out, pipeline="oracle", progress=False)
    with pytest.raises(ConfigError, match="forecaster"):
        predict(squares, Models(Segmenter()), out, pipeline="masks", progress=False)


def _bad(tmp_path, obj, name="bad.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda: torch.zeros(3, 160, 240), "dtype torch.float32"),
    (lambda: torch.zeros(3, 240, 160, dtype=torch.uint8), "shape (3, 240, 160)"),
    (lambda: torch.zeros(3, 1, 160, 240, dtype=torch.uint8), "shape (3, 1, 160, 240)"),
    (lambda: torch.zeros(2, 160, 240, dtype=torch.uint8), "has 2 masks, the hidden set has 3"),
    (lambda: torch.full((3, 160, 240), 49, dtype=torch.int64), "class ids 49..49"),
    (lambda: torch.full((3, 160, 240), -1, dtype=torch.int64), "class ids -1..-1"),
    (lambda: {"masks": torch.zeros(3, 160, 240, dtype=torch.uint8)}, "holds a dict"),
])
def test_bad_submissions_exit_2_with_one_line(squares, tmp_path, capsys, make, message):
    path = _bad(tmp_path, make())
    assert main(["score", str(path), "--data", str(squares)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simvp-unet: error: ")
    assert message in err and str(path) in err


def test_unreadable_or_missing_submission(squares, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    assert main(["score", str(junk), "--data", str(squares)]) == 2
    assert "not a file written by torch.save" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "none.pt"), "--data", str(squares)]) == 2
    assert "submission not found" in capsys.readouterr().err
    # pickled code is refused by weights_only loading, as a data error, not executed
    path = _bad(tmp_path, {"fn": np.ones})
    assert main(["score", str(path), "--data", str(squares)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_label_writes_pseudo_labels_and_resumes(squares, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(squares, root)
    segmenter = Segmenter()
    report = label(root, segmenter, progress=False)
    assert report == {"unlabeled": {"written": 3, "skipped": 0}}
    assert segmenter.images == 3 * 22
    truth = world_masks(batch=3, height=layout.COMPETITION.height, width=layout.COMPETITION.width)
    for b, (index, folder) in enumerate(layout.list_videos(root, "unlabeled")):
        assert index == 2000 + 10 * b
        pred = np.load(folder / layout.PRED_MASK_FILE)
        assert pred.dtype == np.uint8 and pred.shape == (22, layout.COMPETITION.height, layout.COMPETITION.width)
        assert np.array_equal(pred, truth[b].numpy())
        assert not (folder / layout.MASK_FILE).exists()
        assert not list(folder.glob(".*tmp*"))  # no temporary files left behind

    # resumable: one video lost its pseudo-label, only that one is segmented again
    (root / "unlabeled" / "video_2010" / layout.PRED_MASK_FILE).unlink()
    segmenter.images = 0
    assert label(root, segmenter, progress=False) == {"unlabeled": {"written": 1, "skipped": 2}}
    assert segmenter.images == 22

    # labeled splits get mask_pred.npy beside an untouched mask.npy
    val = root / "val" / "video_1000"
    before = (val / layout.MASK_FILE).read_bytes()
    label(root, segmenter, splits=("val",), progress=False)
    assert (val / layout.MASK_FILE).read_bytes() == before
    assert (val / layout.PRED_MASK_FILE).is_file()
    with pytest.raises(ConfigError, match="hidden"):
        label(root, segmenter, splits=("hidden",), progress=False)


@pytest.mark.parametrize("command", ["evaluate", "predict", "score", "export", "label"])
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and f"simvp-unet {command}" in text
