"""From frames 1..11 to the mask of frame 22, several ways: the rows of the results table.

Every row takes a `Batch` (the input frames of B videos and the trained models) and returns
the mask of frame 22 as long class ids (B, H, W). `PIPELINES`, at the end of this module, is
the one table of rows (name, function, the kinds of run it needs, description) that evaluation,
submission, the report and the demo read. Intermediate results (the masks of frames 1..11, the
forecast) are computed once per batch and shared by the rows that use them.

    models = Models.load({"segmenter": "runs/seg", "forecaster": "runs/fc"})
    mask22 = run("masks", Batch(models, frames_1_to_11))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from .classes import BACKGROUND, NUM_CLASSES
from .data.layout import INPUT_FRAMES, LAST_INPUT, TARGET_IN_FUTURE
from .errors import ConfigError
from .inference import KINDS, load_run

# Connected blobs smaller than this (in pixels, at 160 x 240) are treated as noise by masks+blobs.
BLOB_MIN_PIXELS = 12
# Images per call to the segmenter: bounds memory when B * 11 frames are segmented at once.
SEGMENT_CHUNK = 32


@dataclass
class Models:
    """The trained models a row may use, one field per kind of run (None: not given).

    Any object with the helper method works (the tests use exact stand-ins).

    Args:
        segmenter: has `segment(images uint8 (N, 3, H, W)) -> long (N, H, W)`.
        predictor: has `predict_frames(frames uint8 (B, 11, 3, H, W)) -> uint8 (B, 11, 3, H, W)`.
        forecaster: has `forecast_masks(masks long (B, 11, H, W)) -> long (B, 11, H, W)`.
        dynamics: has `forecast_objects(masks long (B, 11, H, W), learned=bool) -> ObjectForecast`.
    """

    segmenter: Any = None
    predictor: Any = None
    forecaster: Any = None
    dynamics: Any = None

    @classmethod
    def load(cls, runs: Mapping[str, str | Path | None], *, which: str = "best",
             device: torch.device | str = "cpu") -> Models:
        """Load run folders by kind, e.g. {"segmenter": "runs/seg", "forecaster": None}, onto `device`."""
        loaded = {}
        for kind, run in runs.items():
            if kind not in MODEL_KINDS:
                raise ConfigError(f"unknown kind of run {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
            if run is None:
                continue
            module = load_run(run, which=which, device=device, fold=True)
            if not isinstance(module, KINDS[kind]):
                got = next((k for k, served in KINDS.items() if isinstance(module, served)), type(module).__name__)
                raise ConfigError(f"{run} is not a {kind} run, it is a {got} run; give it as --{got} (or "
                                  f"give a {kind} run as --{kind})")
            loaded[kind] = module
        return cls(**loaded)

    def have(self, kinds: tuple[str, ...]) -> bool:
        """Whether a model of every kind in `kinds` is given."""
        return all(getattr(self, kind) is not None for kind in kinds)


# The kinds of run a row can need, in the order of `Models`' fields.
MODEL_KINDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Models))


def segment(segmenter: Any, images: torch.Tensor, *, chunk: int = SEGMENT_CHUNK) -> torch.Tensor:
    """Segment uint8 images (N, 3, H, W) in chunks -> long (N, H, W)."""
    return torch.cat([segmenter.segment(part).long() for part in images.split(chunk)])


def segment_videos(segmenter: Any, frames: torch.Tensor) -> torch.Tensor:
    """Segment every frame of uint8 videos (B, T, 3, H, W) -> long (B, T, H, W)."""
    masks = segment(segmenter, rearrange(frames, "b t c h w -> (b t) c h w"))
    return rearrange(masks, "(b t) h w -> b t h w", b=frames.shape[0])


class Batch:
    """The input of B videos and the models, with shared intermediate results cached.

    Args:
        models: the trained models.
        frames: uint8 (B, 11, 3, H, W), frames 1..11.
        frame22: uint8 (B, 3, H, W), the true frame 22; only the oracle row reads it.
    """

    def __init__(self, models: Models, frames: torch.Tensor, frame22: torch.Tensor | None = None, *,
                 input_masks: torch.Tensor | None = None):
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[1] != INPUT_FRAMES:
            raise ConfigError(
                f"pipelines take uint8 frames (B, 11, 3, H, W), got {frames.dtype} {tuple(frames.shape)}"
            )
        self.models = models
        self.frames = frames
        self.frame22 = frame22
        if input_masks is not None:  # given masks of frames 1..11 (e.g. the true ones) replace the segmenter's
            self.__dict__["input_masks"] = input_masks.long()

    def computed(self, name: str) -> Any:
        """An intermediate result ("input_masks", "predicted_frames", "forecast", "objects",
        "objects_cv") if some row computed it for this batch, else None (for pictures: nothing
        is computed twice)."""
        return self.__dict__.get(name)

    @cached_property
    def input_masks(self) -> torch.Tensor:
        """Masks of frames 1..11 by the segmenter: long (B, 11, H, W) (or the masks given)."""
        return segment_videos(self.models.segmenter, self.frames)

    @cached_property
    def last_mask(self) -> torch.Tensor:
        """Mask of frame 11: long (B, H, W)."""
        # with a forecaster every input frame gets segmented anyway: reuse its frame 11
        if (self.models.forecaster is not None or self.models.dynamics is not None
                or "input_masks" in self.__dict__):
            return self.input_masks[:, LAST_INPUT]
        return segment(self.models.segmenter, self.frames[:, LAST_INPUT])

    @cached_property
    def predicted_frames(self) -> torch.Tensor:
        """Frames 12..22 by the predictor: uint8 (B, 11, 3, H, W)."""
        return self.models.predictor.predict_frames(self.frames)

    @cached_property
    def forecast(self) -> torch.Tensor:
        """Masks 12..22 by the forecaster from the segmented inputs: long (B, 11, H, W)."""
        return self.models.forecaster.forecast_masks(self.input_masks).long()

    @cached_property
    def objects(self) -> Any:
        """The objects of the input masks and their learned forecast (an `ObjectForecast`)."""
        return self.models.dynamics.forecast_objects(self.input_masks, learned=True)

    @cached_property
    def objects_cv(self) -> Any:
        """The objects of the input masks and their constant-velocity forecast."""
        return self.models.dynamics.forecast_objects(self.input_masks, learned=False)


# ---- post-processing -----------------------------------------------------------------


def drop_absent_classes(mask: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Classes of `mask` (B, H, W) that do not occur in `reference` (B, H, W) become background.

    In these videos a class names one object, and an object that is not in view at frame
    11 cannot be forecast; a forecast of it is almost always a hallucination.
    """
    present = torch.zeros(mask.shape[0], NUM_CLASSES, dtype=torch.bool, device=mask.device)
    present.scatter_(1, reference.flatten(1).long(), True)
    keep = present.gather(1, mask.flatten(1).long()).view_as(mask)
    return torch.where(keep, mask, torch.full_like(mask, BACKGROUND))


