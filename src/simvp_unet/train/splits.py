"""Which splits of a dataset a trainer can use, and whether the files its datasets will read
are sound: checks shared by the trainers, made before the first step."""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset
from tqdm import tqdm

from ..data import layout
from ..data.datasets import FrameDataset, VideoDataset
from ..data.layout import TaskShape
from ..errors import ConfigError, DataError, os_reason


def check_splits(root: Path, splits: list[str]) -> None:
    """Fail with one line unless `root` is a dataset folder and every split can train or validate."""
    if root.exists() and not root.is_dir():
        raise DataError(f"--data {root} is a file, not a dataset folder (give the folder holding train/, val/, ...)")
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    for split in splits:
        if split not in layout.SPLITS or split == "hidden":
            raise ConfigError(f"split {split!r} cannot train or validate; use train, val or unlabeled")


def has_true_masks(root: Path, split: str) -> bool:
    """True when a split has videos and every one of them has its true masks."""
    videos = layout.list_videos(root, split)
    return bool(videos) and all((folder / layout.MASK_FILE).is_file() for _, folder in videos)


def require_true_masks(root: Path, split: str, why: str) -> None:
    """Fail with one line, starting with `why`, unless every video of the split has its true masks."""
    if not has_true_masks(root, split):
        raise DataError(f"{why}: {root / split} has videos without {layout.MASK_FILE} (or none)")


def pseudo_labeled(root: Path, split: str) -> bool:
    """True when every video of a split has its pseudo-label; a split labeled halfway fails."""
    videos = layout.list_videos(root, split)
    done = [(folder / layout.PRED_MASK_FILE).is_file() for _, folder in videos]
    if not any(done):
        return False
    if not all(done):
        missing = next(folder for (_, folder), ok in zip(videos, done, strict=True) if not ok)
        raise DataError(f"{sum(done)} of {len(done)} {split} videos have {layout.PRED_MASK_FILE}; "
                        f"missing {missing / layout.PRED_MASK_FILE} (finish `simvp-unet label` first)")
    return True


def masked_splits(root: Path, splits: list[str], who: str) -> list[str]:
    """The splits with masks: true masks where there are some, else complete pseudo-labels;
    a split with neither is skipped with a note. Fails when none is left."""
    out = []
    for split in splits:
        if has_true_masks(root, split) or pseudo_labeled(root, split):
            out.append(split)
        elif layout.list_videos(root, split):
            print(f"{who}: skipping {root / split}: no masks or pseudo-labels "
                  f"(run `simvp-unet label` to use it)")
    if not out:
        raise DataError(f"the {who} found no masks in {root} splits {', '.join(splits)}")
    return out


# ---------------------------------------------------------------------------- the files a run reads

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Threads checking videos, at most one per core: reading files waits on the disk (or a network
# file system) without holding Python's lock, the rest holds it. On 2 cores, 2,000 videos of
# 22 frames and a mask: 4.1 s per 1,000 from a cold disk with one thread, 3.2 with two; 1.0 and
# 1.6 from the page cache.
_CHECK_THREADS = 8


def check_frame_file(path: Path, shape: TaskShape) -> None:
    """Fail with one line unless `path` is a whole frame of the dataset's size, without
    decoding it: a PNG is read once and each chunk checked against its CRC (a truncated or
    damaged file fails, as its decoding would), its size taken from the header. A frame in
    another format is decoded (`layout.read_frame`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing frame: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read frame {path}: {os_reason(exc)}") from None
    if not data.startswith(_PNG_SIGNATURE):
        layout.read_frame(path, shape.size)
        return
    size, pos = None, len(_PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            raise DataError(f"corrupt image {path}: truncated (it ends before its IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            raise DataError(f"corrupt image {path}: truncated (it ends inside its {kind.decode('latin-1')} chunk)")
        if zlib.crc32(data[pos + 4 : end]) != int.from_bytes(data[end : end + 4], "big"):
            raise DataError(f"corrupt image {path}: its {kind.decode('latin-1')} chunk fails its checksum "
                            "(the file is damaged)")
        if kind == b"IHDR":
            size = struct.unpack_from(">II", data, pos + 8)
        if kind == b"IEND":
            break
        pos = end + 4
    if size is None:
        raise DataError(f"corrupt image {path}: no IHDR chunk")
    if size != (shape.width, shape.height):
        raise DataError(f"frame {path} is {size[0]}x{size[1]}, expected {shape.width}x{shape.height} "
                        "(width x height) like the dataset's other frames")


def check_mask_file(path: Path, shape: TaskShape) -> None:
    """Fail with one line unless `path` is a mask the datasets can read (`layout.check_mask`:
    shape, dtype, class ids 0..48), read through a memory map: the header gives shape and
    dtype, the ids take one pass over the data."""
    layout.check_mask(layout.load_mask_file(path, mmap=True), path, shape=shape)


def _files(dataset: Dataset) -> Iterator[tuple[list[Path], list[Path], TaskShape]]:
    """(frame files, mask files, the dataset's task shape) that `dataset` reads, one per video; a packed split's
    arrays were checked when opened (`data.pack.open_packed`) and its files are not read. In-
    memory datasets (the dynamics' tracks, checked when extracted) read none."""
    if isinstance(dataset, ConcatDataset):
        for part in dataset.datasets:
            yield from _files(part)
    elif isinstance(dataset, VideoDataset):
        pack = dataset.packed
        for (_, folder), mask_file in zip(dataset.videos, dataset.mask_files, strict=True):
            frames = [folder / layout.frame_name(t) for t in dataset.frames] if dataset.with_frames else []
            packed_mask = mask_file == layout.MASK_FILE and pack is not None and pack.has("masks")
            masks = [folder / mask_file] if mask_file is not None and not packed_mask else []
            yield ([] if pack is not None else frames), masks, dataset.shape
    elif isinstance(dataset, FrameDataset) and dataset.packed is None:
        for _, folder in dataset.videos:
            yield [folder / layout.frame_name(t) for t in dataset.frames], [folder / layout.MASK_FILE], dataset.shape


def _check_video(frames: list[Path], masks: list[Path], shape: TaskShape) -> None:
    for path in frames:
        check_frame_file(path, shape)
    for path in masks:
        check_mask_file(path, shape)


def check_readable(*datasets: Dataset, progress: bool = True) -> None:
    """Fail with one line naming the file unless every file the datasets will read is there
    and sound: each frame whole and of the dataset's size, each mask and pseudo-label of the
    dataset's shape (frames, H, W), integer, with class ids 0..48. Run before training, so that a bad file stops the
    run at once, not when a batch first samples it (epochs later). Reads checksums, headers and
    mask values, not pixels: on 2 cores, 3.6 s per 1,000 videos of 22 frames and a mask from a
    cold disk, 1.7 s from the page cache (decoding the frames: 13 s). Videos are checked by a
    few threads; the first bad one, in order, is reported."""
    jobs = [job for dataset in datasets for job in _files(dataset)]
    if not any(frames or masks for frames, masks, _ in jobs):
        return
    threads = min(_CHECK_THREADS, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool, tqdm(total=len(jobs), desc="check data", unit="video", delay=2,
                                                   disable=not progress, file=sys.stderr) as bar:
        futures: list[Future[None]] = [pool.submit(_check_video, *job) for job in jobs]
        try:
            for future in futures:
                future.result()
                bar.update()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
