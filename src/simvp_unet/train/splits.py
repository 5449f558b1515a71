"""Which splits of a dataset a trainer can use: checks shared by the trainers' `datasets`."""

from __future__ import annotations

from pathlib import Path

from ..data import layout
from ..errors import ConfigError, DataError


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
