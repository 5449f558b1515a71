"""The kinds of run: one record per thing `simvp-unet train` makes, read by everything else.

    kind = KINDS["segmenter"]
    kind.served            # Segmenter: what `runs.load_run` rebuilds from a run of this kind
    kind.trainer()         # SegmenterModule: its LightningModule (config_class, datasets)
    kind.config_class      # SegmenterConfig: its settings

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
        demo: `key=value` settings the demo applies after the `cpu` preset, to fit its budget.
        smoke: the same for `demo --fast`: tiny sizes and a few steps.
    """

    name: str
    title: str
    summary: str
    served: type[Served]
    trainer: Callable[[], type[TrainModule]]
    demo: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()

    @property
    def config_class(self) -> type:
        """The dataclass of this kind's settings (`TrainSettings` and the network's config)."""
        return self.trainer().config_class


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


# The demo shortens the cpu presets to fit a quarter of an hour on 2 cores without native bf16
# (float32): the segmenter fewer epochs, the two SimVP baselines (the paper's frames row and the
# masks row) a fraction of each epoch, the dynamics half its steps; their numbers at the presets'
# full length are in benchmarks/results/pipelines.md. `demo --fast` shrinks them to a smoke test.
_FEW_STEPS = ("resolution=[32,48]", "epochs=2", "limit_val_batches=1", "log_every_steps=1", "pictures=2")
_TINY_SIMVP = ("batch_size=2", "limit_train_batches=2", "model.spatial_channels=8",
               "model.temporal_channels=16", "model.temporal_blocks=2")

# In the order a full run trains them (the demo's): the segmenter labels what the others use.
KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("segmenter", "U-Net: one RGB frame -> its 49-class mask",
         "U-Net: one RGB frame -> its 49-class mask (cross-entropy; validation Jaccard).",
         Segmenter, _segmenter,
         demo=("epochs=20", "val_every_epochs=20"),
         smoke=(*_FEW_STEPS, "batch_size=8", "limit_train_batches=3", "crop=16", "model.base_channels=4",
                "model.depth=2", "model.object_stages=2")),
    Kind("predictor", "SimVP on frames: frames 1..11 -> frames 12..22 (the paper)",
         "SimVP: RGB frames 1..11 -> frames 12..22 (MSE; validation MSE, SSIM, PSNR).",
         FramePredictor, _predictor,
         demo=("limit_train_batches=40",), smoke=(*_FEW_STEPS, *_TINY_SIMVP)),
    Kind("forecaster", "SimVP on masks: masks 1..11 -> masks 12..22",
         "SimVP on class ids: masks 1..11 -> masks 12..22 (cross-entropy; validation Jaccard of "
         "frame 22). Uses pseudo-labels of unlabeled videos when present.",
         MaskForecaster, _forecaster,
         demo=("limit_train_batches=40",), smoke=(*_FEW_STEPS, *_TINY_SIMVP, "model.embed_dim=8")),
    Kind("dynamics", "object dynamics: tracks of frames 1..11 -> where the objects go",
         "Simulator of friction and collisions (numbers fitted to the training tracks) plus an "
         "interaction network's corrections: tracks of frames 1..11 -> box centers of frames "
         "12..22 (pixel distance; validation error at frame 22 vs constant velocity). Tracks of "
         "the splits in train_splits (the cpu preset: train's true masks and unlabeled's "
         "pseudo-labels, whose inconsistent sightings are dropped) are cached in DIR/tracks/ (or "
         "the tracks_dir setting).",
         Dynamics, _dynamics,
         demo=("max_steps=600",),
         smoke=("epochs=2", "max_steps=4", "val_every_epochs=1", "batch_size=4", "pictures=1",
                "fit_iterations=5", "model.hidden=16")),
)}


def kind_of(served: object) -> str | None:
    """The name of the kind whose served module `served` is, or None."""
    return next((kind.name for kind in KINDS.values() if isinstance(served, kind.served)), None)
