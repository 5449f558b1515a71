"""Fault injection: every kind of fault a user can meet ends in one line naming the path or value,
the right exit code, nothing half-written and nothing good changed.

Faults: outputs that cannot be written (a file where a folder is needed and the reverse, a full
disk, no permission), runs of the wrong kind, damaged checkpoints, failed training starts,
damaged datasets, regeneration with other settings, interrupts, and messages that must not
quote unsafe advice. Tiny data and two tiny runs (a segmenter and a predictor, a few seconds).
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from faultlib import one_error, tree

from simvp_unet.cli import main
from simvp_unet.data import layout
from simvp_unet.train.segmenter import SegmenterModule


@pytest.fixture(scope="module")
def runs(tiny_args, tiny_data, tmp_path_factory) -> dict[str, Path]:
    """A tiny segmenter and a tiny predictor (each is the wrong kind for the other's options)."""
    root = tmp_path_factory.mktemp("fault_runs")
    out = {}
    for kind in ("segmenter", "predictor"):
        out[kind] = root / kind
        assert main(["train", kind, "--data", str(tiny_data), "--out", str(out[kind]), "--workers", "0",
                     *tiny_args(kind)]) == 0
    return out


# ---------------------------------------------------------------------------- outputs


def test_output_file_where_a_folder_is_needed(data, runs, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    seg = str(runs["segmenter"])
    commands = [
        ["data", "generate", "--out", str(a_file), "--quiet"],
        ["evaluate", "--data", str(data), "--segmenter", seg, "--out", str(a_file)],
        ["train", "segmenter", "--data", str(data), "--out", str(a_file)],
        ["evaluate", "--data", str(data), "--segmenter", seg, "--out", str(a_file / "eval")],
        ["predict", "--data", str(data), "--segmenter", seg, "--out", str(a_file / "sub.pt")],
        ["data", "show", str(data), "--video", "0", "--out", str(a_file / "v.png")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = one_error(capsys)
        assert str(a_file) in err and "is a file" in err, argv
    assert a_file.read_text() == "keep me"


@pytest.mark.parametrize("command", ["predict", "export", "show", "sheet"])
def test_output_folder_where_a_file_is_needed(data, runs, tmp_path, capsys, command):
    folder = tmp_path / "taken"
    folder.mkdir()
    argv = {
        "predict": ["predict", "--data", str(data), "--segmenter", str(runs["segmenter"]), "--out", str(folder)],
        "export": ["export", str(runs["segmenter"]), "--format", "safetensors", "--out", str(folder)],
        "show": ["data", "show", str(data), "--video", "0", "--out", str(folder)],
        "sheet": ["data", "show", str(data), "--sheet", "--out", str(folder)],
    }[command]
    assert main(argv) == 2
    err = one_error(capsys)
    assert str(folder) in err and "folder" in err
    assert list(folder.iterdir()) == []


def test_unusable_output_is_found_before_any_work(data, tmp_path, capsys):
    """evaluate and predict check --out before loading runs or reading videos."""
    (tmp_path / "f").write_text("")
    missing_run = str(tmp_path / "no_such_run")
    for argv in (["evaluate", "--data", str(data), "--segmenter", missing_run, "--out", str(tmp_path / "f")],
                 ["predict", "--data", str(data), "--segmenter", missing_run, "--out", str(tmp_path)]):
        assert main(argv) == 2
        err = one_error(capsys)
        assert "no_such_run" not in err  # the output was refused first


@pytest.mark.parametrize(("where", "error", "says"), [
    ("mkstemp", errno.ENOSPC, "no space left"),
    ("mkstemp", errno.EACCES, "permission denied"),
    ("replace", errno.ENOSPC, "no space left"),
    ("replace", errno.EROFS, "read-only"),
])
def test_write_failures_name_the_path(data, tmp_path, capsys, monkeypatch, where, error, says):
    out = tmp_path / "v.png"

    def fail(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(tempfile if where == "mkstemp" else os, "mkstemp" if where == "mkstemp" else "replace",
                        fail)
    assert main(["data", "show", str(data), "--video", "0", "--out", str(out)]) == 2
    err = one_error(capsys)
    assert f"cannot write {out}:" in err and says in err
    assert list(tmp_path.iterdir()) == [data]  # no file, no temporary left behind


def test_full_disk_in_torch_save_names_the_path(data, runs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sub.pt"

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    assert main(["predict", "--data", str(data), "--segmenter", str(runs["segmenter"]), "--out", str(out)]) == 2
    err = one_error(capsys)
    assert f"cannot write {out}:" in err and "disk" in err and "enforce" not in err
    assert list(tmp_path.iterdir()) == [data]


def test_full_disk_while_training_names_the_checkpoint(tiny_args, tiny_data, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--workers", "0",
                 *tiny_args("segmenter")]) == 2
    err = one_error(capsys)
    assert "cannot write " in err and ".ckpt" in err and "enforce" not in err
    assert not list((run / "checkpoints").glob("*")) if (run / "checkpoints").exists() else True


def test_full_disk_while_generating_names_the_video(tmp_path, capsys, monkeypatch):
    import simvp_unet.data.generate as gen

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(gen.layout, "write_frame", full)
    out = tmp_path / "d"
    assert main(["data", "generate", "--out", str(out), "--quiet", "--train", "1", "--val", "0",
                 "--unlabeled", "0", "--hidden", "0"]) == 2
    err = one_error(capsys)
    assert f"cannot write {out / 'train' / 'video_0'}: no space left" in err
    assert layout.list_videos(out, "train") == []  # no half-written video counts as done


def test_pack_refuses_when_the_disk_cannot_hold_it(data, capsys, monkeypatch):
    import simvp_unet.data.pack as pack

    monkeypatch.setattr(pack.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 1000))
    assert main(["data", "pack", str(data), "--split", "train", "--quiet"]) == 2
    assert "needs" in one_error(capsys)
    assert not list((data / "packed").glob("train.*"))


# ---------------------------------------------------------------------------- runs of the wrong kind


@pytest.mark.parametrize(("option", "given"), [
    ("--predictor", "segmenter"),
    ("--forecaster", "segmenter"),
    ("--dynamics", "predictor"),
    ("--segmenter", "predictor"),
])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_wrong_kind_of_run(data, runs, tmp_path, capsys, command, option, given):
    argv = [command, "--data", str(data), "--out", str(tmp_path / ("eval" if command == "evaluate" else "s.pt"))]
    if option != "--segmenter":
        argv += ["--segmenter", str(runs["segmenter"])]
    assert main([*argv, option, str(runs[given])]) == 2
    err = one_error(capsys)
    assert f"{runs[given]} is not a {option[2:]} run, it is a {given} run" in err
    assert not (tmp_path / "eval").exists() and not (tmp_path / "s.pt").exists()


def test_label_with_a_run_of_the_wrong_kind(data, runs, capsys):
    before = tree(data)
    assert main(["label", "--data", str(data), "--segmenter", str(runs["predictor"])]) == 2
    assert "is not a segmenter run, it is a predictor run" in one_error(capsys)
    assert tree(data) == before


# ---------------------------------------------------------------------------- damaged checkpoints


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/simvp_unet_pwned",))


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    elif how == "garbage":
        path.write_bytes(b"not a checkpoint " * 100)
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a malicious pickle
        path.write_bytes(pickle.dumps(_Exploit()))


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "malicious"])
def test_resume_from_a_damaged_last_checkpoint(runs, tiny_data, tmp_path, capsys, how):
    run = Path(shutil.copytree(runs["segmenter"], tmp_path / "run"))
    last = run / "checkpoints" / "last.ckpt"
    _damage(last, how)
    before = tree(run)
    assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--resume",
                 "--workers", "0"]) == 2
    err = one_error(capsys)
    assert f"cannot resume: {last}" in err and f"{run / 'checkpoints' / 'best.ckpt'} is intact" in err
    assert tree(run) == before  # no stray log version, nothing rewritten
    assert not Path("/tmp/simvp_unet_pwned").exists()


