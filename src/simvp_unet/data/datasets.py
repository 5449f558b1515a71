"""PyTorch datasets over the on-disk layout: whole videos (clips) and single labeled frames.

Items hold uint8 tensors; models get `frames.float() / 255` and `masks.long()`, converted on
the device by the LightningModules. A packed split (`simvp-unet data pack`) is used
automatically when it is present and up to date, otherwise the PNG files are read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from . import layout
from .layout import TaskShape
from .manifest import task_shape
from .pack import PackedSplit, open_packed

MaskSource = Literal["none", "true", "pred", "any"]
_MASK_SOURCES = ("none", "true", "pred", "any")


def _frame_list(shape: TaskShape, split: str, frames: Iterable[int] | None) -> list[int]:
    available = shape.split_frames(split)
    frames = list(available if frames is None else frames)
    if not frames:
        raise ConfigError("frames must name at least one frame")
    bad = [t for t in frames if t not in available]
    if bad:
        raise ConfigError(f"{split} videos hold frames {available.start}..{available.stop - 1}; "
                          f"asked for frame {bad[0]}")
    return frames


def _to_chw(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) contiguous tensor."""
    return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))


def _videos(root: str | Path, split: str) -> list[tuple[int, Path]]:
    videos = layout.list_videos(root, split)
    if not videos:
        raise DataError(f"no videos (video_<i> folders) in {Path(root) / split}")
    return videos


class VideoDataset(Dataset):
    """Whole videos of one split: item = {"index", "frames" (T, 3, H, W) uint8[, "masks" (T, H, W)]}.

    Args:
        root: dataset root (holds train/, val/, unlabeled/, hidden/).
        split: one of train, val, unlabeled, hidden.
        frames: 0-based frame indices to return, in order; default every stored frame
            (0..21, or 0..10 for hidden, in the competition's shape).
        masks: "none"; "true" (mask.npy, labeled splits); "pred" (mask_pred.npy pseudo-labels
            written by `simvp-unet label`); "any" (the true mask where there is one, else the
            pseudo-label). Every video must have the asked mask, checked here.
        packed: use `<root>/packed/` when present and up to date.
        with_frames: False leaves "frames" out of the items (mask-only training reads no PNG).
    """

    def __init__(self, root: str | Path, split: str, *, frames: Iterable[int] | None = None,
                 masks: MaskSource = "none", packed: bool = True, with_frames: bool = True) -> None:
        if masks not in _MASK_SOURCES:
            raise ConfigError(f"masks must be one of {', '.join(_MASK_SOURCES)}, got {masks!r}")
        if not with_frames and masks == "none":
            raise ConfigError("a VideoDataset without frames needs masks")
        self.root, self.split, self.masks, self.with_frames = Path(root), split, masks, with_frames
        self.shape = task_shape(root)  # the dataset's task shape (`manifest.task_shape`)
        self.videos = _videos(root, split)
        self.frames = _frame_list(self.shape, split, frames)
        # a slice reads a memory map in one piece; a list of indices gathers frame by frame
        first, last = self.frames[0], self.frames[-1]
        contiguous = self.frames == list(range(first, last + 1))
        self._take = slice(first, last + 1) if contiguous else self.frames
        self.mask_files = [self._mask_file(folder) for _, folder in self.videos]
        self.packed: PackedSplit | None = open_packed(root, split) if packed else None

    def _mask_file(self, folder: Path) -> str | None:
        if self.masks == "none":
            return None
        choices = {"true": [layout.MASK_FILE], "pred": [layout.PRED_MASK_FILE],
                   "any": [layout.MASK_FILE, layout.PRED_MASK_FILE]}[self.masks]
        for name in choices:
            if (folder / name).is_file():
                return name
        raise DataError(f"missing mask: {folder / choices[-1]} (masks={self.masks!r})")

    def __len__(self) -> int:
        return len(self.videos)

    def _read(self, n: int) -> tuple[torch.Tensor | None, np.ndarray | None]:
        index, folder = self.videos[n]
        mask_file = self.mask_files[n]
        packed_masks = mask_file == layout.MASK_FILE  # pseudo-labels are never packed
        pack = self.packed
        frames = masks = None
        if pack is not None:
            row = pack.position[index]
            # copies: tensors must not share memory with the read-only memory map
            if self.with_frames:
                frames = torch.from_numpy(np.array(pack.array("frames")[row, self._take]))
            if packed_masks and pack.has("masks"):
                masks = np.array(pack.array("masks")[row, self._take])
        elif self.with_frames:
            frames = _to_chw(layout.read_frames(folder, self.frames, self.shape.size))
        if mask_file is not None and masks is None:  # e.g. pseudo-labels written after packing
            path = folder / mask_file
            masks = layout.check_mask(layout.load_mask_file(path), path, shape=self.shape)[self.frames]
        return frames, masks

    def __getitem__(self, n: int) -> dict:
        frames, masks = self._read(n)
        item = {"index": self.videos[n][0]}
        if frames is not None:
            item["frames"] = frames
        if masks is not None:
            item["masks"] = torch.from_numpy(np.ascontiguousarray(masks))
        return item


class FrameDataset(Dataset):
    """Single labeled frames for segmentation: item = {"image" (3, H, W), "mask" (H, W), "index", "t"}.

    Args:
        root: dataset root.
        split: a labeled split (train or val): every video must have mask.npy.
        frames: 0-based frame indices taken from every video (default all of them).
        packed: use `<root>/packed/` when present and up to date.
    """

    def __init__(self, root: str | Path, split: str, *, frames: Iterable[int] | None = None,
                 packed: bool = True) -> None:
        self.root, self.split = Path(root), split
        self.shape = task_shape(root)
        self.videos = _videos(root, split)
        self.frames = _frame_list(self.shape, split, frames)
        for _, folder in self.videos:
            if not (folder / layout.MASK_FILE).is_file():
                raise DataError(f"missing mask: {folder / layout.MASK_FILE} (FrameDataset needs "
                                "labeled videos)")
        pack = open_packed(root, split) if packed else None
        self.packed = pack if pack is not None and pack.has("masks") else None

    def __len__(self) -> int:
        return len(self.videos) * len(self.frames)

    def __getitem__(self, n: int) -> dict:
        video, k = divmod(n, len(self.frames))
        index, folder = self.videos[video]
        t = self.frames[k]
        if self.packed is not None:
            row = self.packed.position[index]
            # copies: tensors must not share memory with the read-only memory map
            image = np.array(self.packed.array("frames")[row, t])
            mask = np.array(self.packed.array("masks")[row, t])
        else:
            image = layout.read_frame(folder / layout.frame_name(t), self.shape.size).transpose(2, 0, 1)
            path = folder / layout.MASK_FILE
            masks = layout.load_mask_file(path, mmap=True)
            shape = self.shape
            if masks.shape != (shape.frames, shape.height, shape.width):
                layout.check_mask(masks, path, shape=shape)  # raises with the shape in the message
            mask = layout.check_mask(np.array(masks[t : t + 1]), path, shape=shape, frames=1)[0]
        return {"image": torch.from_numpy(np.ascontiguousarray(image)),
                "mask": torch.from_numpy(np.ascontiguousarray(mask)), "index": index, "t": t}
