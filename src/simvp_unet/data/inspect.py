"""Look at a dataset: validate every file, summarize objects and motion, draw pictures.

    simvp-unet data check data/demo
    simvp-unet data stats data/demo
    simvp-unet data show data/demo --sheet --out sheet.png

Works on the real task's data too (statistics then come from masks instead of meta.json).
Frame counts and sizes are the dataset's own task shape (`manifest.task_shape`: the one its
dataset.json records, else the one its files show).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from .. import viz
from ..classes import CLASS_NAMES, NUM_CLASSES
from ..errors import ConfigError, DataError
from . import layout, manifest, pack
from .layout import COMPETITION, TaskShape

MOVING_PX = 3.0  # an object whose center travels less than this over the video is at rest


# -- check ----------------------------------------------------------------------------------------


def _check_video(split: str, folder: Path, objects: dict[str, list[bool]], shape: TaskShape) -> list[str]:
    """Problems of one video's frames and masks (against the dataset's `shape`); whether each
    readable mask holds an object is added to `objects` under '<split>/video_*/<mask file>'."""
    problems = []
    for t in shape.split_frames(split):
        try:
            layout.read_frame(folder / layout.frame_name(t), shape.size)
        except DataError as exc:
            problems.append(str(exc))
    if split == "hidden":
        leaked = sorted(p.name for p in folder.glob("image_*.png")
                        if p.name not in {layout.frame_name(t) for t in shape.split_frames(split)})
        if leaked:
            problems.append(f"hidden video {folder} holds frames beyond {layout.frame_name(shape.last_input)}: "
                            f"{', '.join(leaked)}")
    mask_files = []
    if split in layout.LABELED_SPLITS or (folder / layout.MASK_FILE).exists():
        mask_files.append(layout.MASK_FILE)
    if (folder / layout.PRED_MASK_FILE).exists():
        mask_files.append(layout.PRED_MASK_FILE)
    for name in mask_files:
        try:
            mask = layout.check_mask(layout.load_mask_file(folder / name), folder / name, shape=shape)
        except DataError as exc:
            problems.append(str(exc))
        else:
            objects.setdefault(f"{split}/video_*/{name}", []).append(bool(mask.any()))
    return problems


def _check_meta(path: Path) -> list[str]:
    """A meta.json that exists must parse and hold objects, frames and events."""
    if not path.is_file():
        return []
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k), list) for k in ("objects", "frames",
                                                                                        "events")):
            raise ValueError("expected objects, frames and events lists")
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"corrupt meta file {path} ({type(exc).__name__}: {str(exc)[:120]})"]
    return []


def _check_layout(root: Path, videos: dict[str, list[tuple[int, Path]]]) -> list[str]:
    """Whole-dataset problems: split counts against dataset.json, empty splits, unfinished
    videos, hidden videos and answers without each other, damaged packs."""
    problems = []
    try:
        recorded = manifest.read(root)
    except DataError as exc:
        problems.append(str(exc))
        recorded = None
    for split in (*layout.SPLITS, layout.ANSWERS):
        folder = root / split
        if folder.is_dir():
            unfinished = sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp_"))
            if unfinished:
                problems.append(f"unfinished video folders in {folder} (an interrupted generation): "
                                f"{', '.join(unfinished[:3])}; rerun `simvp-unet data generate` with the same "
                                "settings to finish them")
        if split == layout.ANSWERS:
            continue
        if split not in videos and folder.is_dir():
            continue  # unlistable (reported)
        if recorded is not None:
            want, have = recorded["splits"][split], len(videos.get(split, []))
            if have != want:
                problems.append(f"{folder} has {have} of the {want} videos recorded in {root / manifest.MANIFEST_FILE}"
                                " (half-generated? rerun `simvp-unet data generate` with the same settings)")
        elif folder.is_dir() and not videos.get(split):
            problems.append(f"empty split: no video_<i> folders in {folder}")
    hidden = {i for i, _ in videos.get("hidden", [])}
    listed = "hidden" in videos or not (root / "hidden").is_dir()
    if listed and (layout.ANSWERS in videos or recorded is not None):
        answered = {i for i, _ in videos.get(layout.ANSWERS, [])}
        for index in sorted(hidden - answered):
            problems.append(f"hidden video {root / 'hidden' / layout.video_name(index)} has no answer in "
                            f"{root / layout.ANSWERS}")
        for index in sorted(answered - hidden):
            problems.append(f"answer {root / layout.ANSWERS / layout.video_name(index)} has no hidden video")
    packed = root / pack.PACKED
    for index_file in sorted(packed.glob("*.json")) if packed.is_dir() else []:
        try:
            info = json.loads(index_file.read_text())
            info["indices"], info["arrays"]  # noqa: B018 - the keys every pack index has
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"damaged pack index {index_file} ({type(exc).__name__}); run `simvp-unet data pack` again")
            continue
        problems += pack.check_arrays(root, index_file.stem, info)
    return problems


def check(root: str | Path, *, progress: bool = False) -> list[str]:
    """Every problem found in a dataset, one message per problem naming its file."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        return [f"{root} is a file, not a dataset folder"]
    if not root.is_dir():
        return [f"dataset folder not found: {root}"]
    splits = [s for s in layout.SPLITS if (root / s).is_dir()]
    if not splits:
        return [f"no split folders ({', '.join(layout.SPLITS)}) in {root}"]
    problems: list[str] = []
    owner: dict[int, str] = {}
    videos: dict[str, list[tuple[int, Path]]] = {}
    for split in [*splits, layout.ANSWERS] if (root / layout.ANSWERS).is_dir() else splits:
        try:
            videos[split] = layout.list_videos(root, split)
        except DataError as exc:  # two folders for one index: its counts mean nothing
            problems.append(str(exc))
    jobs = []
    for split in splits:
        for index, folder in videos.get(split, []):
            if index in owner:
                problems.append(f"video index {index} is in both {owner[index]}/ and {split}/")
            owner[index] = split
            jobs.append((split, folder))
    jobs += [(layout.ANSWERS, folder) for _, folder in videos.get(layout.ANSWERS, [])]
    problems += _check_layout(root, videos)
    shape = _dataset_shape(root, problems)
    objects: dict[str, list[bool]] = {}
    for split, folder in tqdm(jobs, desc="check", unit="video", disable=not progress):
        if split == layout.ANSWERS:
            problems += _check_answers(folder, objects, shape)
        else:
            problems += _check_video(split, folder, objects, shape)
        problems += _check_meta(folder / layout.META_FILE)
    empty = [masks for masks, found in objects.items() if not any(found)]
    if empty:
        problems.append(f"no objects in {root}: every {', '.join(empty)} is background only (class 0); "
                        "nothing to segment or forecast (were the masks saved wrong?)")
    return problems


