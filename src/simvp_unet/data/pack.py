"""Packed splits: every frame and mask of a split in memory-mapped uint8 arrays.

    simvp-unet data pack data/demo

writes, per split, `<root>/packed/<split>.frames.npy` (N, T, 3, H, W), `<split>.masks.npy`
(N, 22, H, W) when every video has `mask.npy`, and `<split>.json` (video indices, a
fingerprint of the packed files and a hash of their bytes). The datasets use a packed split
automatically while its fingerprint matches: adding, removing or rewriting a frame or
`mask.npy` makes the pack stale and the datasets fall back to the files. The fingerprint takes
one stat per file (size, modification and status-change times, inode number), so a file
rewritten with its size and modification time kept still counts as changed. A copied dataset
has new inodes and status-change times: its pack is stale until `data pack` runs again, which
then only hashes the files and, finding the same bytes, keeps the arrays. Pseudo-labels
(`mask_pred.npy`) are not packed: they are small, read from their files, and may be written
after packing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataError, OutputError, output_error, short_reason
from ..io import write_json
from . import layout
from .layout import COMPETITION, TaskShape
from .manifest import task_shape

PACKED = "packed"
_VERSION = 4


def _packed_files(folder: Path) -> list[os.DirEntry]:
    """The files of a video folder that a pack holds (frames and mask.npy), sorted by name;
    files added beside them later (pseudo-labels written after packing) do not count."""
    return sorted((entry for entry in os.scandir(folder)
                   if entry.name.endswith(".png") or entry.name == layout.MASK_FILE), key=lambda e: e.name)


def fingerprint(videos: list[tuple[int, Path]]) -> str:
    """A hash of the video indices and the sizes, modification and status-change times and
    inode numbers of their packed files: one stat per file. A write, a replacement, or a
    modification time put back with os.utime all change the status-change time."""
    digest = hashlib.sha1()
    for index, folder in videos:
        digest.update(f"{index}:".encode())
        for entry in _packed_files(folder):
            digest.update(f"{entry.name}:{stat_key(entry.stat())};".encode())
    return digest.hexdigest()


def stat_key(stat: os.stat_result) -> str:
    """What one stat tells of a file's bytes: size, modification and status-change times, inode.
    A write, a replacement, or a modification time put back with os.utime all change it."""
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}"


def file_digest(path: str | Path) -> bytes:
    """The SHA-1 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    return digest.digest()


def content(videos: list[tuple[int, Path]]) -> str:
    """A hash of the video indices and the names and bytes of their packed files (reads them
    all: asked when packing, and by `data pack` when only the fingerprint differs)."""
    digest = hashlib.sha1()
    for index, folder in videos:
        digest.update(f"{index}:".encode())
        for entry in _packed_files(folder):
            digest.update(f"{entry.name}:".encode() + file_digest(entry.path))
    return digest.hexdigest()


def _paths(root: Path, split: str) -> dict[str, Path]:
    base = root / PACKED
    return {name: base / f"{split}.{name}.npy" for name in ("frames", "masks")} | {
        "index": base / f"{split}.json"
    }


class PackedSplit:
    """Memory-mapped arrays of one split, opened lazily (safe to pickle into loader workers).

    Args:
        root: dataset root.
        split: split name.
        info: the split's `packed/<split>.json` contents.
    """

    def __init__(self, root: Path, split: str, info: dict) -> None:
        self.root, self.split, self.info = Path(root), split, info
        self.position = {int(i): n for n, i in enumerate(info["indices"])}
        self._arrays: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}

    def has(self, name: str) -> bool:
        """Whether the pack holds array `name` ('frames' or 'masks')."""
        return name in self.info["arrays"]

    def array(self, name: str) -> np.ndarray:
        """The memory-mapped array `name`."""
        if name not in self._arrays:
            self._arrays[name] = np.load(_paths(self.root, self.split)[name], mmap_mode="r")
        return self._arrays[name]


_NOTED: set[tuple[str, str]] = set()


def _note_stale(root: Path, split: str) -> None:
    """Say once per process and split that a pack exists but is not used (its videos changed,
    were copied, or it was made by another version), and how to use packs again."""
    if (str(root), split) not in _NOTED:
        _NOTED.add((str(root), split))
        print(f"note: the pack of {root / split} no longer matches its videos (changed, copied, or packed by "
              f"another version); reading the video files instead (`simvp-unet data pack {root}` updates it)",
              file=sys.stderr)


def open_packed(root: str | Path, split: str) -> PackedSplit | None:
    """The packed split if present and up to date with the video folders, else None."""
    root = Path(root)
    paths = _paths(root, split)
    if not paths["index"].is_file():
        return None
    try:
        info = json.loads(paths["index"].read_text())
        videos = layout.list_videos(root, split)
    except (json.JSONDecodeError, DataError):
        return None
    if (info.get("version") != _VERSION or info.get("fingerprint") != fingerprint(videos)
            or not all(paths[name].is_file() for name in info.get("arrays", []))):
        _note_stale(root, split)
        return None
    if check_arrays(root, split, info):
        return None  # damaged (e.g. truncated): the video files are read instead; `data check` says so
    return PackedSplit(root, split, info)


