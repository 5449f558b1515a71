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
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from .classes import BACKGROUND, NUM_CLASSES
from .data.layout import COMPETITION, TaskShape
from .errors import ConfigError
from .kinds import KINDS, kind_of
from .objects.placing import draw
from .objects.render import render
from .objects.tracks import Tracks, extract_tracks, positions_in
from .runs import load_run


def _load(cls: type, runs: Mapping[str, str | Path | None], *, which: str = "best",
          device: torch.device | str = "cpu") -> Any:
    """Load run folders by kind, e.g. {"segmenter": "runs/seg", "forecaster": None}, onto `device`."""
    loaded = {}
    for kind, run in runs.items():
        if kind not in KINDS:
            raise ConfigError(f"unknown kind of run {kind!r}; expected one of {', '.join(KINDS)}")
        if run is None:
            continue
        module = load_run(run, which=which, device=device, fold=True)
        got = kind_of(module)
        if got != kind:
            raise ConfigError(f"{run} is not a {kind} run, it is a {got} run; give it as --{got} (or "
                              f"give a {kind} run as --{kind})")
        loaded[kind] = module
    return cls(**loaded)


def _have(self: Any, kinds: tuple[str, ...]) -> bool:
    """Whether a model of every kind in `kinds` is given."""
    return all(getattr(self, kind) is not None for kind in kinds)


# The trained models a row may use: a dataclass with one field per kind of `kinds.KINDS`, in its
# order (None: not given), e.g. `Models(segmenter, forecaster=forecaster)`, `models.dynamics`.
# Any object with the kind's serving method works (the tests use exact stand-ins): segmenter
# `segment(images uint8 (N, 3, H, W)) -> long (N, H, W)`; predictor `predict_frames(frames uint8
# (B, 11, 3, H, W)) -> uint8 (B, 11, 3, H, W)`; forecaster `forecast_masks(masks long (B, 11, H,
# W)) -> long (B, 11, H, W)`; dynamics `forecast_objects(masks long (B, 11, H, W), learned=bool)
# -> ObjectForecast`. `Models.load(runs)` loads run folders by kind; `models.have(kinds)` asks.
Models = dataclasses.make_dataclass(
    "Models", [(kind, Any, None) for kind in KINDS],
    namespace={"load": classmethod(_load), "have": _have, "__module__": __name__,
               "__doc__": "The trained models a row may use, one field per kind of run (None: not given)."})


def check_shape(models: Models, shape: TaskShape) -> None:
    """`ConfigError` in one line when a given model was trained for a task shape whose input
    and forecast frames are not `shape`'s (the segmenter reads single frames: any shape), or
    for the dynamics, which works in pixels of its frames, of another image size."""
    for kind in KINDS:
        trained = getattr(getattr(models, kind), "shape", None)
        if kind != "segmenter" and trained is not None:
            trained.check_serves(shape, f"the {kind} run", same_size=kind == "dynamics")


def segment_videos(segmenter: Any, frames: torch.Tensor) -> torch.Tensor:
    """Segment every frame of uint8 videos (B, T, 3, H, W) -> long (B, T, H, W)."""
    masks = segmenter.segment(rearrange(frames, "b t c h w -> (b t) c h w")).long()
    return rearrange(masks, "(b t) h w -> b t h w", b=frames.shape[0])


