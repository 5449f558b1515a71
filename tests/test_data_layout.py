"""Readers of the on-disk layout and the datasets: shapes, validation, packed splits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simvp_unet.data import layout
from simvp_unet.data.datasets import FrameDataset, VideoDataset
from simvp_unet.data.pack import open_packed, pack
from simvp_unet.errors import ConfigError, DataError


@pytest.fixture()
def data_copy(tiny_data: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset, free to break."""
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def test_list_videos_is_sorted_and_ignores_temporary_folders(data_copy):
    (data_copy / "train" / ".tmp_video_99").mkdir()
    (data_copy / "train" / "notes").mkdir()
    assert [i for i, _ in layout.list_videos(data_copy, "train")] == [0, 1, 2, 3]
    with pytest.raises(DataError, match="split folder not found"):
        layout.list_videos(data_copy / "nowhere", "train")


def test_read_frames_and_mask_shapes(tiny_data):
    folder = tiny_data / "train" / "video_0"
    frames = layout.read_frames(folder, range(22))
    assert frames.shape == (22, 160, 240, 3) and frames.dtype == np.uint8
    assert layout.read_frames(folder, [21, 0]).shape == (2, 160, 240, 3)
    np.testing.assert_array_equal(layout.read_frames(folder, [21, 0])[1], frames[0])
    mask = layout.read_mask(folder, layout.COMPETITION)
    assert mask.shape == (22, 160, 240) and mask.dtype == np.uint8 and mask.max() <= 48


def test_alpha_channel_is_dropped(data_copy):
    path = data_copy / "train" / "video_0" / "image_3.png"
    rgb = layout.read_frame(path)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(layout.read_frame(path), rgb)


@pytest.mark.parametrize("damage, message", [
    ("missing", "missing frame: .*image_5.png"),
    ("corrupt", "corrupt image .*image_5.png"),
    ("small", "image_5.png is 120x80, expected 240x160"),
])
def test_bad_frames_raise_naming_the_file(data_copy, damage, message):
    path = data_copy / "train" / "video_1" / "image_5.png"
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    else:
        Image.new("RGB", (120, 80)).save(path)
    with pytest.raises(DataError, match=message):
        layout.read_frames(path.parent, range(22))
    with pytest.raises(DataError, match=message):
        VideoDataset(data_copy, "train")[1]


@pytest.mark.parametrize("array, message", [
    (np.zeros((21, 160, 240), np.uint8), r"shape \(21, 160, 240\), expected \(22, 160, 240\)"),
    (np.full((22, 160, 240), 49, np.uint8), "class ids 49..49, expected 0..48"),
    (np.full((22, 160, 240), -1, np.int16), "class ids -1..-1, expected 0..48"),
    (np.zeros((22, 160, 240), np.float32), "dtype float32"),
])
def test_bad_masks_raise_naming_the_file(data_copy, array, message):
    path = data_copy / "val" / "video_4" / "mask.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=f"mask .*video_4.mask.npy.*{message}|{message}"):
        layout.read_mask(path.parent, layout.COMPETITION)
    with pytest.raises(DataError, match=message):
        VideoDataset(data_copy, "val", masks="true")[0]
    with pytest.raises(DataError, match=message):
        FrameDataset(data_copy, "val")[0]


def test_corrupt_and_missing_mask_files(data_copy):
    folder = data_copy / "train" / "video_2"
    (folder / "mask.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt mask file .*video_2.mask.npy"):
        layout.read_mask(folder, layout.COMPETITION)
    (folder / "mask.npy").unlink()
    with pytest.raises(DataError, match="missing mask: .*video_2.mask.npy"):
        VideoDataset(data_copy, "train", masks="true")
    with pytest.raises(DataError, match="missing mask: .*video_2.mask.npy"):
        FrameDataset(data_copy, "train")


def test_video_dataset_items(tiny_data):
    train = VideoDataset(tiny_data, "train", masks="true")
    assert len(train) == 4
    item = train[2]
    assert item["index"] == 2
    assert item["frames"].shape == (22, 3, 160, 240) and item["frames"].dtype == torch.uint8
    assert item["masks"].shape == (22, 160, 240) and item["masks"].dtype == torch.uint8
    frames = layout.read_frames(tiny_data / "train" / "video_2", range(22))
    assert torch.equal(item["frames"], torch.from_numpy(frames).permute(0, 3, 1, 2))
    clip = VideoDataset(tiny_data, "val", frames=range(11), masks="true")[0]
    assert clip["index"] == 4 and clip["frames"].shape == (11, 3, 160, 240)
    assert clip["masks"].shape == (11, 160, 240)
    assert "masks" not in VideoDataset(tiny_data, "unlabeled")[0]