def _dataset_shape(root: Path, problems: list[str]) -> TaskShape:
    """The task shape the videos are checked against: the recorded one, else the one the files
    show, else the competition's. A bad recorded shape is added to `problems` (an unreadable
    dataset.json or first frame is reported where it is checked)."""
    try:
        return manifest.task_shape(root)
    except (ConfigError, DataError) as exc:
        if isinstance(exc, ConfigError):
            problems.append(str(exc))
    try:
        return manifest.inferred_shape(root)
    except DataError:
        return COMPETITION


def _check_answers(folder: Path, objects: dict[str, list[bool]], shape: TaskShape) -> list[str]:
    problems = []
    for t in range(shape.input_frames, shape.frames):
        try:
            layout.read_frame(folder / layout.frame_name(t), shape.size)
        except DataError as exc:
            problems.append(str(exc))
    try:
        mask = layout.read_mask(folder, shape)
    except DataError as exc:
        problems.append(str(exc))
    else:
        objects.setdefault(f"{layout.ANSWERS}/video_*/{layout.MASK_FILE}", []).append(bool(mask.any()))
    return problems


# -- stats ----------------------------------------------------------------------------------------


def _tracks_from_masks(masks: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """class id -> (pixels per frame (T,), mask centroid per frame (T, 2), NaN where absent)."""
    frames = masks.shape[0]
    rows, cols = np.mgrid[: masks.shape[1], : masks.shape[2]]
    tracks = {}
    for cid in np.unique(masks):
        if cid == 0:
            continue
        pixels = np.zeros(frames)
        centers = np.full((frames, 2), np.nan)
        for t in range(frames):
            where = masks[t] == cid
            pixels[t] = where.sum()
            if pixels[t]:
                centers[t] = cols[where].mean(), rows[where].mean()
        tracks[int(cid)] = (pixels, centers)
    return tracks


def _tracks_from_meta(meta: dict) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """class id -> (visible pixels (T,), projected center (T, 2), NaN before the object exists)."""
    tracks = {}
    for k, obj in enumerate(meta["objects"]):
        pixels = np.zeros(len(meta["frames"]))
        centers = np.full((len(meta["frames"]), 2), np.nan)
        for t, frame in enumerate(meta["frames"]):
            state = frame["objects"][k]
            if state is not None:
                pixels[t] = state["pixels"]
                centers[t] = state["pixel"]
        tracks[obj["class_id"]] = (pixels, centers)
    return tracks


def _video_tracks(split: str, folder: Path, shape: TaskShape) -> tuple[dict, dict | None] | None:
    """(tracks, meta.json or None) of a video, from its meta.json, else its mask or
    pseudo-label; None when it has none of them."""
    meta_path = folder / layout.META_FILE
    if split == "hidden":
        meta_path = folder.parent.parent / layout.ANSWERS / folder.name / layout.META_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            return _tracks_from_meta(meta), meta
        except (json.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
            raise DataError(f"bad meta file {meta_path}: {exc!r}") from None
    if (folder / layout.MASK_FILE).is_file():
        return _tracks_from_masks(layout.read_mask(folder, shape)), None
    if (folder / layout.PRED_MASK_FILE).is_file():
        return _tracks_from_masks(layout.read_mask(folder, shape, predicted=True)), None
    return None


def stats(root: str | Path, *, splits: list[str] | None = None, limit: int | None = None) -> dict:
    """Objects per video, their size, class frequencies, motion, collision and entering
    statistics per split: what tells one generated world from another.

    Size: an object's median visible pixels over the frames it is seen in (the camera's
    distance and field of view, and the objects' radius, show here). Motion: how far each
    object's center travels over the video (path length in pixels, while in view); an object
    is moving if it travels at least 3 pixels. Entering: an object absent from the input frames
    (the dataset's task shape) that appears later. "no_objects": the split's videos have masks
    or meta.json, and none holds an object.
    """
    root = Path(root)
    shape = manifest.task_shape(root)
    splits = splits or [s for s in layout.SPLITS if (root / s).is_dir()]
    result = {}
    for split in splits:
        videos = layout.list_videos(root, split)[:limit]
        objects, sizes, travels, late, classes, collisions = [], [], [], 0, np.zeros(NUM_CLASSES, int), []
        used = 0
        for _, folder in videos:
            described = _video_tracks(split, folder, shape)
            if described is None:
                continue
            tracks, meta = described
            used += 1
            seen = {cid: tr for cid, tr in tracks.items() if tr[0].sum() > 0}
            objects.append(len(seen))
            for cid, (pixels, centers) in seen.items():
                classes[cid] += 1
                visible = pixels > 0
                sizes.append(float(np.median(pixels[visible])))
                steps = np.linalg.norm(np.diff(centers, axis=0), axis=-1)
                both = visible[1:] & visible[:-1]
                travels.append(float(np.nansum(steps[both])))
            if any(tr[0][: shape.input_frames].sum() == 0 for tr in seen.values()):
                late += 1
            if meta is not None:
                collisions.append(sum(e["type"] == "collision" for e in meta["events"]))
        travels_arr = np.array(travels)
        moving = travels_arr[travels_arr >= MOVING_PX]
        result[split] = {
            "videos": len(videos), "described": used, "no_objects": used > 0 and not any(objects),
            "objects_per_video": _summary(np.array(objects)),
            "object_px": _summary(np.array(sizes)),
            "moving_share": round(float(len(moving) / max(len(travels_arr), 1)), 3),
            "travel_px_moving": _summary(moving),
            "late_entry_share": round(late / max(used, 1), 3), "input_frames": shape.input_frames,
            "collisions_per_video": _summary(np.array(collisions)) if collisions else None,
            "class_counts": {CLASS_NAMES[c]: int(n) for c, n in enumerate(classes) if n},
        }
    return result


def _summary(values: np.ndarray) -> dict | None:
    if values.size == 0:
        return None
    q = np.percentile(values, [10, 50, 90])
    return {"mean": round(float(values.mean()), 2), "p10": round(float(q[0]), 1),
            "median": round(float(q[1]), 1), "p90": round(float(q[2]), 1),
            "max": round(float(values.max()), 1)}


def format_stats(result: dict) -> str:
    """Readable text of `stats`."""
    lines = []
    for split, s in result.items():
        lines.append(f"{split}: {s['videos']} videos ({s['described']} with masks or meta.json)")
        if not s["described"]:
            continue
        if s["no_objects"]:
            lines.append(f"  no objects: the masks (or meta.json) of its {s['described']} videos hold background "
                         "only")
        for key in ("objects_per_video", "object_px", "travel_px_moving", "collisions_per_video"):
            if s[key]:
                lines.append(f"  {key:22s} " + "  ".join(f"{k} {v}" for k, v in s[key].items()))
        lines.append(f"  {'moving_share':22s} {s['moving_share']}")
        lines.append(f"  {'late_entry_share':22s} {s['late_entry_share']}  (videos with an object "
                     f"first in view after the {s['input_frames']} input frames)")
        top = sorted(s["class_counts"].items(), key=lambda kv: -kv[1])
        if top:
            lines.append(f"  classes ({len(top)} seen): "
                         + ", ".join(f"{name} {n}" for name, n in top[:8])
                         + (" ..." if len(top) > 8 else ""))
    return "\n".join(lines)


# -- pictures -------------------------------------------------------------------------------------


def find_video(root: str | Path, index: int) -> tuple[str, Path]:
    """(split, folder) of a video index in any split."""
    root = Path(root)
    for split in layout.SPLITS:
        folder = root / split / layout.video_name(index)
        if folder.is_dir():
            return split, folder
    raise DataError(f"video {index} not found in any split of {root}")


def _labeled(frame: np.ndarray, mask: np.ndarray | None, scale: int = 2) -> np.ndarray:
    """Frame (upscaled) with the mask overlaid and each object's name at its centroid."""
    shown = viz.overlay(frame, mask, alpha=0.45) if mask is not None else frame
    image = Image.fromarray(shown).resize((frame.shape[1] * scale, frame.shape[0] * scale),
                                          Image.NEAREST)
    if mask is not None:
        draw = ImageDraw.Draw(image)
        for cid in np.unique(mask):
            if cid == 0:
                continue
            rows, cols = np.nonzero(mask == cid)
            x, y = cols.mean() * scale, rows.min() * scale - 11
            text = CLASS_NAMES[cid]
            draw.text((max(x - 3 * len(text), 0), max(y, 0)), text, fill=(255, 255, 255),
                      stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(image)


def _video_arrays(root: Path, index: int, shape: TaskShape) -> tuple[np.ndarray, np.ndarray | None]:
    """All frames known of a video and its masks (true, answers or pseudo-labels) if any."""
    split, folder = find_video(root, index)
    frames = layout.read_frames(folder, shape.split_frames(split), shape.size)
    masks = None
    answers = root / layout.ANSWERS / folder.name
    if split == "hidden" and answers.is_dir():
        frames = np.concatenate([frames, layout.read_frames(answers, range(shape.input_frames, shape.frames),
                                                            shape.size)])
        masks = layout.read_mask(answers, shape)
    elif (folder / layout.MASK_FILE).is_file():
        masks = layout.read_mask(folder, shape)
    elif (folder / layout.PRED_MASK_FILE).is_file():
        masks = layout.read_mask(folder, shape, predicted=True)
    return frames, masks


def show_video(root: str | Path, index: int, out: str | Path) -> Path:
    """Frames of one video with its mask overlaid and object names: a PNG grid or a GIF."""
    root, out = Path(root), Path(out)
    frames, masks = _video_arrays(root, index, manifest.task_shape(root))
    pictures = [_labeled(f, None if masks is None else masks[t]) for t, f in enumerate(frames)]
    if out.suffix.lower() == ".gif":
        return viz.save_gif(out, pictures, fps=6)
    if out.suffix.lower() != ".png":
        raise DataError(f"--out must end in .png or .gif, got {out}")
    rows = [pictures[i : i + 6] for i in range(0, len(pictures), 6)]
    return viz.save_png(out, viz.grid(rows))


def show_sheet(root: str | Path, out: str | Path, *, split: str = "train", count: int = 8) -> Path:
    """Contact sheet: one row per video (the first, middle and last input frames, a forecast
    frame half-way and the scored one: 0, 5, 10, 15, 21 in the competition's shape, and the
    mask of the scored frame)."""
    root = Path(root)
    shape = manifest.task_shape(root)
    videos = layout.list_videos(root, split)
    if not videos:
        raise DataError(f"no videos in {root / split}")
    picks = [videos[int(i)] for i in np.linspace(0, len(videos) - 1, min(count, len(videos)))]
    shown = (0, shape.last_input // 2, shape.last_input, (shape.last_input + shape.target) // 2, shape.target)
    rows, labels = [], []
    for index, _ in picks:
        frames, masks = _video_arrays(root, index, shape)
        ts = [t for t in shown if t < len(frames)]
        row = [frames[t] for t in ts]
        if masks is not None:
            row.append(viz.mask_to_rgb(masks[shape.target]))
        rows.append(row)
        labels.append(str(index))
    return viz.save_png(out, viz.grid(rows, labels=labels, label_width=40))