class Batch:
    """The input of B videos and the models, with shared intermediate results computed once.

    Args:
        models: the trained models (`check_shape` first: they must serve `shape`).
        frames: uint8 (B, 11, 3, H, W), the input frames (1..11).
        frame22: uint8 (B, 3, H, W), the true scored frame (22); only the oracle row reads it.
        input_masks: long (B, 11, H, W), masks of the input frames (e.g. the true ones) that
            replace the segmenter's.
        truth: integer (B, T, H, W), the true masks of the videos' frames up to the scored one
            at least; only the upper-bound rows read them (evaluation of a labeled split).
        camera: an `objects.camera.Camera` fitted to the dataset's true masks; only the
            `shapes@true` row draws with it.
        shape: the task shape of the videos.
    """

    def __init__(self, models: Models, frames: torch.Tensor, frame22: torch.Tensor | None = None, *,
                 input_masks: torch.Tensor | None = None, truth: torch.Tensor | None = None,
                 camera: Any = None, shape: TaskShape = COMPETITION):
        n = shape.input_frames
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[1] != n:
            raise ConfigError(
                f"pipelines take uint8 frames (B, {n}, 3, H, W), got {frames.dtype} {tuple(frames.shape)}"
            )
        if truth is not None and (truth.is_floating_point() or truth.ndim != 4 or truth.shape[1] <= shape.target
                                  or truth.shape[0] != frames.shape[0] or truth.shape[2:] != frames.shape[3:]):
            raise ConfigError(f"the true masks must be integer (B, T, H, W) with T > {shape.target} for frames "
                              f"{tuple(frames.shape)}, got {truth.dtype} {tuple(truth.shape)}")
        self.models = models
        self.frames = frames
        self.frame22 = frame22
        self.truth = None if truth is None else truth.long()
        self.camera = camera
        self.shape = shape
        self._done: dict[str, Any] = {}
        if input_masks is not None:
            self._done["input_masks"] = input_masks.long()

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._done:
            self._done[name] = make()
        return self._done[name]

    def computed(self, name: str) -> Any:
        """An intermediate result ("input_masks", "predicted_frames", "forecast", "objects",
        "objects_cv", "tracks", "true_positions") if some row computed it for this batch, else
        None (for pictures: nothing is computed twice)."""
        return self._done.get(name)

    @property
    def input_masks(self) -> torch.Tensor:
        """Masks of frames 1..11 by the segmenter: long (B, 11, H, W) (or the masks given)."""
        return self._once("input_masks", lambda: segment_videos(self.models.segmenter, self.frames))

    @property
    def last_mask(self) -> torch.Tensor:
        """Mask of frame 11: long (B, H, W)."""
        # with a forecaster or dynamics every input frame gets segmented anyway: reuse its frame 11
        if (self.models.forecaster is not None or self.models.dynamics is not None
                or "input_masks" in self._done):
            return self.input_masks[:, self.shape.last_input]
        return self._once("last_mask",
                          lambda: self.models.segmenter.segment(self.frames[:, self.shape.last_input]).long())

    @property
    def predicted_frames(self) -> torch.Tensor:
        """Frames 12..22 by the predictor: uint8 (B, 11, 3, H, W)."""
        return self._once("predicted_frames", lambda: self.models.predictor.predict_frames(self.frames))

    @property
    def forecast(self) -> torch.Tensor:
        """Masks 12..22 by the forecaster from the segmented inputs: long (B, 11, H, W)."""
        return self._once("forecast", lambda: self.models.forecaster.forecast_masks(self.input_masks).long())

    @property
    def objects(self) -> Any:
        """The objects of the input masks and their learned forecast (an `ObjectForecast`)."""
        return self._once("objects", lambda: self.models.dynamics.forecast_objects(self.input_masks, learned=True))

    @property
    def tracks(self) -> Tracks:
        """The objects of the input masks: the objects rows' when a dynamics run is given."""
        if self.models.dynamics is not None:
            return self.objects.tracks
        return self._once("tracks", lambda: extract_tracks(self.input_masks))

    @property
    def true_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the objects of `tracks` are in the true mask of frame 22: their box centers
        (B, K, 2) there (a box cut by the border corrected by the object's whole size) and
        whether they are seen there (B, K)."""
        return self._once("true_positions", lambda: positions_in(
            self.tracks, extract_tracks(self.truth[:, : self.shape.target + 1], templates=False),
            self.shape.target))

    @property
    def objects_cv(self) -> Any:
        """The objects of the input masks and their constant-velocity forecast."""
        return self._once("objects_cv",
                          lambda: self.models.dynamics.forecast_objects(self.input_masks, learned=False))


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


# ---- the rows -----------------------------------------------------------------------


def copy_last_row(batch: Batch) -> torch.Tensor:
    """The mask of frame 11 as the answer for frame 22."""
    return batch.last_mask


def frames_row(batch: Batch) -> torch.Tensor:
    """Paper pipeline: segment the predicted frame 22."""
    return batch.models.segmenter.segment(batch.predicted_frames[:, batch.shape.target_in_future]).long()


def oracle_row(batch: Batch) -> torch.Tensor:
    """Segment the true frame 22 (upper bound of any pipeline built on this segmenter)."""
    return batch.models.segmenter.segment(batch.frame22).long()


def masks_row(batch: Batch) -> torch.Tensor:
    """Forecast masks from segmented masks; the forecast of frame 22."""
    return batch.forecast[:, batch.shape.target_in_future]


def masks_absent_row(batch: Batch) -> torch.Tensor:
    """`masks`, with classes absent from the frame-11 mask set to background."""
    return drop_absent_classes(masks_row(batch), batch.last_mask)


def objects_row(batch: Batch) -> torch.Tensor:
    """Objects tracked in the input masks, moved by the learned dynamics (the fitted physics of
    friction and collisions plus the network's corrections), painted at frame 22."""
    return batch.objects.mask


def objects_cv_row(batch: Batch) -> torch.Tensor:
    """Objects tracked in the input masks, moved at fitted damped constant velocity."""
    return batch.objects_cv.mask


def objects_true_row(batch: Batch) -> torch.Tensor:
    """The objects of frames 1..11 painted by the objects row's renderer (`objects.render`) at
    their true places in frame 22; objects not seen there are not painted (upper bound of the
    objects row's motion)."""
    centers, seen = batch.true_positions
    model = batch.models.dynamics.model
    return render(batch.tracks, centers, model.plane, camera=model.floor.camera(), drawable=seen).to(batch.frames.device)


def shapes_true_row(batch: Batch) -> torch.Tensor:
    """The objects of frames 1..11 drawn as the fitted camera sees their shapes, each at the
    floor point (and a cube at the turn) that fits its pixels in the true frame-22 mask; objects
    not seen there are not drawn (upper bound of drawing objects from frames 1..11)."""
    centers, seen = batch.true_positions
    fit_to = batch.truth[:, batch.shape.target]
    return draw(batch.camera, batch.tracks, centers, drawable=seen, fit_to=fit_to).to(batch.frames.device)


def no_entries_row(batch: Batch) -> torch.Tensor:
    """The true frame-22 mask without the objects that are in no true input mask (upper bound
    of any row that forecasts the objects of frames 1..11)."""
    truth = batch.truth
    return drop_absent_classes(truth[:, batch.shape.target], truth[:, : batch.shape.input_frames])


@dataclass(frozen=True)
class Row:
    """One row of the results table: a way from frames 1..11 to the mask of frame 22.

    Args:
        name: what results, `--pipeline` and the table call it.
        function: Batch -> long (B, H, W), the mask of frame 22.
        needs: the kinds of run it uses (names of `kinds.KINDS`).
        description: one line, in the words of the results table.
        reads_frame22: it reads the true frame 22, so it can score but never submit.
        reads_truth: it reads the true masks of the videos (`Batch.truth`); it reads frame 22's too.
        reads_camera: it draws with the camera fitted to the dataset's true masks (`Batch.camera`).
    """

    name: str
    function: Callable[[Batch], torch.Tensor]
    needs: tuple[str, ...]
    description: str
    reads_frame22: bool = False
    reads_truth: bool = False
    reads_camera: bool = False


# The rows, in table order. A new row is one entry here.
PIPELINES: dict[str, Row] = {row.name: row for row in (
    Row("copy-last", copy_last_row, ("segmenter",), "segment frame 11, use it as the answer"),
    Row("frames", frames_row, ("segmenter", "predictor"), "predict frames 12..22, segment frame 22 (paper)"),
    Row("oracle", oracle_row, ("segmenter",), "segment the true frame 22 (upper bound)", reads_frame22=True),
    Row("objects@true", objects_true_row, ("segmenter", "dynamics"),
        "objects of frames 1..11 painted as the objects row paints them, at their true frame-22 places "
        "(upper bound of its motion)", reads_frame22=True, reads_truth=True),
    Row("shapes@true", shapes_true_row, ("segmenter", "dynamics"),
        "objects of frames 1..11 drawn as 3D shapes by the camera fitted to the masks, at their true frame-22 "
        "places and turns", reads_frame22=True, reads_truth=True, reads_camera=True),
    Row("no-entries", no_entries_row, ("segmenter",),
        "the true frame-22 mask without objects that enter after frame 11 (upper bound)",
        reads_frame22=True, reads_truth=True),
    Row("masks", masks_row, ("segmenter", "forecaster"), "segment frames 1..11, forecast masks 12..22"),
    Row("masks+absent", masks_absent_row, ("segmenter", "forecaster"),
        "masks, classes absent at frame 11 -> background"),
    Row("objects-cv", objects_cv_row, ("segmenter", "dynamics"),
        "track objects in frames 1..11, move them at damped constant velocity, paint frame 22"),
    Row("objects", objects_row, ("segmenter", "dynamics"),
        "track objects in frames 1..11, simulate friction and collisions (fitted) + learned corrections, "
        "paint frame 22"),
)}
# What `simvp-unet predict` uses when no row is named: the first of these the models allow, the
# best first (benchmarks/results/pipelines.md).
SUBMISSION_PREFERENCE = ("objects", "objects-cv", "masks", "frames", "copy-last")


def require(name: str, models: Models, *, with_frame22: bool, with_truth: bool = False,
            with_camera: bool = False) -> Row:
    """The row called `name`, after checking that it can run; else a ConfigError saying why.
    `with_truth`, `with_camera`: the true masks of the videos, a camera fitted to the
    dataset's true masks are given (evaluation of a labeled split)."""
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
    row = PIPELINES[name]
    for kind in row.needs:
        if getattr(models, kind) is None:
            raise ConfigError(f"pipeline {name!r} needs a {kind} run (--{kind} RUN)")
    if row.reads_frame22 and not with_frame22:
        raise ConfigError(f"pipeline {name!r} needs the true frame 22, which these videos do not have "
                          "(the hidden set has frames 1..11)")
    if row.reads_truth and not with_truth:
        raise ConfigError(f"pipeline {name!r} needs the true masks of the videos: an upper bound for "
                          "`simvp-unet evaluate` on a labeled split")
    if row.reads_camera and not with_camera:
        raise ConfigError(f"pipeline {name!r} needs a camera fitted to the dataset's true masks (evaluate "
                          "fits one from the training split's)")
    return row


def available(models: Models, *, with_frame22: bool, with_truth: bool = False,
              with_camera: bool = False) -> list[str]:
    """Names of the rows that can run with these models and inputs (see `require`), in table order."""
    return [r.name for r in PIPELINES.values()
            if models.have(r.needs) and (with_frame22 or not r.reads_frame22)
            and (with_truth or not r.reads_truth) and (with_camera or not r.reads_camera)]


def default_row(models: Models) -> str:
    """The row `predict` uses by default: the first of SUBMISSION_PREFERENCE the models allow."""
    allowed = available(models, with_frame22=False)
    name = next((name for name in SUBMISSION_PREFERENCE if name in allowed), None)
    if name is None:
        raise ConfigError("no row can run without a segmenter run (--segmenter RUN)")
    return name


def run(name: str, batch: Batch) -> torch.Tensor:
    """Mask of frame 22 (long (B, H, W)) by row `name`, after checking it can run."""
    return require(name, batch.models, with_frame22=batch.frame22 is not None, with_truth=batch.truth is not None,
                   with_camera=batch.camera is not None).function(batch)
