"""What made a generated dataset: `<root>/dataset.json` (generator version, seed, split sizes,
the task's shape, the world), and the task shape of any dataset (`task_shape`).

    {"generator_version": 1, "seed": 0, "preset": "tiny",
     "splits": {"train": 4, "val": 2, "unlabeled": 4, "hidden": 2},
     "shape": {"frames": 22, "input_frames": 11, "target": 21, "height": 160, "width": 240},
     "world": {"objects": [3, 6], ..., "steps_per_frame": 10}}

`data generate` writes it before the first video and refuses to add videos made with other
settings to a folder (which would mix seeds, worlds or shapes, or give two videos one index);
with the same settings it finishes what is missing. `data check` compares the videos on disk
with it. The world is recorded whole (every setting of `scenes.WorldConfig`: the file says
what the videos show without the preset); a file without "shape" or "world" (written before
they were recorded), or without a world setting added since, was made with the defaults.
Datasets without one (the real task's, or older ones) are judged by their `meta.json` files,
and their task shape is read from their files (`task_shape`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..config import to_dict
from ..errors import ConfigError, DataError
from ..io import write_json
from . import layout
from .layout import COMPETITION, TaskShape
from .scenes import DEFAULT_WORLD

MANIFEST_FILE = "dataset.json"


def describe(config: Any, version: int, preset: str | None = None) -> dict[str, Any]:
    """The manifest of a dataset generated with `config` (a `GenerateConfig`)."""
    return {"generator_version": version, "seed": config.seed, "preset": preset,
            "splits": {split: getattr(config, split) for split in layout.SPLITS},
            "shape": config.shape.as_dict(), "world": to_dict(config.world)}


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
        for section in ("shape", "world"):
            if not isinstance(manifest.get(section, {}), dict):
                raise ValueError(f"{section} must be a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"corrupt {path} ({type(exc).__name__}: {exc}); it records how the dataset was "
                        "generated: restore it or regenerate into a new folder") from None
    return manifest


def differences(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What differs between two manifests ('seed 0 there, 1 here', 'world.fov 33.9 there, 50
    here', ...); the preset name is not compared, and a missing shape or world setting is the
    default."""
    diff = []
    for key in ("generator_version", "seed"):
        if have[key] != want[key]:
            diff.append(f"{key.replace('_', ' ')} {have[key]} there, {want[key]} here")
    for split in layout.SPLITS:
        if have["splits"][split] != want["splits"][split]:
            diff.append(f"{split} {have['splits'][split]} there, {want['splits'][split]} here")
    for section, defaults in (("shape", COMPETITION.as_dict()), ("world", to_dict(DEFAULT_WORLD))):
        there = {**defaults, **have.get(section, {})}
        here = {**defaults, **want.get(section, {})}
        for key in [*defaults, *sorted((set(there) | set(here)) - set(defaults))]:
            if there.get(key) != here.get(key):
                diff.append(f"{section}.{key} {_plain(there.get(key))} there, {_plain(here.get(key))} here")
    return diff


def _plain(value: Any) -> str:
    """A setting as it is written in a preset: [3, 6], 0.35."""
    return json.dumps(value)


def _meta_seed(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / layout.META_FILE).read_text())["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unrecorded_conflicts(root: Path, want: dict[str, Any], ranges: dict[str, range]) -> list[str]:
    """Conflicts of a dataset without a manifest with `want`: videos outside the ranges the
    settings give their split, videos of another seed, frames of another count or size."""
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
    if _first_video(root, ("train", "val", "unlabeled")) is not None:
        shape, wanted = inferred_shape(root), TaskShape(**want["shape"])
        if (shape.frames, *shape.size) != (wanted.frames, *wanted.size):
            diff.append(f"its videos have {shape.frames} frames of {shape.width}x{shape.height}, not "
                        f"{wanted.frames} of {wanted.width}x{wanted.height}")
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


def _first_video(root: Path, splits: tuple[str, ...]) -> Path | None:
    for split in splits:
        if (root / split).is_dir():
            videos = layout.list_videos(root, split)
            if videos:
                return videos[0][1]
    return None


def inferred_shape(root: str | Path) -> TaskShape:
    """The task shape a dataset's files show: frames per video and image size from its first
    full video (train, val, unlabeled), input frames from its hidden videos; what the files do
    not show is the competition's (frames 1..11 in, the last frame scored)."""
    root = Path(root)
    full, hidden = _first_video(root, ("train", "val", "unlabeled")), _first_video(root, ("hidden",))
    if full is None and hidden is None:
        return COMPETITION
    inputs = layout.stored_frames(hidden) if hidden is not None else None
    if full is not None:
        frames = layout.stored_frames(full)
        inputs = inputs or (COMPETITION.input_frames if frames > COMPETITION.input_frames else frames // 2)
    else:  # only hidden videos: the competition's forecast length after them
        frames = inputs + COMPETITION.future_frames
    first = (full or hidden) / layout.frame_name(0)
    try:
        with Image.open(first) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"corrupt image {first}: {exc}") from None
    try:
        return TaskShape(frames=frames, input_frames=inputs, target=frames - 1, height=height, width=width)
    except ConfigError as exc:
        raise DataError(f"{root}: the videos' files give no usable task shape ({exc}); "
                        f"first video: {full or hidden}") from None


def task_shape(root: str | Path) -> TaskShape:
    """The task shape of the dataset at `root`: the one its dataset.json records, else the one
    its files show (`inferred_shape`)."""
    manifest = read(root)
    if manifest is not None and "shape" in manifest:
        return TaskShape.from_dict(manifest["shape"], where=str(Path(root) / MANIFEST_FILE))
    return inferred_shape(root)
