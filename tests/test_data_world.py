"""The generator's world and task shape as settings: presets that change the world change what
`data stats` measures, other task shapes generate valid datasets, a folder keeps one world, and
bad settings are one line naming the key. Small images (`shape.height/width`) keep it fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simvp_unet.cli import main
from simvp_unet.config import resolve
from simvp_unet.data import layout, manifest
from simvp_unet.data.generate import GenerateConfig, generate
from simvp_unet.data.inspect import stats
from simvp_unet.data.layout import TaskShape
from simvp_unet.data.scenes import WorldConfig
from simvp_unet.errors import ConfigError

pytest.importorskip("pybullet")

VIDEOS = 8  # enough for the direction of the means to hold for the fixed seed
SMALL = ("val=0", "unlabeled=0", "hidden=0", "shape.height=32", "shape.width=48")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Eight small train videos of the tiny (default), dense and camera presets, seed 0."""
    roots = {}
    for preset in ("tiny", "dense", "camera"):
        roots[preset] = tmp_path_factory.mktemp(preset)
        config = resolve(GenerateConfig, "data", preset, [f"train={VIDEOS}", *SMALL])
        generate(roots[preset], config, workers=1, progress=False, preset=preset)
    return roots


def test_a_denser_world_measures_denser(worlds):
    default, dense = (stats(worlds[name], splits=["train"])["train"] for name in ("tiny", "dense"))
    assert dense["objects_per_video"]["mean"] > default["objects_per_video"]["mean"]
    assert dense["collisions_per_video"]["mean"] > default["collisions_per_video"]["mean"]
    assert dense["moving_share"] > default["moving_share"]


def test_another_camera_still_sees_every_object_and_agrees_with_pybullet(worlds):
    root = worlds["camera"]
    recorded = manifest.read(root)["world"]
    assert (recorded["camera_eye"], recorded["fov"]) != (list(WorldConfig().camera_eye), WorldConfig().fov)
    shape = manifest.task_shape(root)
    hits = []  # whether PyBullet drew an object at the pixel our camera projects its center to
    for _, folder in layout.list_videos(root, "train"):
        meta = json.loads((folder / "meta.json").read_text())
        mask = layout.read_mask(folder, shape)
        for k, obj in enumerate(meta["objects"]):
            state = meta["frames"][0]["objects"][k]
            if obj["spawn_frame"] == 0:  # placed in view
                assert state["pixels"] > 0 and 0 <= state["pixel"][0] < 48 and 0 <= state["pixel"][1] < 32
        for t, frame in enumerate(meta["frames"]):
            for state in frame["objects"]:
                if state is None or not state["pixels"]:
                    continue
                assert (mask[t] == state["class_id"]).sum() == state["pixels"]
                x, y = state["pixel"]
                if 0 <= x < shape.width and 0 <= y < shape.height:
                    hits.append(mask[t, int(y), int(x)] == state["class_id"])
    assert np.mean(hits) > 0.9  # the misses: objects hidden behind others


@pytest.mark.parametrize(("sets", "shape"), [
    (["shape.frames=32", "shape.target=29"], TaskShape(frames=32, target=29)),
    (["shape.height=128", "shape.width=192"], TaskShape(height=128, width=192)),
    (["shape.input_frames=8", "shape.target=15"], TaskShape(input_frames=8, target=15)),
])
def test_other_task_shapes_generate_valid_datasets(sets, shape, tmp_path, capsys):
    out = tmp_path / "data"
    argv = ["data", "generate", "--out", str(out), "--train", "1", "--val", "0", "--unlabeled", "0",
            "--hidden", "1", "--quiet", *(arg for item in sets for arg in ("--set", item))]
    assert main(argv) == 0
    assert manifest.task_shape(out) == shape
    train, hidden, answers = out / "train" / "video_0", out / "hidden" / "video_1", out / "hidden_answers" / "video_1"
    assert {p.name for p in train.glob("*.png")} == {f"image_{t}.png" for t in range(shape.frames)}
    assert {p.name for p in hidden.iterdir()} == {f"image_{t}.png" for t in range(shape.input_frames)}
    assert {p.name for p in answers.glob("*.png")} == {f"image_{t}.png"
                                                        for t in range(shape.input_frames, shape.frames)}
    assert layout.read_frames(train, [0, shape.frames - 1]).shape == (2, shape.height, shape.width, 3)
    assert np.load(train / "mask.npy").shape == (shape.frames, shape.height, shape.width)
    assert np.load(answers / "mask.npy").shape == (shape.frames, shape.height, shape.width)
    assert main(["data", "check", str(out), "--quiet"]) == 0
    assert main(["data", "stats", str(out)]) == 0
    assert f"first in view after the {shape.input_frames} input frames" in capsys.readouterr().out


def test_a_folder_keeps_its_world_and_shape(tmp_path, capsys):
    out = tmp_path / "data"
    small = ["--train", "1", "--val", "0", "--unlabeled", "0", "--hidden", "0", "--quiet",
             "--set", "shape.height=32", "--set", "shape.width=48"]
    assert main(["data", "generate", "--out", str(out), *small]) == 0
    for extra, message in ((["--set", "world.objects=[4,8]"], "world.objects [3, 6] there, [4, 8] here"),
                           (["--preset", "camera"], "world.camera_eye [7.48, -6.51, 5.34] there"),
                           (["--set", "shape.frames=30"], "shape.frames 22 there, 30 here")):
        assert main(["data", "generate", "--out", str(out), *small, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "generated with other settings" in err and message in err, err
    # a dataset.json from before the world and the shape were recorded holds the defaults
    recorded = json.loads((out / "dataset.json").read_text())
    for section in ("world", "shape"):
        del recorded[section]
    assert manifest.differences(recorded, manifest.describe(GenerateConfig(train=1, val=0, unlabeled=0, hidden=0),
                                                            1, None)) == []
    assert main(["data", "generate", "--out", str(out), *small]) == 0
    assert "generated 0 videos" in capsys.readouterr().out


@pytest.mark.parametrize(("setting", "key"), [
    ("world.objects=[8,5]", "objects"),
    ("world.objects=[0,3]", "objects"),
    ("world.speed=[-1.0,2.0]", "speed"),
    ("world.max_speed=-1", "max_speed"),
    ("world.fov=0", "fov"),
    ("world.fov=180", "fov"),
    ("world.sliding=1.5", "sliding"),
    ("world.aimed=-0.1", "aimed"),
    ("world.late_entry=2", "late_entry"),
    ("world.entering=[0.5,0.4]", "entering"),
    ("world.radius=0", "radius"),
    ("world.steps_per_frame=0", "steps_per_frame"),
    ("world.camera_eye=[7.48,-6.51,0.5]", "camera_eye"),
    ("world.camera_eye=[20.0,0.0,1.5]", "horizon"),
    ("world.colour=3", "world.colour"),
])
def test_bad_world_settings_are_one_line_naming_the_key(setting, key):
    with pytest.raises(ConfigError) as exc:
        resolve(GenerateConfig, "data", "tiny", [setting])
    message = str(exc.value)
    assert len(message.splitlines()) == 1 and key in message, message


def test_bad_world_setting_on_the_command_line(tmp_path, capsys):
    assert main(["data", "generate", "--out", str(tmp_path / "x"), "--set", "world.fov=200"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("simvp-unet: error: world: fov") and "(0, 180)" in err, err
    assert not (tmp_path / "x").exists()