def test_resume_with_no_intact_checkpoint_says_so(runs, tiny_data, tmp_path, capsys):
    run = Path(shutil.copytree(runs["segmenter"], tmp_path / "run"))
    _damage(run / "checkpoints" / "last.ckpt", "garbage")
    _damage(run / "checkpoints" / "best.ckpt", "truncated")
    assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--resume"]) == 2
    assert "no intact checkpoint remains" in one_error(capsys)


@pytest.mark.parametrize("how", ["truncated", "garbage", "malicious"])
def test_serving_a_damaged_checkpoint(data, runs, tmp_path, capsys, how):
    run = Path(shutil.copytree(runs["segmenter"], tmp_path / "run"))
    _damage(run / "checkpoints" / "best.ckpt", how)
    assert main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "m.safetensors")]) == 2
    assert str(run / "checkpoints" / "best.ckpt") in one_error(capsys)
    assert not (tmp_path / "m.safetensors").exists()
    assert not Path("/tmp/simvp_unet_pwned").exists()


# ---------------------------------------------------------------------------- failed training starts


@pytest.mark.parametrize(("extra", "says"), [
    (["--accelerator", "nosuch"], "--accelerator nosuch"),
    (["--devices", "abc"], "--devices abc"),
    (["--set", "seed=-5"], "seed must be in 0.."),
    (["--set", "epochs=0"], "epochs must be positive"),
] + ([] if torch.cuda.is_available() else [(["--accelerator", "gpu"], "--accelerator gpu")]))
def test_failed_start_leaves_nothing(tiny_args, tiny_data, tmp_path, capsys, extra, says):
    run = tmp_path / "run"
    assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--workers", "0",
                 *tiny_args("segmenter"), *extra]) == 2
    assert says in one_error(capsys)
    assert not run.exists() or list(run.iterdir()) == []


