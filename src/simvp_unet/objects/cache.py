"""The tracks of a dataset split, extracted once and kept beside the data.

    arrays = split_tracks("data/bench", "train")   # dict of numpy arrays, one row per video

Tracks come from the true masks (`mask.npy`) where a video has them, else from its
pseudo-labels (`mask_pred.npy`, written by `simvp-unet label`); videos with neither are
left out. They are stored in `<root>/tracks/<split>.npz` with a fingerprint of the mask
files they come from: a changed, added or removed mask file makes the cache stale, and it
is rebuilt. Training reads only this file, never the PNGs.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import layout
from ..errors import DataError
from ..io import atomic_path
from .tracks import extract_tracks

CACHE_FOLDER = "tracks"
_VERSION = 1
_CHUNK = 16  # videos per extraction call


def _mask_files(root: Path, split: str) -> list[tuple[int, Path, bool]]:
    """(index, mask file, is a pseudo-label) of every video of a split that has masks."""
    out = []
    for index, folder in layout.list_videos(root, split):
        true, pred = folder / layout.MASK_FILE, folder / layout.PRED_MASK_FILE
        if true.is_file():
            out.append((index, true, False))
        elif pred.is_file():
            out.append((index, pred, True))
    return out


def _fingerprint(files: list[tuple[int, Path, bool]]) -> str:
    digest = hashlib.sha1(f"v{_VERSION};".encode())
    for index, path, _ in files:
        stat = path.stat()
        digest.update(f"{index}:{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def cache_path(root: str | Path, split: str) -> Path:
    """Where the tracks of a split are kept."""
    return Path(root) / CACHE_FOLDER / f"{split}.npz"


def split_tracks(root: str | Path, split: str, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Tracks over all 22 frames of every video of `split` that has masks (see module doc).

    Returns:
        "index" (N,), "pseudo" (N,) bool, and the `Tracks.arrays()` fields with N rows.
    """
    root = Path(root)
    files = _mask_files(root, split)
    if not files:
        raise DataError(f"no masks in {root / split}: tracks need mask.npy or {layout.PRED_MASK_FILE} "
                        "(run `simvp-unet label` for unlabeled videos)")
    stamp = _fingerprint(files)
    path = cache_path(root, split)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                if str(cached["fingerprint"]) == stamp:
                    return {k: cached[k] for k in cached.files if k != "fingerprint"}
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable cache: rebuild it
    parts: list[dict[str, np.ndarray]] = []
    with tqdm(total=len(files), desc=f"tracks {split}", unit="video", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, len(files), _CHUNK):
            chunk = files[start:start + _CHUNK]
            masks = np.stack([layout.check_mask(layout.load_mask_file(p), p) for _, p, _ in chunk])
            parts.append(extract_tracks(torch.from_numpy(masks), templates=False).arrays())
            bar.update(len(chunk))
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    arrays["index"] = np.array([i for i, _, _ in files], np.int64)
    arrays["pseudo"] = np.array([pseudo for _, _, pseudo in files], bool)
    with atomic_path(path) as tmp:
        np.savez(tmp, fingerprint=np.array(stamp), **arrays)
    return arrays