def check_arrays(root: str | Path, split: str, info: dict) -> list[str]:
    """Problems of a split's packed arrays: unreadable, truncated or of the wrong shape."""
    paths = _paths(Path(root), split)
    problems = []
    for name in info.get("arrays", []):
        try:
            array = np.load(paths[name], mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            problems.append(f"damaged pack {paths[name]} ({short_reason(exc)}); run `simvp-unet data pack` again")
            continue
        if array.dtype != np.uint8 or len(array) != len(info.get("indices", [])):
            problems.append(f"pack {paths[name]} holds {array.dtype} {tuple(array.shape)}, not one uint8 row per "
                            f"video of {paths['index']}; run `simvp-unet data pack` again")
    return problems


def _kept(root: Path, split: str, videos: list[tuple[int, Path]], arrays: list[str],
          shape: TaskShape) -> dict | None:
    """The index info of a pack already there that holds these videos' files, intact; its
    fingerprint renewed where only that differs (a copied dataset: same bytes). None: pack."""
    paths = _paths(root, split)
    try:
        info = json.loads(paths["index"].read_text())
        same = (info["version"] == _VERSION and info["indices"] == [i for i, _ in videos]
                and info["arrays"] == arrays and info["frames"] == len(shape.split_frames(split))
                and info.get("size", list(COMPETITION.size)) == list(shape.size))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same or check_arrays(root, split, info):
        return None
    stamp = fingerprint(videos)
    if info.get("fingerprint") == stamp:
        return info
    if info.get("content") != content(videos) or fingerprint(videos) != stamp:
        return None
    info["fingerprint"] = stamp
    write_json(paths["index"], info)
    return info


def pack_split(root: str | Path, split: str, *, progress: bool = True) -> dict:
    """Pack one split (validating every file on the way); returns its index info, with
    "kept": True where the pack there already held the same files (see module doc)."""
    root = Path(root)
    videos = layout.list_videos(root, split)
    if not videos:
        raise DataError(f"no videos to pack in {root / split}")
    shape = task_shape(root)
    frames = shape.split_frames(split)
    paths = _paths(root, split)
    paths["index"].parent.mkdir(parents=True, exist_ok=True)
    arrays = ["frames"]
    if all((folder / layout.MASK_FILE).is_file() for _, folder in videos):
        arrays.append("masks")
    kept = _kept(root, split, videos, arrays, shape)
    if kept is not None:
        return {**kept, "kept": True}
    shapes = {
        "frames": (len(videos), len(frames), 3, *shape.size),  # as the datasets return them
        "masks": (len(videos), shape.frames, *shape.size),
    }
    needed = sum(int(np.prod(shapes[name])) for name in arrays)
    free = shutil.disk_usage(paths["index"].parent).free
    if free < needed:  # memory-mapped writes on a full disk kill the process (SIGBUS): refuse first
        raise OutputError(f"cannot write {paths['frames'].parent}: the pack of {split} needs "
                          f"{needed / 2**30:.2f} GiB, {free / 2**30:.2f} GiB are free; free some space")
    before = fingerprint(videos)
    paths["index"].unlink(missing_ok=True)  # the old pack is invalid from here on
    tmps = {name: paths[name].with_name(f".{paths[name].stem}.tmp.npy") for name in arrays}
    try:
        try:
            out = {name: np.lib.format.open_memmap(tmps[name], mode="w+", dtype=np.uint8,
                                                   shape=shapes[name]) for name in arrays}
            for n, (_, folder) in enumerate(tqdm(videos, desc=f"pack {split}", disable=not progress)):
                out["frames"][n] = layout.read_frames(folder, frames, shape.size).transpose(0, 3, 1, 2)
                if "masks" in out:
                    out["masks"][n] = layout.read_mask(folder, shape)
            for array in out.values():
                array.flush()
            del out
        except OSError as exc:  # full disk while filling the arrays
            raise output_error(paths["frames"], exc) from None
        digest = content(videos)
        if fingerprint(videos) != before:
            raise DataError(f"{root / split} changed while packing; run `data pack` again")
        for name in ("frames", "masks"):
            if name in arrays:
                os.replace(tmps[name], paths[name])
            else:
                paths[name].unlink(missing_ok=True)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    info = {"version": _VERSION, "split": split, "frames": len(frames), "size": list(shape.size), "arrays": arrays,
            "indices": [i for i, _ in videos], "fingerprint": before, "content": digest}
    write_json(paths["index"], info)
    return info


def pack(root: str | Path, splits: list[str] | None = None, *, progress: bool = True) -> list[dict]:
    """Pack the given splits (default: every split present). Returns their index infos."""
    root = Path(root)
    splits = splits or [s for s in layout.SPLITS if (root / s).is_dir()]
    if not splits:
        raise DataError(f"no split folders ({', '.join(layout.SPLITS)}) in {root}")
    infos = []
    for split in splits:
        infos.append(pack_split(root, split, progress=progress))
    return infos
