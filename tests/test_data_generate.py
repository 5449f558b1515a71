"""The generator: layout and index ranges, exact masks, colors, determinism, the bytes the
defaults write, resume. Other worlds and task shapes: test_data_world.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from simvp_unet.classes import COLOR_RGB, COLORS, attributes
from simvp_unet.config import resolve
from simvp_unet.data import generate as gen
from simvp_unet.data import layout, scenes
from simvp_unet.data.generate import GenerateConfig, generate
from simvp_unet.data.layout import COMPETITION
from simvp_unet.errors import ConfigError


def tree_hashes(root: Path) -> dict[str, str]:
    """sha1 of every file under root, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# Digests of videos written by the generator before its world and task shape became settings
# (commit c3623f1, `simvp-unet data generate --preset tiny`): the defaults must draw the same
# pixels, masks and meta.json. Decoded pixels, not PNG bytes, so that another zlib does not matter.
PINNED = {
    "train/video_0": (range(22), "1e3db1998d925768a13d5202c25fbc2100441dcd3e795b57f6168dfdda6735fd"),
    "hidden_answers/video_10": (range(11, 22), "bb5b3c4aed21c13ee2d2c55b7278cb5565ad34e7185ae381c2a85e3b2cab4f07"),
}


def video_digest(folder: Path, frames: range) -> str:
    """sha256 of a video's decoded frames, its mask.npy's array and its meta.json's bytes."""
    digest = hashlib.sha256(layout.read_frames(folder, frames).tobytes())
    digest.update(np.load(folder / "mask.npy").tobytes())
    digest.update((folder / "meta.json").read_bytes())
    return digest.hexdigest()


def test_the_defaults_draw_the_videos_they_always_drew(tiny_data):
    for name, (frames, expected) in PINNED.items():
        assert video_digest(tiny_data / name, frames) == expected, name
    assert json.loads((tiny_data / "train" / "video_0" / "meta.json").read_text())["fps"] == 24.0


def test_layout_and_index_ranges(tiny_data):
    expected = {"train": [0, 1, 2, 3], "val": [4, 5], "unlabeled": [6, 7, 8, 9], "hidden": [10, 11]}
    for split, indices in expected.items():
        assert [i for i, _ in layout.list_videos(tiny_data, split)] == indices
    for split in ("train", "val"):
        for _, folder in layout.list_videos(tiny_data, split):
            names = {p.name for p in folder.iterdir()}
            assert names == {f"image_{t}.png" for t in range(22)} | {"mask.npy", "meta.json"}
    for _, folder in layout.list_videos(tiny_data, "unlabeled"):
        assert "mask.npy" not in {p.name for p in folder.iterdir()}


def test_hidden_answers_are_kept_apart(tiny_data):
    for index, folder in layout.list_videos(tiny_data, "hidden"):
        assert {p.name for p in folder.iterdir()} == {f"image_{t}.png" for t in range(11)}
        answers = tiny_data / "hidden_answers" / folder.name
        assert {p.name for p in answers.iterdir()} == (
            {f"image_{t}.png" for t in range(11, 22)} | {"mask.npy", "meta.json"})
        meta = json.loads((answers / "meta.json").read_text())
        assert (meta["split"], meta["index"]) == ("hidden", index)


def test_paper_preset_index_ranges():
    ranges = resolve(GenerateConfig, "data", "paper").ranges()
    assert ranges == {"train": range(0, 1000), "val": range(1000, 2000),
                      "unlabeled": range(2000, 15000), "hidden": range(15000, 17000)}


def test_masks_agree_with_meta_and_scenes_follow_the_recipe(tiny_data):
    for _, folder in layout.list_videos(tiny_data, "train") + layout.list_videos(tiny_data, "val"):
        mask = layout.read_mask(folder, COMPETITION)
        meta = json.loads((folder / "meta.json").read_text())
        ids = [o["class_id"] for o in meta["objects"]]
        assert len(set(ids)) == len(ids)  # no two objects share all three attributes
        assert len({tuple(attributes(i)) for i in ids}) == len(ids)
        starting = [o for o in meta["objects"] if o["spawn_frame"] == 0]
        assert 3 <= len(starting) <= 6
        assert set(np.unique(mask)) <= {0, *ids}
        for t, frame in enumerate(meta["frames"]):
            for state in frame["objects"]:
                if state is None:
                    continue
                where = mask[t] == state["class_id"]
                assert where.sum() == state["pixels"]
                if state["pixels"]:
                    rows, cols = np.nonzero(where)
                    assert state["box"] == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
                    # our camera model agrees with PyBullet's: an object fully in view has its
                    # projected center inside its drawn box
                    x, y = state["pixel"]
                    x0, y0, x1, y1 = state["box"]
                    if x0 > 0 and y0 > 0 and x1 < COMPETITION.width and y1 < COMPETITION.height:
                        assert x0 <= x <= x1 and y0 <= y <= y1


