"""Fault injection in training: a bad file fails the start in one line naming it, before the
first step and before the folder becomes a run; a run folder left without last.ckpt says the
one way to go on; the dynamics refuses data without objects; its track caches can live outside
a read-only dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from faultlib import one_error

from simvp_unet.cli import main
from simvp_unet.data import layout

SHAPE = (layout.COMPETITION.frames, layout.COMPETITION.height, layout.COMPETITION.width)






def train(kind: str, data: Path, out: Path, tiny_args, *extra: str) -> int:
    return main(["train", kind, "--data", str(data), "--out", str(out), "--workers", "0", *tiny_args(kind),
                 *extra])


def nothing_written(run: Path) -> bool:
    """True when a failed start left no trace: no config.yaml, no checkpoint, no log."""
    return not run.exists() or not any(run.iterdir())


# ---------------------------------------------------------------------------- data checked before the first step


def _video(data: Path, split: str) -> Path:
    """The folder of the last video of a split."""
    return layout.list_videos(data, split)[-1][1]


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=array.dtype.hasobject)
    return path


def _mask(dtype: type = np.uint8, **change: int) -> np.ndarray:
    """A mask with one object (id 5) in frame 3, and `t<frame>=id` pixels set in the corner."""
    mask = np.zeros(SHAPE, dtype)
    mask[3, 10:20, 10:20] = 5
    for where, value in change.items():
        mask[int(where[1:]), 0, 0] = value
    return mask


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _flip_a_byte(path: Path) -> Path:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def _remove(path: Path) -> Path:
    path.unlink()
    return path


def _pseudo_labels(data: Path, last: np.ndarray) -> Path:
    """Pseudo-labels for every unlabeled video, `last` for the last one; returns its file."""
    videos = layout.list_videos(data, "unlabeled")
    for _, folder in videos[:-1]:
        _save(folder / layout.PRED_MASK_FILE, _mask())
    return _save(videos[-1][1] / layout.PRED_MASK_FILE, last)


def _resize(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (layout.COMPETITION.width // 2, layout.COMPETITION.height // 2)).save(path)
    return path


# name -> (kinds that read the file, damage: dataset -> the damaged file, what the line says).
# Each one is in the LAST video of its split: a batch may never sample it in a short run. (The
# dynamics reads masks once, to extract the tracks it trains on: it checked them already.)
MASKS = ("segmenter", "forecaster", "dynamics")
FRAMES = ("segmenter", "predictor")
FAULTS = {
    "float mask": (MASKS, lambda d: _save(_video(d, "train") / layout.MASK_FILE, _mask().astype(np.float32)),
                   "dtype float32"),
    "mask id -1": (MASKS, lambda d: _save(_video(d, "train") / layout.MASK_FILE, _mask(np.int16, t21=-1)),
                   "class ids -1..5"),
    "mask id 49": (MASKS, lambda d: _save(_video(d, "val") / layout.MASK_FILE, _mask(t21=49)),
                   "class ids 0..49"),
    "21-frame mask": (MASKS, lambda d: _save(_video(d, "train") / layout.MASK_FILE, _mask()[:21]),
                      "shape (21, 160, 240)"),
    "object-array mask": (MASKS, lambda d: _save(_video(d, "train") / layout.MASK_FILE,
                                                 np.array([{"a": 1}] * 3, dtype=object)), "corrupt mask file"),
    "truncated mask": (MASKS, lambda d: _truncate(_video(d, "val") / layout.MASK_FILE), "corrupt mask file"),
    "pseudo-label id 49": (("forecaster", "dynamics"), lambda d: _pseudo_labels(d, _mask(t0=49)),
                           "class ids 0..49"),
    "missing frame": (FRAMES, lambda d: _remove(_video(d, "train") / layout.frame_name(17)), "missing frame"),
    "truncated frame": (FRAMES, lambda d: _truncate(_video(d, "val") / layout.frame_name(20)), "truncated"),
    "damaged frame": (FRAMES, lambda d: _flip_a_byte(_video(d, "train") / layout.frame_name(9)), "checksum"),
    "small frame": (FRAMES, lambda d: _resize(_video(d, "train") / layout.frame_name(4)),
                    "is 120x80, expected 240x160"),
}


@pytest.mark.parametrize(("fault", "kind"), [(f, k) for f, (kinds, _, _) in FAULTS.items() for k in kinds])
def test_a_bad_file_fails_the_start(data, tmp_path, capsys, tiny_args, fault, kind):
    """Every file a run reads is checked before training: the run fails at once in one line
    naming the file, and the folder does not become a run (nothing to resume, nothing to clean)."""
    _, damage, says = FAULTS[fault]
    bad = damage(data)
    run = tmp_path / "run"
    assert train(kind, data, run, tiny_args) == 2
    err = one_error(capsys)
    assert str(bad) in err and says in err, err
    assert nothing_written(run)


def test_files_a_run_does_not_read_are_not_checked(data, tmp_path, capsys, tiny_args):
    """The predictor reads frames only; the forecaster masks only."""
    _save(_video(data, "train") / layout.MASK_FILE, _mask(t21=49))
    assert train("predictor", data, tmp_path / "pred", tiny_args) == 0
    (_video(data, "val") / layout.frame_name(3)).unlink()
    _save(_video(data, "train") / layout.MASK_FILE, _mask())
    assert train("forecaster", data, tmp_path / "fc", tiny_args) == 0


def test_the_check_reads_no_pixels(data, monkeypatch):
    """PNG frames are checked from their bytes (checksums, header): no decoding."""
    from simvp_unet.kinds import KINDS
    from simvp_unet.train.splits import check_readable

    def decoded(*args, **kwargs):
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(layout, "read_frame", decoded)
    config = KINDS["segmenter"].config_class()
    check_readable(*KINDS["segmenter"].trainer().datasets(config, data))


# ---------------------------------------------------------------------------- a run folder without last.ckpt


@pytest.fixture(scope="module")
def segmenter_run(tiny_args, tiny_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "seg"
    assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--workers", "0",
                 *tiny_args("segmenter")]) == 0
    return run


def test_a_run_without_last_ckpt_says_the_one_way_on(segmenter_run, tiny_data, tmp_path, capsys, tiny_args):
    """best.ckpt but no last.ckpt (deleted, or killed between the two writes): --resume and a
    plain start give the same one instruction, and following it works."""
    run = Path(shutil.copytree(segmenter_run, tmp_path / "run"))
    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    last.unlink()
    resume = ["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--workers", "0"]
    assert main([*resume, "--resume"]) == 2
    err = one_error(capsys)
    assert f"{best} is intact" in err and f"copy it to {last} and run with --resume" in err, err
    assert "without --resume" not in err
    assert main([*resume, *tiny_args("segmenter")]) == 2
    err = one_error(capsys)
    assert f"copy it to {last} and run with --resume" in err and "pass --resume" not in err, err
    assert not last.exists()

    shutil.copyfile(best, last)
    assert main([*resume, "--resume"]) == 0


def test_a_run_without_any_usable_checkpoint_says_start_elsewhere(segmenter_run, tiny_data, tmp_path, capsys,
                                                                  tiny_args):
    run = Path(shutil.copytree(segmenter_run, tmp_path / "run"))
    (run / "checkpoints" / "last.ckpt").unlink()
    (run / "checkpoints" / "best.ckpt").write_bytes(b"garbage")
    for extra in (["--resume"], tiny_args("segmenter")):
        assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(run), *extra]) == 2
        err = one_error(capsys)
        assert "no intact checkpoint" in err and "another --out" in err and "--resume" not in err, err


# ---------------------------------------------------------------------------- the dynamics without objects


def _no_objects(folder: Path, name: str = layout.MASK_FILE) -> None:
    layout.write_mask(folder / name, np.zeros(SHAPE, np.uint8), layout.COMPETITION)


def test_dynamics_refuses_a_validation_split_without_objects(data, tmp_path, capsys, tiny_args):
    """Background-only val masks gave 'best val/error 0.0000' and exit 0."""
    for _, folder in layout.list_videos(data, "val"):
        _no_objects(folder)
    run = tmp_path / "run"
    assert train("dynamics", data, run, tiny_args) == 2
    err = one_error(capsys)
    assert "validation split has no objects" in err and str(data / "val") in err
    assert nothing_written(run)


def test_dynamics_refuses_training_tracks_without_objects(data, tmp_path, capsys, tiny_args):
    """An empty train/ and background-only pseudo-labels trained on 0 tracks, silently."""
    for _, folder in layout.list_videos(data, "train"):
        shutil.rmtree(folder)
    for _, folder in layout.list_videos(data, "unlabeled"):
        _no_objects(folder, layout.PRED_MASK_FILE)
    run = tmp_path / "run"
    assert train("dynamics", data, run, tiny_args) == 2
    err = one_error(capsys)
    assert "no tracks in the training splits" in err and str(data / "unlabeled") in err
    assert nothing_written(run)


# ---------------------------------------------------------------------------- the dynamics' track caches


def test_dynamics_keeps_its_track_caches_in_tracks_dir(data, tmp_path, tiny_args):
    tracks = tmp_path / "tracks"
    assert train("dynamics", data, tmp_path / "run", tiny_args, "--set", f"tracks_dir={tracks}") == 0
    assert sorted(p.name for p in tracks.iterdir()) == ["train.npz", "val.npz"]
    assert not (data / "tracks").exists()  # the dataset is left as it was
