"""The on-disk dataset format (the real task's layout), read and written with validation.

    <root>/train/video_<i>/image_0.png .. image_21.png, mask.npy   labeled
    <root>/val/video_<i>/...                                        labeled
    <root>/unlabeled/video_<i>/image_0.png .. image_21.png          no mask (maybe mask_pred.npy)
    <root>/hidden/video_<i>/image_0.png .. image_10.png             input frames only
    <root>/hidden_answers/video_<i>/image_11.png .. image_21.png, mask.npy   (generated data only)

Frames are 160 x 240 RGB PNGs; frames in another PNG mode are converted as they are read
(grayscale, palette and 16-bit grayscale to RGB, an alpha channel dropped). Masks are
(22, 160, 240) class ids 0..48. Every reader raises `DataError` naming the offending file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..classes import NUM_CLASSES
from ..errors import DataError, short_reason
from ..io import atomic_path

SPLITS = ("train", "val", "unlabeled", "hidden")
LABELED_SPLITS = ("train", "val")
ANSWERS = "hidden_answers"
# The frames of a video, defined here once. The task counts frames from 1 (frames 1..22);
# arrays and file names count from 0 (indices 0..21).
FRAMES = 22  # frames per video
INPUT_FRAMES = 11  # frames 1..11 are the input: indices 0..10 of a video
FUTURE_FRAMES = FRAMES - INPUT_FRAMES  # frames 12..22 are forecast: indices 11..21 of a video
LAST_INPUT = INPUT_FRAMES - 1  # index of frame 11 in a video and among the input frames
TARGET = FRAMES - 1  # index of frame 22, the frame the task scores, in a video
TARGET_IN_FUTURE = TARGET - INPUT_FRAMES  # index of frame 22 among the forecast frames 12..22
HEIGHT = 160
WIDTH = 240
MASK_FILE = "mask.npy"
PRED_MASK_FILE = "mask_pred.npy"
META_FILE = "meta.json"

_VIDEO_RE = re.compile(r"^video_(\d+)$")
# Fixed PNG settings so that the same pixels always give the same bytes.
_PNG_OPTIONS = {"format": "PNG", "compress_level": 1, "optimize": False}


def video_name(index: int) -> str:
    """Folder name of a video: 'video_<index>'."""
    return f"video_{index}"


def frame_name(t: int) -> str:
    """File name of frame t (0-based): 'image_<t>.png'."""
    return f"image_{t}.png"


def split_frames(split: str) -> range:
    """Frames stored in a split's video folders: 0..10 for hidden, 0..21 otherwise."""
    return range(INPUT_FRAMES) if split == "hidden" else range(FRAMES)


