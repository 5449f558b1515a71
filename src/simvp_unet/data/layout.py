"""The on-disk dataset format (the real task's layout), read and written with validation.

    <root>/train/video_<i>/image_0.png .. image_21.png, mask.npy   labeled
    <root>/val/video_<i>/...                                        labeled
    <root>/unlabeled/video_<i>/image_0.png .. image_21.png          no mask (maybe mask_pred.npy)
    <root>/hidden/video_<i>/image_0.png .. image_10.png             input frames only
    <root>/hidden_answers/video_<i>/image_11.png .. image_21.png, mask.npy   (generated data only)

The task's shape is data, not a constant: a `TaskShape` says how many frames a video has, how
many go in, which one is scored and the image size. The competition's (`COMPETITION`: 22
frames of 160 x 240, frames 1..11 in, frame 22 scored) is the default; a dataset's own comes
from its `dataset.json` or its files (`manifest.task_shape`). Frames are RGB PNGs; frames in
another PNG mode are converted as they are read (grayscale, palette and 16-bit grayscale to
RGB, an alpha channel dropped). Masks are (frames, H, W) class ids 0..48. Every reader raises
`DataError` naming the offending file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..classes import NUM_CLASSES
from ..errors import ConfigError, DataError, short_reason
from ..io import atomic_path

SPLITS = ("train", "val", "unlabeled", "hidden")
LABELED_SPLITS = ("train", "val")
ANSWERS = "hidden_answers"
MIN_INPUT_FRAMES = 2  # a velocity needs two positions: the objects row and the trackers' windows


@dataclass(frozen=True)
class TaskShape:
    """The shape of the task, defined here once: frames per video, input frames, the scored frame, size.

    The task counts frames from 1 (frames 1..22); arrays and file names count from 0
    (indices 0..21). Frames `1..input_frames` go in; frames `input_frames + 1 .. target + 1`
    are forecast; frame `target + 1` is scored. Frames after it (in videos longer than that)
    are stored and trained on by nothing that forecasts.

    Args:
        frames: frames per video.
        input_frames: frames given as the input (the hidden split stores only these).
        target: 0-based index of the scored frame (input_frames <= target < frames).
        height: frame height in pixels.
        width: frame width in pixels.
    """

    frames: int = 22
    input_frames: int = 11
    target: int = 21
    height: int = 160
    width: int = 240

    def __post_init__(self) -> None:
        for name in ("frames", "input_frames", "target", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"task shape: {name} must be an integer, got {value!r}")
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"task shape: image size must be positive, got {self.width}x{self.height}")
        if self.input_frames < MIN_INPUT_FRAMES:
            raise ConfigError(f"task shape: input_frames must be >= {MIN_INPUT_FRAMES} (a velocity needs two "
                              f"frames), got {self.input_frames}")
        if not self.input_frames <= self.target < self.frames:
            raise ConfigError(f"task shape: the scored frame (index {self.target}, frame {self.target + 1}) "
                              f"must come after the {self.input_frames} input frames and inside the "
                              f"{self.frames}-frame video")

    @property
    def future_frames(self) -> int:
        """Frames forecast: from the one after the input to the scored one (12..22: 11)."""
        return self.target - self.input_frames + 1

    @property
    def last_input(self) -> int:
        """Index of the last input frame in a video and among the input frames (frame 11: 10)."""
        return self.input_frames - 1

    @property
    def target_in_future(self) -> int:
        """Index of the scored frame among the forecast frames (frame 22 among 12..22: 10)."""
        return self.target - self.input_frames

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    @property
    def future(self) -> range:
        """Indices of the forecast frames in a video (11..21)."""
        return range(self.input_frames, self.target + 1)

    def split_frames(self, split: str) -> range:
        """Frames stored in a split's video folders: the input frames for hidden, all otherwise."""
        return range(self.input_frames) if split == "hidden" else range(self.frames)

    def describe(self) -> str:
        """'frames 1..11 in, frame 22 scored, 22-frame videos of 240x160' (for messages)."""
        return (f"frames 1..{self.input_frames} in, frame {self.target + 1} scored, {self.frames}-frame "
                f"videos of {self.width}x{self.height}")

    def as_dict(self) -> dict[str, int]:
        """The plain dict stored in dataset.json and in checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, object] | None, *, where: str = "task shape") -> TaskShape:
        """The shape stored as `as_dict` wrote it; None (a file of an earlier version) is the
        competition's. `ConfigError` naming `where` for anything else."""
        if values is None:
            return COMPETITION
        if not isinstance(values, Mapping) or set(values) != set(asdict(COMPETITION)):
            raise ConfigError(f"{where}: a task shape has keys {', '.join(asdict(COMPETITION))}, got {values!r}")
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def check_serves(self, other: TaskShape, what: str, *, same_size: bool = False) -> None:
        """`ConfigError` unless `other` has the same input and forecast frames, and with
        `same_size` the same image size (a run trained for this shape, `what`, cannot forecast
        another; networks that resize their inputs serve any size)."""
        if (self.input_frames, self.future_frames) != (other.input_frames, other.future_frames) or (
                same_size and self.size != other.size):
            raise ConfigError(f"{what} was trained for {self.describe()}; these videos are "
                              f"{other.describe()}: train it on data of this shape")


