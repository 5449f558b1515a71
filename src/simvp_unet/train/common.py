"""Pieces shared by the trainers: settings, the optimizer, pictures, checkpoints.

Every trainer wraps the served module of its kind (`kinds.KINDS[kind].served`). Those of the image
networks work at the run's `resolution` (H, W): inputs arrive at the dataset's size as uint8
and are converted and resized on the device, so the data loaders stay cheap. A run is trained
for its dataset's task shape (`data.layout.TaskShape`): `TrainModule.for_shape` fits the
settings to it (the frames a network reads and makes) and the checkpoints record it.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from einops import rearrange
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch.utils.data import Dataset, Sampler

from ..config import to_dict
from ..data.layout import COMPETITION, TaskShape
from ..errors import ConfigError, TrainingDiverged
from ..hardware import channels_last
from ..hardware import has_native_bf16 as has_native_bf16  # re-exported: the trainers' precision
from ..io import atomic_path
from ..viz import grid, save_png

# ---------------------------------------------------------------------------- settings


def picture_frames(shape: TaskShape) -> tuple[int, ...]:
    """Forecast frames the trainers' pictures show: the first, the middle and the scored one
    (frames 12, 17 and 22 of the competition's shape), as indices among the forecast ones."""
    return tuple(sorted({0, shape.future_frames // 2, shape.target_in_future}))


def shaped(model: Any, values: dict[str, Any], shape: TaskShape) -> Any:
    """`model` (a network config) with the settings `values` a task shape gives it (frame
    counts, image size); `ConfigError` naming one set by hand to another value (they come from
    the data)."""
    default = type(model)()
    for name, value in values.items():
        mine = getattr(model, name)
        if mine not in (value, getattr(default, name)):
            raise ConfigError(f"model.{name}={mine}, but the data's task shape ({shape.describe()}) gives "
                              f"{value}: it comes from the data; drop the setting")
    return dataclasses.replace(model, **values)


@dataclass
class TrainSettings:
    """Settings every trainer shares (the model's own config is nested as `model` in each kind).

    Args:
        resolution: (H, W) the model works at; inputs are resized to it on the device.
        batch_size: samples per optimizer step and device.
        lr: Adam learning rate (the peak of the one-cycle schedule).
        weight_decay: Adam weight decay.
        schedule: "onecycle" (warm up then anneal, stepped every batch) or "constant".
        epochs: passes over the training set.
        max_steps: stop after this many optimizer steps (-1: the epochs decide).
        limit_train_batches: batches per training epoch (0: all).
        limit_val_batches: batches per validation (0: all).
        val_every_epochs: validate every this many epochs.
        checkpoint_every_steps: also write `last.ckpt` every this many steps (0: only after
            validation), so that a long epoch killed halfway loses little.
        log_every_steps: write training losses and the learning rate every this many steps.
        seed: seed of every random generator (weights, shuffling, scheduled sampling).
        pictures: samples drawn in `RUN/pictures/` after each validation (0: none).
        val_split: split the validation runs on.
        init_from: run folder whose best weights start this run (fine-tuning); the model
            section must match that run's.
        grad_clip: clip the gradient norm to this value (0: no clipping).
        precision: Lightning precision ("auto" = bf16-mixed where bf16 is native, else 32-true);
            `--precision` overrides it for one run.
    """

    resolution: tuple[int, int] = (80, 120)
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["onecycle", "constant"] = "onecycle"
    epochs: int = 10
    max_steps: int = -1
    limit_train_batches: int = 0
    limit_val_batches: int = 0
    val_every_epochs: int = 1
    checkpoint_every_steps: int = 0
    log_every_steps: int = 10
    seed: int = 0
    pictures: int = 3
    val_split: str = "val"
    init_from: str | None = None
    grad_clip: float = 0.0
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true"] = "auto"

    def __post_init__(self) -> None:
        if len(self.resolution) != 2 or min(self.resolution) <= 0:
            raise ValueError(f"resolution must be two positive numbers (H, W), got {list(self.resolution)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        positive = ("batch_size", "epochs", "val_every_epochs", "log_every_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        at_least_zero = ("limit_train_batches", "limit_val_batches", "checkpoint_every_steps", "pictures",
                         "grad_clip")
        for name in at_least_zero:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:  # the range every random generator accepts
            raise ValueError(f"seed must be in 0..{2**32 - 1}, got {self.seed}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be positive or -1 (no limit), got {self.max_steps}")


# ---------------------------------------------------------------------------- module base


class TrainModule(L.LightningModule):
    """Base of the trainers: Adam + optional one-cycle schedule, hyper-parameters as a plain dict.

    Subclasses set `kind` (its name in `kinds.KINDS`), `config_class` (their settings),
    `in_memory_data` where their datasets need no loader workers,
    `monitor` and `monitor_mode`, give their (train, val) data with `datasets(config, root)`,
    keep their network as `self.model` and serve it through the `served` property (the served
    module around that same network, holding no weights of its own). So the checkpoint's
    weights are the network's, under `model.`, and it holds `{"kind": ..., "config": plain
    dict, "shape": the task shape}`: `runs.load_run` rebuilds the served module from it with no
    command line and no Lightning, and `torch.load(weights_only=True)` can read it.

    Args:
        config: the run's resolved settings, fitted to `shape` (`for_shape`).
        shape: the task shape of the data it trains on.
    """

    kind: str = ""
    config_class: type[TrainSettings] = TrainSettings
    in_memory_data: bool = False  # its datasets hold tensors in memory: no loader workers needed
    monitor: str = ""
    monitor_mode: Literal["min", "max"] = "max"

    @classmethod
    def datasets(cls, config: TrainSettings, root: Path) -> tuple[Dataset, Dataset]:
        """(train, val) datasets of a run with these settings on the dataset at `root`; fails
        with one line when the data cannot serve (`train.splits`)."""
        raise NotImplementedError

    @classmethod
    def for_shape(cls, config: TrainSettings, shape: TaskShape) -> TrainSettings:
        """The settings fitted to the data's task shape (default: unchanged); `ConfigError` in
        one line where a setting cannot serve it."""
        return config

    def __init__(self, config: TrainSettings, shape: TaskShape = COMPETITION) -> None:
        super().__init__()
        self.config = config
        self.shape = shape
        self.save_hyperparameters({"kind": self.kind, "config": to_dict(config), "shape": shape.as_dict()})
        self._picture_batch: dict[str, torch.Tensor] | None = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{self.kind} training diverged: the loss is {loss.item()} at step {self.global_step}; "
                f"lower lr (now {self.config.lr}) or set grad_clip (now {self.config.grad_clip}), "
                "then start a new run")

    def use_datasets(self, train_set: Any, val_set: Any, *, progress: bool = True) -> None:
        """The datasets the run trains and validates on, given before `fit_to_data` and before a
        resumed run restores its weights (default: nothing kept); `progress`: this process may
        show progress bars."""

    def fit_to_data(self, train_set: Any) -> None:
        """Before the first step of a new run: fit what is fitted in closed form (default: nothing)."""

    def setup(self, stage: str) -> None:
        # same numbers in either memory format; hardware.channels_last says which is faster here
        if channels_last(self.model, "train", self.trainer.strategy.root_device.type,
                         bf16=str(self.trainer.precision).startswith("bf16")):
            self.to(memory_format=torch.channels_last)

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.config.resolution)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups (one by default; a group may set its own
        weight_decay)."""
        return [{"params": list(self.parameters())}]

    def configure_optimizers(self) -> Any:
        cfg = self.config
        # fused: one kernel over all parameters instead of a loop; the same update up to float
        # rounding, and a training step on 2 cores mostly faster, never much slower
        # (benchmarks/results/models_avx2.md, models_native.md: the "fused Adam" rows).
        # Lightning refuses gradient clipping with a fused optimizer under mixed precision.
        fused = self.device.type in ("cpu", "cuda") and not cfg.grad_clip
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
        if cfg.schedule == "constant":
            return optimizer
        # Counts every step of the whole run (epochs, max_steps, limits, devices), so that a
        # resumed run rebuilds the same schedule and Lightning restores its position.
        total = total_steps(self.trainer, cfg)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(total, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # pictures: keep the first validation batch of rank 0, draw it once the epoch is done
    def keep_for_pictures(self, batch_idx: int, **tensors: torch.Tensor) -> None:
        if batch_idx == 0 and self.config.pictures > 0:
            n = self.config.pictures
            self._picture_batch = {k: v[:n].detach().cpu() for k, v in tensors.items()}

    def draw_picture(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """A (H, W, 3) uint8 picture of predictions vs truth; one per trainer."""
        raise NotImplementedError

    def on_fit_start(self) -> None:
        self._fit_start = time.monotonic()

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            # wall minutes since this process started fitting (a resumed run counts from its resume)
            self.log("time/minutes", (time.monotonic() - self._fit_start) / 60, sync_dist=True)
        batch, self._picture_batch = self._picture_batch, None
        if batch is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        folder = Path(self.trainer.default_root_dir) / "pictures"
        save_png(folder / f"epoch_{self.current_epoch:03d}.png", self.draw_picture(batch))


def picture_rows(rows: list[list[np.ndarray]], labels: list[str] | None) -> np.ndarray:
    """Tile labelled rows of (H, W, 3) uint8 images."""
    return grid(rows, labels=labels, label_width=48 if labels else 0)


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """uint8 (3, H, W) tensor -> (H, W, 3) numpy."""
    return rearrange(image, "c h w -> h w c").numpy()


# ---------------------------------------------------------------------------- checkpoints, run length, RNG


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints under a temporary name and rename, so a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def derived_seed(*numbers: int) -> int:
    """A 64-bit seed mixed from non-negative integers (the run's seed, an epoch, a step): nearby
    inputs give unrelated seeds."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0])


class EpochSampler(Sampler[int]):
    """The training order: a shuffle of the samples drawn from (seed, epoch) alone, whatever
    random numbers were drawn before, so that a resumed run sees the order the uninterrupted
    run saw. Lightning calls `set_epoch` at each epoch's start; `resume_at` starts the first
    epoch of a resumed run past the samples already trained on (Lightning counts those batches
    as done but starts the loader over).

    Args:
        size: samples in the dataset.
        seed: the run's seed.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.skip = epoch, 0

    def resume_at(self, epoch: int, skip: int) -> None:
        """Start at epoch `epoch`, leaving out the first `skip` samples of its order."""
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        yield from torch.randperm(self.size, generator=generator)[self.skip:].tolist()

    def __len__(self) -> int:
        return self.size  # the whole epoch, also when resumed: Lightning counts the batches done


def total_steps(trainer: L.Trainer, config: TrainSettings) -> int:
    """Optimizer steps of the whole run: the epochs' (with their limits, on every device) or
    `max_steps` if fewer (`MaxSteps` stops the run there; Lightning is not told, see there)."""
    total = int(trainer.estimated_stepping_batches)
    return min(total, config.max_steps) if config.max_steps > 0 else total


class MaxSteps(L.Callback):
    """Stop after `max_steps` optimizer steps (validating first, see `ValidateLastEpoch`).

    Lightning's own `max_steps` is not used: with it, Lightning resumes a checkpoint written
    at the end of an epoch as one still running, ends that epoch a second time and counts it
    twice, so a resumed run whose epochs end it stops one epoch early, and draws a loader's
    random numbers a run without the interruption would not have drawn.
    """

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps

    def _check(self, trainer: L.Trainer) -> None:
        if 0 < self.max_steps <= trainer.global_step:
            trainer.should_stop = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)  # a resumed run that had already finished

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._check(trainer)


class ValidateLastEpoch(L.Callback):
    """Validate after the last epoch too, whatever `val_every_epochs` says, so that every run
    ends with a score and a `best.ckpt` (e.g. the cpu preset's every 4 epochs, run for 2). The
    last epoch is the one the epochs or `max_steps` end (a run resumed in it is told too)."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps

    def _check(self, trainer: L.Trainer) -> None:
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        steps_left = self.max_steps - trainer.global_step if self.max_steps > 0 else None
        last_steps = steps_left is not None and steps_left <= trainer.num_training_batches
        if last_epoch or last_steps:
            trainer.check_val_every_n_epoch = 1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)  # resumed within the last epoch: its start is not run again

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)


class RNGState(L.Callback):
    """Seed the random generators (torch's on the CPU and on the run's device, numpy's,
    Python's) before every training step from the run's seed and the step's number, so that a
    step draws the same numbers (random crops, windows, mirroring, dropout, scheduled sampling)
    whether or not the run was interrupted before it, and whatever was drawn in between (a
    loader started once more on resume, a validation). The generators' state is therefore not
    stored. 16 us a step.

    (Named for the callback that stored that state: checkpoints holding it still resume
    without a warning about a missing callback; the stored state is not used.)

    Args:
        seed: the run's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        seed = derived_seed(self.seed, trainer.global_step)
        # not torch.manual_seed: it probes every kind of device, 80 us a step on a CPU
        torch.default_generator.manual_seed(seed)
        if pl_module.device.type == "cuda":
            torch.cuda.manual_seed_all(seed)
        elif pl_module.device.type == "mps":
            torch.mps.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass  # the generators' state stored by earlier versions: not needed