def test_retry_after_a_failed_start(tiny_args, tiny_data, tmp_path, capsys):
    """A folder left by a start that wrote config.yaml but no checkpoint does not block the retry."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("kind: segmenter\n")
    argv = ["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--workers", "0"]
    assert main([*argv, "--resume"]) == 2
    assert "without --resume to start it again" in one_error(capsys)
    assert main([*argv, *tiny_args("segmenter")]) == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_a_file_as_the_dataset(tmp_path, capsys):
    (tmp_path / "d").write_text("")
    assert main(["train", "segmenter", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run")]) == 2
    assert "is a file, not a dataset folder" in one_error(capsys)
    assert main(["data", "stats", str(tmp_path / "d")]) == 2
    assert "is a file, not a dataset folder" in one_error(capsys)
    assert main(["data", "stats", str(tmp_path / "missing")]) == 2
    assert "dataset folder not found" in one_error(capsys)


# ---------------------------------------------------------------------------- interrupts


def test_ctrl_c_during_training_exits_130_and_the_retry_works(tiny_args, tiny_data, tmp_path, capsys,
                                                              monkeypatch):
    def interrupted(self, batch, batch_idx):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    argv = ["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--workers", "0",
            *tiny_args("segmenter")]
    with monkeypatch.context() as m:
        m.setattr(SegmenterModule, "training_step", interrupted)
        assert main(argv) == 130
    err = capsys.readouterr().err
    assert "simvp-unet: interrupted" in err and "--resume" not in err  # no checkpoint to resume from
    assert main(argv) == 0  # the same command starts over


def test_ctrl_c_in_any_command_exits_130(data, capsys, monkeypatch):
    import simvp_unet.data.inspect as inspect

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inspect, "check", interrupted)
    assert main(["data", "check", str(data)]) == 130
    assert capsys.readouterr().err.strip() == "simvp-unet: interrupted"


# ---------------------------------------------------------------------------- damaged datasets


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


DAMAGES = {
    "empty split": (lambda d: [shutil.rmtree(p) for _, p in layout.list_videos(d, "val")] and
                    (d / "dataset.json").unlink(), "empty split: no video_<i> folders in {d}/val"),
    "half-generated": (lambda d: shutil.rmtree(d / "unlabeled" / "video_7"),
                       "{d}/unlabeled has 3 of the 4 videos recorded"),
    "unfinished video": (lambda d: (d / "train" / ".tmp_video_3").mkdir(), "unfinished video folders in {d}/train"),
    "hidden without answer": (lambda d: shutil.rmtree(d / "hidden_answers" / "video_10"),
                              "hidden video {d}/hidden/video_10 has no answer"),
    "corrupt meta.json": (lambda d: (d / "val" / "video_4" / "meta.json").write_text("{oops"),
                          "corrupt meta file {d}/val/video_4/meta.json"),
    "corrupt dataset.json": (lambda d: (d / "dataset.json").write_text("[]"), "corrupt {d}/dataset.json"),
    "corrupt pseudo-label": (lambda d: (d / "unlabeled" / "video_6" / "mask_pred.npy").write_bytes(b"\x00" * 99),
                             "corrupt mask file {d}/unlabeled/video_6/mask_pred.npy"),
    "two folders, one index": (lambda d: shutil.copytree(d / "hidden" / "video_10", d / "hidden" / "video_010"),
                               "two folders for video 10 in {d}/hidden: video_010 and video_10"),
    "truncated pack": (lambda d: (main(["data", "pack", str(d), "--split", "train", "--quiet"]),
                                  _truncate(d / "packed" / "train.frames.npy")),
                       "damaged pack {d}/packed/train.frames.npy"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_data_check_finds_the_damage(data, capsys, damage):
    make, message = DAMAGES[damage]
    make(data)
    capsys.readouterr()
    before = tree(data)
    assert main(["data", "check", str(data), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert message.format(d=data) in out, out
    assert tree(data) == before  # checking changes nothing


def test_a_truncated_pack_is_not_used(data, capsys):
    from simvp_unet.data.pack import open_packed

    assert main(["data", "pack", str(data), "--split", "train", "--quiet"]) == 0
    assert open_packed(data, "train") is not None
    _truncate(data / "packed" / "train.frames.npy")
    assert open_packed(data, "train") is None  # the datasets read the files instead of crashing


def test_label_rewrites_a_corrupt_pseudo_label(data, runs, capsys):
    assert main(["label", "--data", str(data), "--segmenter", str(runs["segmenter"])]) == 0
    damaged = data / "unlabeled" / "video_6" / layout.PRED_MASK_FILE
    damaged.write_bytes(b"\x00" * 99)
    capsys.readouterr()
    assert main(["label", "--data", str(data), "--segmenter", str(runs["segmenter"])]) == 0
    assert "wrote 1 mask_pred.npy, skipped 3" in capsys.readouterr().out
    assert layout.read_mask(damaged.parent, layout.COMPETITION, predicted=True).shape == (22, layout.COMPETITION.height, layout.COMPETITION.width)


def test_ambiguous_hidden_folders_stop_predict_and_score(data, runs, tmp_path, capsys):
    shutil.copytree(data / "hidden" / "video_10", data / "hidden" / "video_010")
    assert main(["predict", "--data", str(data), "--segmenter", str(runs["segmenter"]),
                 "--out", str(tmp_path / "s.pt")]) == 2
    assert "two folders for video 10" in one_error(capsys)
    torch.save(torch.zeros(2, layout.COMPETITION.height, layout.COMPETITION.width, dtype=torch.uint8), tmp_path / "z.pt")
    assert main(["score", str(tmp_path / "z.pt"), "--data", str(data)]) == 2
    assert "two folders for video 10" in one_error(capsys)


# ---------------------------------------------------------------------------- regeneration


@pytest.mark.parametrize(("extra", "difference"), [
    (["--seed", "1"], "seed 0 there, 1 here"),
    (["--train", "5"], "train 4 there, 5 here"),
    (["--hidden", "1"], "hidden 2 there, 1 here"),
])
def test_generating_with_other_settings_is_refused(data, capsys, extra, difference):
    before = tree(data)
    assert main(["data", "generate", "--out", str(data), "--preset", "tiny", "--quiet", *extra]) == 2
    err = one_error(capsys)
    assert str(data) in err and difference in err
    assert tree(data) == before


def test_generating_with_other_settings_without_a_manifest(data, capsys):
    """Datasets made before dataset.json: judged by their meta.json seeds and video indices."""
    (data / "dataset.json").unlink()
    before = tree(data)
    assert main(["data", "generate", "--out", str(data), "--quiet", "--seed", "3"]) == 2
    assert "generated with seed 0, not 3" in one_error(capsys)
    assert main(["data", "generate", "--out", str(data), "--quiet", "--train", "5"]) == 2
    assert "outside the indices" in one_error(capsys)
    assert tree(data) == before


def test_generating_with_the_same_settings_continues(data, capsys):
    before = tree(data)
    assert main(["data", "generate", "--out", str(data), "--preset", "tiny", "--quiet", "--seed", "0"]) == 0
    assert "generated 0 videos" in capsys.readouterr().out
    assert tree(data) == before


# ---------------------------------------------------------------------------- messages and options


def test_score_messages(data, tmp_path, capsys):
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(np.zeros(3), tmp_path / "numpy.pt")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Exploit()))
    for name, says in (("empty.pt", "empty or truncated"), ("numpy.pt", "not loaded, for safety"),
                       ("evil.pt", "")):
        assert main(["score", str(tmp_path / name), "--data", str(data)]) == 2
        err = one_error(capsys)
        assert str(tmp_path / name) in err and says in err
    assert not Path("/tmp/simvp_unet_pwned").exists()


def test_export_onnx_without_onnx_says_what_to_install(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    assert main(["export", str(runs["segmenter"]), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "simvp-unet[onnx]" in one_error(capsys)


@pytest.mark.parametrize("argv", [
    ["evaluate", "--data", "d", "--segmenter", "s", "--out", "o", "--pictures", "-1"],
    ["evaluate", "--data", "d", "--segmenter", "s", "--out", "o", "--limit", "-1"],
    ["data", "stats", "d", "--limit", "-1"],
    ["data", "show", "d", "--sheet", "--count", "0", "--out", "o.png"],
    ["data", "generate", "--out", "o", "--workers", "0"],
    ["train", "segmenter", "--data", "d", "--out", "o", "--workers", "-1"],
])
def test_out_of_range_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "must be >= " in capsys.readouterr().err


def test_video_and_sheet_together_are_refused(data, tmp_path, capsys):
    assert main(["data", "show", str(data), "--sheet", "--video", "1", "--out", str(tmp_path / "a.png")]) == 2
    assert "not both" in one_error(capsys)


def test_a_normal_training_run_shows_no_advert_and_no_deprecation(tiny_args, tiny_data, tmp_path, capfd):
    assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--workers", "0",
                 *tiny_args("segmenter")]) == 0
    captured = capfd.readouterr()
    text = (captured.out + captured.err).lower()
    assert "litlogger" not in text and "deprecated" not in text and "tip:" not in text