def _spread_along_rows(mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Give every pixel the largest label of its run of same-class pixels along its row (..., W)."""
    starts = torch.ones_like(mask, dtype=torch.bool)
    starts[..., 1:] = mask[..., 1:] != mask[..., :-1]
    run = starts.flatten().cumsum(0) - 1  # run number of every pixel
    best = torch.zeros(int(run[-1]) + 1, dtype=labels.dtype, device=labels.device)
    best = best.scatter_reduce(0, run, labels.flatten(), reduce="amax")
    return best[run].view_as(labels)


def component_sizes(mask: torch.Tensor) -> torch.Tensor:
    """Pixel count of the 4-connected same-class blob each pixel belongs to: long (B, H, W).

    Background pixels get 0. Every pixel starts with its own label; the largest label is
    spread along same-class runs of rows, then of columns, until nothing changes (a few
    rounds for compact objects). Pure torch, so it runs on the GPU as well.
    """
    b, h, w = mask.shape
    fg = mask != BACKGROUND
    ids = torch.arange(1, b * h * w + 1, device=mask.device).view(b, h, w)
    labels = torch.where(fg, ids, torch.zeros_like(ids))
    mask_t = mask.transpose(1, 2).contiguous()  # (B, W, H): columns as rows
    while True:
        spread = _spread_along_rows(mask, labels)
        spread = _spread_along_rows(mask_t, spread.transpose(1, 2).contiguous()).transpose(1, 2)
        if torch.equal(spread, labels):
            break
        labels = spread.contiguous()
    flat = labels.flatten()
    counts = torch.bincount(flat, minlength=b * h * w + 1)
    counts[0] = 0
    return counts[flat].view(b, h, w)


def drop_small_blobs(mask: torch.Tensor, *, min_pixels: int = BLOB_MIN_PIXELS) -> torch.Tensor:
    """Blobs of one class smaller than `min_pixels` become background."""
    small = component_sizes(mask) < min_pixels
    return torch.where(small, torch.full_like(mask, BACKGROUND), mask)


# ---- the rows -----------------------------------------------------------------------


def copy_last(batch: Batch) -> torch.Tensor:
    """The mask of frame 11 as the answer for frame 22."""
    return batch.last_mask


def frames(batch: Batch) -> torch.Tensor:
    """Paper pipeline: segment the predicted frame 22."""
    return segment(batch.models.segmenter, batch.predicted_frames[:, TARGET_IN_FUTURE])


def oracle(batch: Batch) -> torch.Tensor:
    """Segment the true frame 22 (upper bound of any pipeline built on this segmenter)."""
    return segment(batch.models.segmenter, batch.frame22)


def masks(batch: Batch) -> torch.Tensor:
    """Forecast masks from segmented masks; the forecast of frame 22."""
    return batch.forecast[:, TARGET_IN_FUTURE]


def masks_absent(batch: Batch) -> torch.Tensor:
    """`masks`, with classes absent from the frame-11 mask set to background."""
    return drop_absent_classes(masks(batch), batch.last_mask)


def masks_blobs(batch: Batch) -> torch.Tensor:
    """`masks`, with blobs under BLOB_MIN_PIXELS pixels set to background."""
    return drop_small_blobs(masks(batch))


def objects(batch: Batch) -> torch.Tensor:
    """Objects tracked in the input masks, moved by the learned dynamics (the fitted physics of
    friction and collisions plus the network's corrections), painted at frame 22."""
    return batch.objects.mask


def objects_cv(batch: Batch) -> torch.Tensor:
    """Objects tracked in the input masks, moved at fitted damped constant velocity."""
    return batch.objects_cv.mask


@dataclass(frozen=True)
class Row:
    """One row of the results table: a way from frames 1..11 to the mask of frame 22.

    Args:
        name: what results, `--pipeline` and the table call it.
        function: Batch -> long (B, H, W), the mask of frame 22.
        needs: the kinds of run it uses (fields of `Models`).
        description: one line, in the words of the results table.
        reads_frame22: it reads the true frame 22, so it can score but never submit.
    """

    name: str
    function: Callable[[Batch], torch.Tensor]
    needs: tuple[str, ...]
    description: str
    reads_frame22: bool = False


# The rows, in table order. A new row is one entry here.
PIPELINES: dict[str, Row] = {row.name: row for row in (
    Row("copy-last", copy_last, ("segmenter",), "segment frame 11, use it as the answer"),
    Row("frames", frames, ("segmenter", "predictor"), "predict frames 12..22, segment frame 22 (paper)"),
    Row("oracle", oracle, ("segmenter",), "segment the true frame 22 (upper bound)", reads_frame22=True),
    Row("masks", masks, ("segmenter", "forecaster"), "segment frames 1..11, forecast masks 12..22"),
    Row("masks+absent", masks_absent, ("segmenter", "forecaster"),
        "masks, classes absent at frame 11 -> background"),
    Row("masks+blobs", masks_blobs, ("segmenter", "forecaster"), "masks, small blobs -> background"),
    Row("objects-cv", objects_cv, ("segmenter", "dynamics"),
        "track objects in frames 1..11, move them at damped constant velocity, paint frame 22"),
    Row("objects", objects, ("segmenter", "dynamics"),
        "track objects in frames 1..11, simulate friction and collisions (fitted) + learned corrections, "
        "paint frame 22"),
)}
# What `simvp-unet predict` uses when no row is named: the first of these the models allow.
# On bench val, objects 0.6667 from segmented frames and 0.7324 from true masks, objects-cv
# 0.5722 and 0.6005 (benchmarks/results/pipelines.md).
SUBMISSION_PREFERENCE = ("objects", "objects-cv", "masks", "frames", "copy-last")


def require(name: str, models: Models, *, with_frame22: bool) -> Row:
    """The row called `name`, after checking that it can run; else a ConfigError saying why."""
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
    row = PIPELINES[name]
    for kind in row.needs:
        if getattr(models, kind) is None:
            raise ConfigError(f"pipeline {name!r} needs a {kind} run (--{kind} RUN)")
    if row.reads_frame22 and not with_frame22:
        raise ConfigError(f"pipeline {name!r} needs the true frame 22, which these videos do not have "
                          "(the hidden set has frames 1..11)")
    return row


def available(models: Models, *, with_frame22: bool) -> list[str]:
    """Names of the rows that can run with these models, in table order."""
    return [r.name for r in PIPELINES.values()
            if models.have(r.needs) and (with_frame22 or not r.reads_frame22)]


def default_row(models: Models) -> str:
    """The row `predict` uses by default: the first of SUBMISSION_PREFERENCE the models allow."""
    allowed = available(models, with_frame22=False)
    name = next((name for name in SUBMISSION_PREFERENCE if name in allowed), None)
    if name is None:
        raise ConfigError("no row can run without a segmenter run (--segmenter RUN)")
    return name


def run(name: str, batch: Batch) -> torch.Tensor:
    """Mask of frame 22 (long (B, H, W)) by row `name`, after checking it can run."""
    return require(name, batch.models, with_frame22=batch.frame22 is not None).function(batch)
