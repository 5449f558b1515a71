"""Small stand-in models and a synthetic moving-squares world for pipeline and evaluation tests.

Frames encode the class id of each pixel in the red channel (value = 5 * id), so the
stand-in segmenter is exact; every object moves SPEED pixels to the right per frame, so
shifting the last input by the elapsed time is an exact predictor/forecaster.
"""

import torch

SPEED = 3
# (class id, top row, first column at frame 0, side)
OBJECTS = ((5, 2, 2, 6), (20, 9, 10, 5))


def world_masks(batch: int = 2, frames: int = 22, height: int = 16, width: int = 80) -> torch.Tensor:
    """long (B, T, H, W): the true masks; video b starts b pixels further right."""
    masks = torch.zeros(batch, frames, height, width, dtype=torch.long)
    for b in range(batch):
        for t in range(frames):
            for cid, top, left, side in OBJECTS:
                x = left + b + SPEED * t
                masks[b, t, top : top + side, x : x + side] = cid
    return masks


def masks_to_frames(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) class ids -> (..., 3, H, W) uint8 frames with the id in the red channel."""
    frames = torch.zeros(*masks.shape[:-2], 3, *masks.shape[-2:], dtype=torch.uint8)
    frames[..., 0, :, :] = (masks * 5).to(torch.uint8)
    frames[..., 2, :, :] = 100
    return frames


class Segmenter:
    """Exact segmenter of stand-in frames; counts the images it segmented."""

    def __init__(self) -> None:
        self.images = 0

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.ndim == 4
        self.images += images.shape[0]
        return (images[:, 0].long() + 2) // 5


def _shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Move content `pixels` to the right along the last axis, filling with zeros."""
    out = torch.zeros_like(x)
    out[..., pixels:] = x[..., : x.shape[-1] - pixels]
    return out


class Predictor:
    """Exact predictor of frames 12..22 (or, with `static=True`, frame 11 repeated)."""

    def __init__(self, *, static: bool = False) -> None:
        self.static = static

    def predict_frames(self, frames: torch.Tensor) -> torch.Tensor:
        assert frames.dtype == torch.uint8 and frames.shape[1] == 11
        last = frames[:, -1]
        future = [last if self.static else _shift(last, SPEED * k) for k in range(1, 12)]
        # background blue channel is constant: keep it where the shift emptied pixels
        out = torch.stack(future, dim=1)
        out[:, :, 2] = 100
        return out


class Forecaster:
    """Exact forecaster of masks 12..22 from masks 1..11; `extra` paints a class into frame 22."""

    def __init__(self, *, extra: int | None = None) -> None:
        self.extra = extra
        self.calls = 0

    def forecast_masks(self, masks: torch.Tensor) -> torch.Tensor:
        assert masks.dtype == torch.long and masks.shape[1] == 11
        self.calls += 1
        last = masks[:, -1]
        out = torch.stack([_shift(last, SPEED * k) for k in range(1, 12)], dim=1)
        if self.extra is not None:
            out[:, -1, -3:, :4] = self.extra  # a hallucinated object in a corner
        return out


def write_squares_dataset(root, *, videos_per_split: int = 3) -> None:
    """The moving-squares world at full size in the real on-disk layout (val, unlabeled, hidden
    with hidden_answers), so that the commands run on files whose answers are known exactly."""
    from simvp_unet.data import layout

    masks = world_masks(batch=videos_per_split, height=layout.COMPETITION.height, width=layout.COMPETITION.width)
    frames = masks_to_frames(masks).permute(0, 1, 3, 4, 2).numpy()  # (B, T, H, W, 3)
    first = {"val": 1000, "unlabeled": 2000, "hidden": 15000}
    for split, start in first.items():
        # indices out of order on purpose: outputs must follow the video index, not the listing
        for b in reversed(range(videos_per_split)):
            index = start + 10 * b
            folder = root / split / layout.video_name(index)
            folder.mkdir(parents=True)
            for t in layout.COMPETITION.split_frames(split):
                layout.write_frame(folder / layout.frame_name(t), frames[b, t])
            if split == "val":
                layout.write_mask(folder / layout.MASK_FILE, masks[b].numpy(), layout.COMPETITION)
            if split == "hidden":
                answers = root / layout.ANSWERS / layout.video_name(index)
                answers.mkdir(parents=True)
                layout.write_mask(answers / layout.MASK_FILE, masks[b].numpy(), layout.COMPETITION)


# The weights a dynamics run gained after the ground plane: the camera's floor, the fitted start
# and the grip at contact.
LATER_WEIGHTS = ("model.floor.principal", "model.floor.numbers", "model.physics.window", "model.physics.grip",
                 "model.physics.spin_up", "model.physics.log_rolling")


def as_made_before_the_floor(path) -> None:
    """Rewrite a dynamics checkpoint as a run made before `LATER_WEIGHTS` existed saved it."""
    ckpt = torch.load(path, weights_only=True)
    assert all(k in ckpt["state_dict"] for k in LATER_WEIGHTS)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k not in LATER_WEIGHTS}
    torch.save(ckpt, path)
