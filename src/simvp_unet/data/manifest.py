"""What made a generated dataset: `<root>/dataset.json` (generator version, seed, split sizes).

    {"generator_version": 1, "seed": 0, "preset": "tiny",
     "splits": {"train": 4, "val": 2, "unlabeled": 4, "hidden": 2}}

`data generate` writes it before the first video and refuses to add videos made with other
settings to a folder (which would mix seeds or give two videos one index); with the same
settings it finishes what is missing. `data check` compares the videos on disk with it.
Datasets without one (the real task's, or older ones) are judged by their `meta.json` files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..io import write_json
from . import layout

MANIFEST_FILE = "dataset.json"


def describe(config: Any, version: int, preset: str | None = None) -> dict[str, Any]:
    """The manifest of a dataset generated with `config` (a `GenerateConfig`)."""
    return {"generator_version": version, "seed": config.seed, "preset": preset,
            "splits": {split: getattr(config, split) for split in layout.SPLITS}}


def read(root: str | Path) -> dict[str, Any] | None:
    """The manifest of `root`, None if there is none; `DataError` if it is unreadable."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        splits = manifest["splits"]
        if not all(isinstance(splits[s], int) and splits[s] >= 0 for s in layout.SPLITS):
            raise ValueError("split sizes must be integers >= 0")
        int(manifest["seed"])
        int(manifest["generator_version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"corrupt {path} ({type(exc).__name__}: {exc}); it records how the dataset was "
                        "generated: restore it or regenerate into a new folder") from None
    return manifest


def differences(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What differs between two manifests ('seed 0 there, 1 here', ...); the preset name is not compared."""
    diff = []
    for key in ("generator_version", "seed"):
        if have[key] != want[key]:
            diff.append(f"{key.replace('_', ' ')} {have[key]} there, {want[key]} here")
    for split in layout.SPLITS:
        if have["splits"][split] != want["splits"][split]:
            diff.append(f"{split} {have['splits'][split]} there, {want['splits'][split]} here")
    return diff


def _meta_seed(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / layout.META_FILE).read_text())["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unrecorded_conflicts(root: Path, want: dict[str, Any], ranges: dict[str, range]) -> list[str]:
    """Conflicts of a dataset without a manifest with `want`: videos outside the ranges the
    settings give their split, videos of another seed."""
    diff = []
    for split in layout.SPLITS:
        if not (root / split).is_dir():
            continue
        videos = layout.list_videos(root, split)
        outside = [index for index, _ in videos if index not in ranges[split]]
        if outside:
            diff.append(f"{split}/ holds {layout.video_name(outside[0])}, outside the indices these split "
                        f"sizes give it ({ranges[split].start}..{ranges[split].stop - 1})")
        seeds = {_meta_seed(folder) for _, folder in videos[:1]} - {None}
        if seeds and seeds != {want["seed"]}:
            diff.append(f"{split}/ was generated with seed {seeds.pop()}, not {want['seed']}")
    return diff


def claim(root: str | Path, want: dict[str, Any], ranges: dict[str, range]) -> None:
    """Make `root` a dataset of these settings: write the manifest, or check the one there
    (`ConfigError` naming each difference when the folder was made with other settings)."""
    root = Path(root)
    have = read(root)
    diff = differences(have, want) if have is not None else _unrecorded_conflicts(root, want, ranges)
    if diff:
        raise ConfigError(f"{root} holds a dataset generated with other settings ({'; '.join(diff)}); "
                          "generate into another folder, or rerun with the same settings to finish it")
    if have is None:
        write_json(root / MANIFEST_FILE, want)
