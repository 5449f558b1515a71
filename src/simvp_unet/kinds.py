"""The kinds of run: one record per thing `simvp-unet train` makes, read by everything else.

    kind = KINDS["segmenter"]
    kind.served            # Segmenter: what `runs.load_run` rebuilds from a run of this kind
    kind.trainer()         # SegmenterModule: its LightningModule (config_class, datasets)

Training (`train.runner`), serving (`runs.load_run`), the command line (`simvp-unet train KIND`,
`evaluate --KIND RUN`), the pipelines' model set (`pipelines.Models`) and the demo all read this
table. Adding a kind is one record here plus its served module and its trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .inference import FramePredictor, MaskForecaster, Segmenter, Served
from .objects.serve import Dynamics

if TYPE_CHECKING:  # the trainers import Lightning, which serving never needs
    from .train.common import TrainModule


@dataclass(frozen=True)
class Kind:
    """One kind of run.

    Args:
        name: `simvp-unet train NAME`, `--NAME RUN`, and the `kind` every checkpoint records.
        title: a few words: the `train` subcommand's help line.
        summary: what it learns and how it is scored: `train NAME --help`.
        served: the served module a run of this kind is loaded as (`from_config`, network as `model`).
        trainer: returns its trainer, a `train.common.TrainModule` subclass with `config_class`
            (its settings) and `datasets(config, root)`; imported on call, so that serving a run
            never imports Lightning.
    """

    name: str
    title: str
    summary: str
    served: type[Served]
    trainer: Callable[[], type[TrainModule]]


def _segmenter() -> type[TrainModule]:
    from .train.segmenter import SegmenterModule
    return SegmenterModule


def _predictor() -> type[TrainModule]:
    from .train.predictor import PredictorModule
    return PredictorModule


def _forecaster() -> type[TrainModule]:
    from .train.forecaster import ForecasterModule
    return ForecasterModule


def _dynamics() -> type[TrainModule]:
    from .train.dynamics import DynamicsModule
    return DynamicsModule


# In the order a full run trains them (the demo's): the segmenter labels what the others use.
KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("segmenter", "U-Net: one RGB frame -> its 49-class mask",
         "U-Net: one RGB frame -> its 49-class mask (cross-entropy; validation Jaccard).",
         Segmenter, _segmenter),
    Kind("predictor", "SimVP on frames: frames 1..11 -> frames 12..22 (the paper)",
         "SimVP: RGB frames 1..11 -> frames 12..22 (MSE; validation MSE, SSIM, PSNR).",
         FramePredictor, _predictor),
    Kind("forecaster", "SimVP on masks: masks 1..11 -> masks 12..22",
         "SimVP on class ids: masks 1..11 -> masks 12..22 (cross-entropy; validation Jaccard of "
         "frame 22). Uses pseudo-labels of unlabeled videos when present.",
         MaskForecaster, _forecaster),
    Kind("dynamics", "object dynamics: tracks of frames 1..11 -> where the objects go",
         "Simulator of friction and collisions (numbers fitted to the training tracks) plus an "
         "interaction network's corrections: tracks of frames 1..11 -> box centers of frames "
         "12..22 (pixel distance; validation error at frame 22 vs constant velocity). Tracks of "
         "the splits in train_splits (the cpu preset: train's true masks; add unlabeled to use "
         "pseudo-labels) are cached in DIR/tracks/.",
         Dynamics, _dynamics),
)}


def kind_of(served: object) -> str | None:
    """The name of the kind whose served module `served` is, or None."""
    return next((kind.name for kind in KINDS.values() if isinstance(served, kind.served)), None)
