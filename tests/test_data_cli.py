"""`simvp-unet data ...` through the real command line: help, outputs, one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simvp_unet.cli import main


@pytest.mark.parametrize("command", ["generate", "check", "stats", "show", "pack"])
def test_help_of_every_data_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"simvp-unet data {command}" in text and "example" in text


def test_generate_command_with_overrides(tmp_path, capsys):
    out = tmp_path / "small"
    code = main(["data", "generate", "--out", str(out), "--preset", "tiny", "--train", "1",
                 "--val", "1", "--unlabeled", "0", "--hidden", "1", "--seed", "3", "--quiet"])
    assert code == 0
    assert "generated 3 videos" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == ["video_0"]
    assert sorted(p.name for p in (out / "hidden").iterdir()) == ["video_2"]


def test_check_stats_show_pack_on_good_data(tiny_data, tmp_path, capsys):
    assert main(["data", "check", str(tiny_data), "--quiet"]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["data", "stats", str(tiny_data)]) == 0
    text = capsys.readouterr().out
    assert "train: 4 videos" in text and "objects_per_video" in text and "late_entry_share" in text
    for out in ("video.png", "video.gif", "sheet.png"):
        args = ["--sheet"] if out == "sheet.png" else ["--video", "10"]
        assert main(["data", "show", str(tiny_data), *args, "--out", str(tmp_path / out)]) == 0
        with Image.open(tmp_path / out) as image:
            assert image.size[0] > 240 and image.size[1] > 160
    copy = Path(shutil.copytree(tiny_data, tmp_path / "copy"))
    assert main(["data", "pack", str(copy), "--split", "train", "--quiet"]) == 0
    assert (copy / "packed" / "train.frames.npy").is_file()


def test_check_lists_every_problem(tiny_data, tmp_path, capsys):
    copy = Path(shutil.copytree(tiny_data, tmp_path / "copy"))
    (copy / "train" / "video_1" / "image_4.png").unlink()
    (copy / "val" / "video_5" / "image_0.png").write_bytes(b"not a png")
    np.save(copy / "train" / "video_2" / "mask.npy", np.full((22, 160, 240), 60, np.uint8))
    shutil.copy(copy / "hidden_answers" / "video_10" / "image_11.png", copy / "hidden" / "video_10")
    assert main(["data", "check", str(copy), "--quiet"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("4 problem(s)")
    text = "\n".join(lines)
    assert "missing frame: " in text and "video_1/image_4.png" in text
    assert "corrupt image " in text and "video_5/image_0.png" in text
    assert "video_2/mask.npy holds class ids 60..60" in text
    assert "hidden video" in text and "image_11.png" in text


def test_user_errors_are_one_line_and_exit_2(tiny_data, tmp_path, capsys):
    copy = Path(shutil.copytree(tiny_data, tmp_path / "copy"))
    np.save(copy / "val" / "video_4" / "mask.npy", np.zeros((5, 5), np.uint8))
    (copy / "unlabeled" / "video_7" / "meta.json").write_text("{not json")
    cases = [
        (["data", "generate", "--out", str(tmp_path / "x"), "--preset", "huge"], "unknown data preset"),
        (["data", "generate", "--out", str(tmp_path / "x"), "--shard", "4/2"], "--shard K/N"),
        (["data", "show", str(tiny_data), "--video", "999", "--out", str(tmp_path / "a.png")],
         "video 999 not found"),
        (["data", "show", str(tiny_data), "--video", "1", "--out", str(tmp_path / "a.jpg")],
         "must end in .png or .gif"),
        (["data", "show", str(tiny_data), "--out", str(tmp_path / "a.png")], "needs --video"),
        (["data", "stats", str(copy), "--split", "unlabeled"], "bad meta file "),
        (["data", "pack", str(copy), "--split", "val", "--quiet"], "mask.npy has shape (5, 5)"),
        (["data", "pack", str(tmp_path / "nothing")], "dataset folder not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("simvp-unet: error: "), err
        assert message in err, (argv, err)
    with pytest.raises(SystemExit) as exc:  # refused by the parser: usage and one error line
        main(["data", "generate", "--out", str(tmp_path / "x"), "--train", "-2"])
    assert exc.value.code == 2 and "must be >= 0, got -2" in capsys.readouterr().err
    assert not (copy / "packed" / "val.frames.npy").exists()  # no half-written pack
    assert not list((copy / "packed").glob("*tmp*"))