COMPETITION = TaskShape()  # the real task's shape
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


def stored_frames(folder: str | Path) -> int:
    """How many frames a video folder holds in the layout's names: n for image_0.png..image_<n-1>.png."""
    folder, n = Path(folder), 0
    while (folder / frame_name(n)).is_file():
        n += 1
    return n


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


def read_frame(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One frame as uint8 (H, W, 3), converted from any PNG mode: grayscale and palette become
    RGB, 16-bit grayscale is scaled to 0..255, alpha is dropped. A missing or corrupt file, one
    of another mode (CMYK, floating point...), or one whose (H, W) is not `size` (when given)
    raises `DataError`."""
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
    if size is not None and array.shape[:2] != tuple(size):
        h, w = array.shape[:2]
        raise DataError(f"frame {path} is {w}x{h}, expected {size[1]}x{size[0]} (width x height) like the "
                        "dataset's other frames")
    return array


def read_frames(video_dir: str | Path, frames: Iterable[int], size: tuple[int, int] | None = None) -> np.ndarray:
    """Frames of one video as uint8 (T, H, W, 3), in the order given; every frame must have
    `size` (H, W), or the first one's when None (`DataError` naming the odd one)."""
    video_dir = Path(video_dir)
    out = []
    for t in frames:
        out.append(read_frame(video_dir / frame_name(t), size))
        size = size or out[0].shape[:2]
    return np.stack(out)


def check_mask(mask: np.ndarray, path: str | Path, *, shape: TaskShape | None = None,
               frames: int | None = None) -> np.ndarray:
    """Validate a mask array and return it as uint8: integer ids 0..48 of shape (frames, H, W),
    with `shape`'s frames (or `frames`) and size; None checks only that it is (T, H, W)."""
    if shape is not None:
        expected = (shape.frames if frames is None else frames, shape.height, shape.width)
        if mask.shape != expected:
            raise DataError(f"mask {path} has shape {tuple(mask.shape)}, expected {expected} (frames, height, width)")
    elif mask.ndim != 3 or (frames is not None and len(mask) != frames):
        raise DataError(f"mask {path} has shape {tuple(mask.shape)}, expected ({frames or 'frames'}, height, width)")
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


def read_mask(video_dir: str | Path, shape: TaskShape | None, *, predicted: bool = False) -> np.ndarray:
    """The (frames, H, W) uint8 mask of a video, checked against `shape` (None: any (T, H, W)):
    `mask.npy`, or `mask_pred.npy` if `predicted`."""
    path = Path(video_dir) / (PRED_MASK_FILE if predicted else MASK_FILE)
    return check_mask(load_mask_file(path), path, shape=shape)


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


def write_mask(path: str | Path, mask: np.ndarray, shape: TaskShape | None, *, atomic: bool = True) -> None:
    """Write a (frames, H, W) mask as uint8 .npy, validated first (against `shape` unless None)."""
    mask = np.ascontiguousarray(check_mask(np.asarray(mask), path, shape=shape), dtype=np.uint8)
    if not atomic:
        np.save(path, mask, allow_pickle=False)
        return
    with atomic_path(path) as tmp:
        np.save(tmp, mask, allow_pickle=False)