def test_object_pixels_carry_their_color(tiny_data):
    reference = np.array([COLOR_RGB[c] for c in COLORS], float)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    checked = 0
    for _, folder in layout.list_videos(tiny_data, "train"):
        frames, mask = layout.read_frames(folder, [0, 21]), layout.read_mask(folder, COMPETITION)[[0, 21]]
        for k in range(2):
            for cid in np.unique(mask[k]):
                where = mask[k] == cid
                if cid == 0 or where.sum() < 40:
                    continue
                rgb = np.median(frames[k][where].astype(float), axis=0)
                direction = rgb / max(np.linalg.norm(rgb), 1.0)
                nearest = COLORS[int(np.argmax(reference @ direction))]
                assert nearest == attributes(cid)[2], (folder, cid, rgb)
                checked += 1
        background = frames[0][mask[0] == 0].astype(float)
        assert np.abs(background - background.mean(axis=1, keepdims=True)).max() < 1  # gray floor
    assert checked >= 10


def test_metal_is_shinier_than_rubber():
    """The same scene drawn with metal and with rubber objects: metal has more contrast and
    highlights (the renderer's look, measured rather than eyeballed)."""
    pytest.importorskip("pybullet")
    from simvp_unet.classes import class_id
    from simvp_unet.data.meshes import write_meshes
    from simvp_unet.data.scenes import ObjectPlan
    from simvp_unet.data.world import World

    def spread(material: str, tmp: str) -> float:
        world = World(write_meshes(tmp))
        plan = [ObjectPlan(class_id(shape, material, "red"), (-1.5 + 1.5 * k, 0.0), 0.4, (0, 0), 0)
                for k, shape in enumerate(("cube", "sphere", "cylinder"))]
        frames, masks, _ = world.run(plan)
        world.client.disconnect()
        values = frames[0][masks[0] > 0].astype(float).sum(-1)
        return float(np.percentile(values, 98) - np.percentile(values, 10))

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        assert spread("metal", tmp) > 1.3 * spread("rubber", tmp)


def test_video_depends_only_on_seed_split_index():
    a = scenes.sample_scene(gen.video_rng(0, "train", 5))
    b = scenes.sample_scene(gen.video_rng(0, "train", 5))
    c = scenes.sample_scene(gen.video_rng(0, "val", 5))
    d = scenes.sample_scene(gen.video_rng(1, "train", 5))
    assert a == b and a != c and a != d


@pytest.mark.slow
def test_same_bytes_across_workers_and_shards(tiny_data, tmp_path):
    config = resolve(GenerateConfig, "data", "tiny")
    out = tmp_path / "sharded"
    summary = generate(out, config, workers=2, shard=(0, 2), progress=False)
    assert summary["written"] == 6
    generate(out, config, workers=1, shard=(1, 2), progress=False)
    assert tree_hashes(out) == tree_hashes(tiny_data)


def test_resume_after_an_interrupted_run(tiny_data, tmp_path, monkeypatch):
    config = resolve(GenerateConfig, "data", "tiny")
    out = tmp_path / "resumed"
    calls = {"n": 0}
    real = gen._write_folder

    def crash_on_fourth(tmp, frames, ts, masks, meta, shape):
        calls["n"] += 1
        if calls["n"] == 4:
            tmp.mkdir(parents=True)
            layout.write_frame(tmp / "image_0.png", frames[0])
            raise KeyboardInterrupt  # killed half-way through writing a video
        real(tmp, frames, ts, masks, meta, shape)

    monkeypatch.setattr(gen, "_write_folder", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        generate(out, config, workers=1, progress=False)
    monkeypatch.setattr(gen, "_write_folder", real)
    finished = [i for i, _ in layout.list_videos(out, "train")]
    assert finished == [0, 1, 2]  # the interrupted video is not there, not even in part
    assert (out / "train" / ".tmp_video_3").exists()
    summary = generate(out, config, workers=1, progress=False)
    assert (summary["written"], summary["skipped"]) == (9, 3)
    assert not list(out.rglob(".tmp_*"))
    assert tree_hashes(out) == tree_hashes(tiny_data)
    assert generate(out, config, workers=1, progress=False)["written"] == 0


def test_hidden_video_is_redone_when_its_answers_are_missing(tiny_data, tmp_path):
    out = Path(shutil.copytree(tiny_data, tmp_path / "copy"))
    shutil.rmtree(out / "hidden_answers" / "video_11")
    summary = generate(out, resolve(GenerateConfig, "data", "tiny"), workers=1, progress=False)
    assert summary["written"] == 1
    assert tree_hashes(out) == tree_hashes(tiny_data)


def test_bad_generate_settings():
    with pytest.raises(ConfigError, match="train must be >= 0"):
        GenerateConfig(train=-1)
    with pytest.raises(ConfigError, match="--shard K/N needs 0 <= K < N"):
        gen.parse_shard("2/2")
    with pytest.raises(ConfigError, match="--shard takes K/N"):
        gen.parse_shard("half")
    with pytest.raises(ConfigError, match="unknown data preset 'huge'"):
        resolve(GenerateConfig, "data", "huge")
