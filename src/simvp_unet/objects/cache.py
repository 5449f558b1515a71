"""The tracks of a dataset split, extracted once and kept beside the data.

    arrays = split_tracks("data/bench", "train")   # dict of numpy arrays, one row per video

Tracks come from the true masks (`mask.npy`) where a video has them, else from its
pseudo-labels (`mask_pred.npy`, written by `simvp-unet label`); videos with neither are
left out. They are stored in `<root>/tracks/<split>.npz` (or `<cache_dir>/<split>.npz`) with
a fingerprint of the mask files they come from (their sizes, modification and status-change
times and inode numbers) and a hash of their bytes. A changed, added or removed mask file
makes the cache stale, and it is rebuilt, even one rewritten with its size and modification
time kept (the status-change time, which only the kernel sets, still moves). Where only the
fingerprint differs (a copied dataset), the bytes are hashed once: the same bytes keep the
cache. A cache that cannot be read for any reason is rebuilt; it is never unpickled.

A read-only dataset with no up-to-date cache: the tracks are computed in memory with a note
on stderr, unless `cache_dir` names a folder for them. Training reads this file, and the mask
files once more to place the sightings by their silhouettes once a camera is fitted
(`train.dynamics.place_sightings`), never the PNGs.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import layout
from ..data.manifest import task_shape
from ..data.pack import file_digest, stat_key
from ..errors import DataError, OutputError
from ..io import atomic_path
from .tracks import extract_tracks

CACHE_FOLDER = "tracks"
_VERSION = 2
_CHUNK = 16  # videos per extraction call
_FIELDS = ("classes", "present", "center", "size", "area", "cut", "whole")  # `Tracks.arrays()`


def mask_files(root: str | Path, split: str) -> list[tuple[int, Path, bool]]:
    """(index, mask file, is a pseudo-label) of every video of a split that has masks, in the
    order of the rows of `split_tracks`."""
    root = Path(root)
    out = []
    for index, folder in layout.list_videos(root, split):
        true, pred = folder / layout.MASK_FILE, folder / layout.PRED_MASK_FILE
        if true.is_file():
            out.append((index, true, False))
        elif pred.is_file():
            out.append((index, pred, True))
    return out


def _fingerprint(files: list[tuple[int, Path, bool]]) -> str:
    """A hash of the indices, names, sizes, modification and status-change times and inode
    numbers of the mask files: one stat each. A write, a replacement, or a modification time
    put back with os.utime all change the status-change time."""
    digest = hashlib.sha1(f"v{_VERSION};".encode())
    for index, path, _ in files:
        digest.update(f"{index}:{path.name}:{stat_key(path.stat())};".encode())
    return digest.hexdigest()


def _content(files: list[tuple[int, Path, bool]]) -> str:
    """A hash of the indices, names and bytes of the mask files (reads them all: asked only
    when the fingerprint differs, and when the cache is built)."""
    digest = hashlib.sha1(f"v{_VERSION};".encode())
    for index, path, _ in files:
        digest.update(f"{index}:{path.name}:".encode() + file_digest(path))
    return digest.hexdigest()


def cache_path(root: str | Path, split: str, cache_dir: str | Path | None = None) -> Path:
    """Where the tracks of a split are kept: `<cache_dir>/<split>.npz`, by default in the
    dataset (`<root>/tracks/<split>.npz`)."""
    folder = Path(root) / CACHE_FOLDER if cache_dir is None else Path(cache_dir)
    return folder / f"{split}.npz"


def _check_arrays(arrays: dict[str, np.ndarray], files: list[tuple[int, Path, bool]], frames: int) -> None:
    """Raise ValueError unless `arrays` hold one row of tracks per video of `files`, in order."""
    if set(arrays) != {*_FIELDS, "index", "pseudo"}:
        raise ValueError(f"fields {sorted(arrays)}")
    if (arrays["index"].tolist() != [i for i, _, _ in files]
            or arrays["pseudo"].tolist() != [pseudo for _, _, pseudo in files]):
        raise ValueError("other videos")
    n, k, t = len(files), arrays["classes"].shape[-1], frames
    shapes = {"classes": (n, k), "present": (n, k, t), "center": (n, k, t, 2), "size": (n, k, t, 2),
              "area": (n, k, t), "cut": (n, k, t), "whole": (n, k, t)}
    for name, shape in shapes.items():
        if arrays[name].shape != shape:
            raise ValueError(f"{name} has shape {arrays[name].shape}, not {shape}")


def _read_cache(path: Path, files: list[tuple[int, Path, bool]],
                frames: int) -> tuple[dict[str, np.ndarray], str, str] | None:
    """(arrays, fingerprint, content hash) of a cache that fits `files`; None where there is
    none or it cannot be read, whatever the reason (it is rebuilt)."""
    try:
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as cached:
            arrays = {k: cached[k] for k in cached.files}
        stamp, content = str(arrays.pop("fingerprint")), str(arrays.pop("content"))
        _check_arrays(arrays, files, frames)
    except Exception:  # noqa: BLE001 - truncated (BadZipFile), not a zip, pickled objects refused, keys, shapes...
        return None
    return arrays, stamp, content


def _save(path: Path, arrays: dict[str, np.ndarray], stamp: str, content: str, split: str, *,
          required: bool) -> None:
    """Write the cache; where the default location cannot be written (a read-only dataset),
    say so in one line and go on with the tracks in memory."""
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, fingerprint=np.array(stamp), content=np.array(content), **arrays)
    except OutputError as exc:
        if required:
            raise
        print(f"note: {exc}; the tracks of {split} are kept in memory for this run (set a writable "
              "tracks folder, tracks_dir, to keep them)", file=sys.stderr)


def split_tracks(root: str | Path, split: str, *, cache_dir: str | Path | None = None,
                 progress: bool = True) -> dict[str, np.ndarray]:
    """Tracks over all frames of every video of `split` that has masks (see module doc).

    Args:
        root: dataset root.
        split: the split whose masks (or pseudo-labels) give the tracks.
        cache_dir: folder of the cache files; None: `<root>/tracks`, and where that cannot be
            written the tracks are computed in memory (a given folder that cannot be written
            raises `OutputError`).
        progress: a progress bar on stderr while extracting.

    Returns:
        "index" (N,), "pseudo" (N,) bool, and the `Tracks.arrays()` fields with N rows.
    """
    root = Path(root)
    files = mask_files(root, split)
    if not files:
        raise DataError(f"no masks in {root / split}: tracks need mask.npy or {layout.PRED_MASK_FILE} "
                        "(run `simvp-unet label` for unlabeled videos)")
    shape = task_shape(root)
    stamp = _fingerprint(files)
    path = cache_path(root, split, cache_dir)
    cached = _read_cache(path, files, shape.frames)
    if cached is not None:
        arrays, cached_stamp, cached_content = cached
        if cached_stamp == stamp:
            return arrays
        content = _content(files)
        if cached_content == content:  # same bytes, other files (a copied dataset): stamp them
            _save(path, arrays, stamp, content, split, required=cache_dir is not None)
            return arrays
    parts: list[dict[str, np.ndarray]] = []
    with tqdm(total=len(files), desc=f"tracks {split}", unit="video", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, len(files), _CHUNK):
            chunk = files[start:start + _CHUNK]
            masks = np.stack([layout.check_mask(layout.load_mask_file(p), p, shape=shape) for _, p, _ in chunk])
            parts.append(extract_tracks(torch.from_numpy(masks), templates=False).arrays())
            bar.update(len(chunk))
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    arrays["index"] = np.array([i for i, _, _ in files], np.int64)
    arrays["pseudo"] = np.array([pseudo for _, _, pseudo in files], bool)
    content = _content(files)
    if _fingerprint(files) == stamp:  # not cached if a mask changed while it was read
        _save(path, arrays, stamp, content, split, required=cache_dir is not None)
    return arrays