def test_hidden_holds_input_frames_only(tiny_data):
    hidden = VideoDataset(tiny_data, "hidden")
    assert [hidden[n]["index"] for n in range(len(hidden))] == [10, 11]
    assert hidden[0]["frames"].shape == (11, 3, 160, 240)
    with pytest.raises(ConfigError, match="hidden videos hold frames 0..10; asked for frame 11"):
        VideoDataset(tiny_data, "hidden", frames=range(22))
    with pytest.raises(DataError, match="missing mask"):
        VideoDataset(tiny_data, "hidden", masks="true")


def test_mask_sources(data_copy):
    with pytest.raises(DataError, match="missing mask: .*unlabeled.video_6.mask_pred.npy"):
        VideoDataset(data_copy, "unlabeled", masks="any")
    for index, folder in layout.list_videos(data_copy, "unlabeled"):
        layout.write_mask(folder / layout.PRED_MASK_FILE, np.full((22, 160, 240), index % 49, np.uint8), layout.COMPETITION)
    pred = VideoDataset(data_copy, "unlabeled", masks="any")
    assert pred[1]["masks"].unique().tolist() == [7]
    assert torch.equal(VideoDataset(data_copy, "unlabeled", masks="pred")[1]["masks"], pred[1]["masks"])
    true = VideoDataset(data_copy, "train", masks="any")[0]["masks"]
    assert torch.equal(true, torch.from_numpy(layout.read_mask(data_copy / "train" / "video_0", layout.COMPETITION)))
    with pytest.raises(ConfigError, match="masks must be one of"):
        VideoDataset(data_copy, "train", masks="yes")


def test_frame_dataset(tiny_data):
    frames = FrameDataset(tiny_data, "train", frames=[0, 21])
    assert len(frames) == 8
    item = frames[3]  # video 1, frame 21
    assert (item["index"], item["t"]) == (1, 21)
    assert item["image"].shape == (3, 160, 240) and item["mask"].shape == (160, 240)
    mask = layout.read_mask(tiny_data / "train" / "video_1", layout.COMPETITION)[21]
    assert torch.equal(item["mask"], torch.from_numpy(mask))
    assert len(FrameDataset(tiny_data, "val")) == 2 * 22
    with pytest.raises(DataError, match="missing mask"):
        FrameDataset(tiny_data, "unlabeled")


def test_packed_splits_match_and_go_stale(data_copy, capsys):
    plain = VideoDataset(data_copy, "train", masks="true")
    infos = pack(data_copy, progress=False)
    assert {i["split"]: i["arrays"] for i in infos} == {
        "train": ["frames", "masks"], "val": ["frames", "masks"], "unlabeled": ["frames"],
        "hidden": ["frames"]}
    packed = VideoDataset(data_copy, "train", masks="true")
    assert packed.packed is not None and plain.packed is None
    for n in range(len(plain)):
        assert torch.equal(packed[n]["frames"], plain[n]["frames"])
        assert torch.equal(packed[n]["masks"], plain[n]["masks"])
    frames = FrameDataset(data_copy, "val")
    assert frames.packed is not None
    assert torch.equal(frames[30]["image"], FrameDataset(data_copy, "val", packed=False)[30]["image"])
    hidden = VideoDataset(data_copy, "hidden", frames=[10])
    assert hidden.packed is not None and hidden[0]["frames"].shape == (1, 3, 160, 240)
    # pseudo-labels written after packing leave the pack valid and are read from their files
    pred = np.full((22, 160, 240), 7, np.uint8)
    for _, video in layout.list_videos(data_copy, "train"):
        layout.write_mask(video / layout.PRED_MASK_FILE, pred, layout.COMPETITION)
    folder = data_copy / "train" / "video_1"
    assert open_packed(data_copy, "train") is not None
    assert torch.equal(VideoDataset(data_copy, "train", masks="pred")[1]["masks"], torch.from_numpy(pred))
    masks_only = VideoDataset(data_copy, "train", masks="true", with_frames=False)[0]
    assert "frames" not in masks_only and torch.equal(masks_only["masks"], plain[0]["masks"])
    # a replaced frame makes the pack stale: the datasets read the files again
    frame = folder / "image_3.png"
    frame.write_bytes(frame.read_bytes())
    os.utime(frame, ns=(1, 1))
    capsys.readouterr()
    assert open_packed(data_copy, "train") is None
    assert VideoDataset(data_copy, "train").packed is None
    note = capsys.readouterr().err
    assert note.count("no longer matches its videos") == 1 and "data pack" in note  # said once
    assert open_packed(data_copy, "val") is not None