def list_videos(root: str | Path, split: str) -> list[tuple[int, Path]]:
    """(video index, folder) of every video of a split, sorted by index.

    Folders not named `video_<i>` (e.g. temporary folders of an interrupted run) are ignored.
    Raises `DataError` if the split folder does not exist or two folders name one index
    (`video_010` and `video_10`), which would make a row of a submission ambiguous.
    """
    if split not in SPLITS and split != ANSWERS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(f"split folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"split folder not found: {folder}")
    videos: dict[int, Path] = {}
    for child in sorted(folder.iterdir()):
        match = _VIDEO_RE.match(child.name)
        if match and child.is_dir():
            index = int(match.group(1))
            if index in videos:
                raise DataError(f"two folders for video {index} in {folder}: {videos[index].name} and "
                                f"{child.name}; keep one (named {video_name(index)})")
            videos[index] = child
    return sorted(videos.items())


# Image modes a frame may have (those of PNG files), and how each becomes RGB.
_TO_RGB = {"RGB": (), "RGBA": ("RGB",), "L": ("RGB",), "LA": ("RGB",), "1": ("RGB",),
           "P": ("RGBA", "RGB"), "PA": ("RGBA", "RGB")}  # a palette with transparency via RGBA
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit grayscale ("I": Pillow before 10.x)


def _rgb(image: Image.Image, path: Path) -> np.ndarray:
    """uint8 (H, W, 3) of a loaded image; `DataError` for a mode a PNG frame cannot have."""
    if image.mode in _TO_RGB:
        for mode in _TO_RGB[image.mode]:
            image = image.convert(mode)
        return np.asarray(image, dtype=np.uint8)
    if image.mode in _SIXTEEN_BIT:  # scaled to 0..255 (the high byte), not clipped to white
        values = np.asarray(image)
        if values.size and (int(values.min()) < 0 or int(values.max()) > 0xFFFF):
            raise DataError(f"frame {path} is a grayscale image with values {int(values.min())}..{int(values.max())}"
                            ", expected 16-bit values 0..65535")
        gray = (values.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    raise DataError(f"frame {path} has image mode {image.mode}, which is not supported: expected an RGB, RGBA, "
                    "grayscale (8 or 16 bits) or palette PNG")


def read_frame(path: str | Path) -> np.ndarray:
    """One frame as uint8 (H, W, 3), converted from any PNG mode: grayscale and palette become
    RGB, 16-bit grayscale is scaled to 0..255, alpha is dropped. A missing, corrupt or
    wrong-size file, or one of another mode (CMYK, floating point...), raises `DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing frame: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            array = _rgb(image, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"corrupt image {path}: {exc}") from None
    if array.shape != (HEIGHT, WIDTH, 3):
        h, w = array.shape[:2]
        raise DataError(f"frame {path} is {w}x{h}, expected {WIDTH}x{HEIGHT} (width x height)")
    return array


def read_frames(video_dir: str | Path, frames: Iterable[int] = range(FRAMES)) -> np.ndarray:
    """Frames of one video as uint8 (T, H, W, 3), in the order given."""
    video_dir = Path(video_dir)
    return np.stack([read_frame(video_dir / frame_name(t)) for t in frames])


def check_mask(mask: np.ndarray, path: str | Path, *, frames: int = FRAMES) -> np.ndarray:
    """Validate a mask array (shape (frames, H, W), integer ids 0..48) and return it as uint8."""
    if mask.shape != (frames, HEIGHT, WIDTH):
        raise DataError(f"mask {path} has shape {tuple(mask.shape)}, expected ({frames}, {HEIGHT}, {WIDTH})")
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise DataError(f"mask {path} has dtype {mask.dtype}, expected integer class ids")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) >= NUM_CLASSES):
        raise DataError(f"mask {path} holds class ids {int(mask.min())}..{int(mask.max())}, "
                        f"expected 0..{NUM_CLASSES - 1}")
    return mask.astype(np.uint8, copy=False)


def load_mask_file(path: str | Path, *, mmap: bool = False) -> np.ndarray:
    """Load a .npy mask file without validating its contents (mmap for reading single frames)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing mask: {path}")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"corrupt mask file {path} ({short_reason(exc)}); restore it or generate the dataset again") from None


def read_mask(video_dir: str | Path, *, predicted: bool = False) -> np.ndarray:
    """The (22, H, W) uint8 mask of a video: `mask.npy`, or `mask_pred.npy` if `predicted`."""
    path = Path(video_dir) / (PRED_MASK_FILE if predicted else MASK_FILE)
    return check_mask(load_mask_file(path), path)


def write_frame(path: str | Path, frame: np.ndarray, *, atomic: bool = True) -> None:
    """Write one (H, W, 3) uint8 frame as PNG with fixed settings (same pixels, same bytes).

    `atomic=False` is for writers that fill a temporary folder and rename it whole.
    """
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    if not atomic:
        image.save(path, **_PNG_OPTIONS)
        return
    with atomic_path(path) as tmp:
        image.save(tmp, **_PNG_OPTIONS)


def write_mask(path: str | Path, mask: np.ndarray, *, atomic: bool = True) -> None:
    """Write a (22, H, W) mask as uint8 .npy (validated first)."""
    mask = np.ascontiguousarray(check_mask(np.asarray(mask), path), dtype=np.uint8)
    if not atomic:
        np.save(path, mask, allow_pickle=False)
        return
    with atomic_path(path) as tmp:
        np.save(tmp, mask, allow_pickle=False)
