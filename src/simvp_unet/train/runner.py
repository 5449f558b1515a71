"""Run folders: start and resume a training run of any kind (`runs.load_run` serves one).

    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg

RUN/config.yaml            the resolved settings (written atomically before training)
RUN/checkpoints/last.ckpt  the latest state (weights, optimizer, schedule, loops) for --resume
RUN/checkpoints/best.ckpt  the best validation score so far
RUN/logs/                  CSV logs in version_<n>/ (one per start or resume); logs/tensorboard/ when installed
RUN/pictures/              predictions vs truth after every validation
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, Dataset

from ..config import from_dict, read_yaml_mapping, resolve, to_dict
from ..data.layout import TaskShape
from ..data.manifest import task_shape
from ..errors import ConfigError, DataError
from ..hardware import has_native_bf16
from ..io import write_yaml
from ..kinds import KINDS
from ..runs import checkpoint_path, read_checkpoint
from .common import (
    AtomicCheckpointIO,
    EpochSampler,
    MaxSteps,
    RNGState,
    TrainModule,
    ValidateLastEpoch,
)
from .splits import check_readable

CONFIG_FILE = "config.yaml"


# ---------------------------------------------------------------------------- training


@dataclass
class Runtime:
    """Where and how to run; not part of the saved config (a run may resume on other hardware).

    Args:
        accelerator: "auto", "cpu", "gpu", ...
        devices: "auto" or a number of devices per node. More than one starts DDP, whose launcher
            re-runs the whole command in new processes: fine for `simvp-unet train`, not for a
            script that does other work before training (hence 1 by default here; the CLI
            defaults to "auto").
        num_nodes: machines taking part.
        precision: None = the config's `precision` setting (the preset's); else a Lightning
            precision that overrides it, e.g. "32-true" or "bf16-mixed"; "auto" picks bf16-mixed
            where the hardware computes bf16 natively (a CUDA GPU that supports it, or a CPU with
            AVX512-BF16/AMX, 2-3x faster there) and 32-true elsewhere.
        workers: data-loading worker processes per device.
    """

    accelerator: str = "auto"
    devices: str | int = 1
    num_nodes: int = 1
    precision: str | None = None
    workers: int = 2


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """Turn "auto" into "bf16-mixed" or "32-true" (see `Runtime.precision`); other values pass through."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if has_native_bf16(accelerator) else "32-true"


def _is_rank_zero_process() -> bool:
    """False in the extra processes of a multi-process launch (torchrun or Lightning's DDP launcher).

    Those re-run the command; only the first process may check and write the run folder.
    """
    return all(int(os.environ.get(key, "0")) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _has_checkpoint(out: Path) -> bool:
    folder = out / "checkpoints"
    return folder.is_dir() and any(folder.glob("*.ckpt"))


def _prepare_run(kind: str, out: Path, preset: str | None, overrides: list[str],
                 resume: bool, shape: TaskShape) -> tuple[Any, Path | None, int]:
    """Resolve the config (new run) or read it back (resume) and check the folder; writes nothing
    (config.yaml is written once data and devices are checked too, see `train`). Returns the
    config, the checkpoint to resume from (None: a new run) and its global step. A resumed run
    must train on data of the task shape it started with (`shape`, the dataset's)."""
    config_file = out / CONFIG_FILE
    last = checkpoint_path(out, "last")
    if resume:
        if preset is not None or overrides:
            raise ConfigError("--resume continues a run with its saved config.yaml; drop --preset, "
                              "--set and --init (to train a finished run longer, start a new run from its "
                              f"weights: --init {out} --out NEW --set epochs=N)")
        if not config_file.is_file():
            raise ConfigError(f"cannot resume: {config_file} not found (is {out} a training run?)")
        if not last.is_file():
            if _has_checkpoint(out):
                raise DataError(f"cannot resume: {last} not found; {_without_last(out)}")
            raise ConfigError(f"cannot resume: {last} not found (the run stopped before its first "
                              "checkpoint; run the same command without --resume to start it again)")
        step = _check_resumable(out, last)
        data = read_yaml_mapping(config_file, "run config")
        saved_kind = data.pop("kind", kind)
        if saved_kind != kind:
            raise ConfigError(f"cannot resume: {out} is a {saved_kind} run, not a {kind} run")
        saved_shape = TaskShape.from_dict(data.pop("shape", None), where=f"{config_file}: shape")
        if saved_shape != shape:
            raise ConfigError(f"cannot resume: {out} was trained on {saved_shape.describe()}; the data holds "
                              f"{shape.describe()}")
        try:
            saved = from_dict(KINDS[kind].config_class, data, stored=True)
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
        return saved, last, step
    # A folder with config.yaml but no checkpoint is a start that failed or was stopped early:
    # starting again over it loses nothing.
    if _is_rank_zero_process() and _has_checkpoint(out):
        if not last.is_file():
            raise DataError(f"{out} already holds a run, without {last.name}: {_without_last(out)}")
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    config = resolve(KINDS[kind].config_class, kind, preset or "cpu", overrides)
    return config, None, 0


def _usable_best(out: Path) -> dict[str, Any] | None:
    """best.ckpt of a run when it is intact and holds a training state to resume from, else None."""
    try:
        saved = read_checkpoint(checkpoint_path(out, "best"))
    except DataError:
        return None
    return saved if "optimizer_states" in saved and "loops" in saved else None


def _without_last(out: Path) -> str:
    """What to do with a run folder whose last.ckpt is missing (deleted, or the run was killed
    between writing best.ckpt and last.ckpt) or cannot be resumed from: the one way on."""
    best, last = checkpoint_path(out, "best"), checkpoint_path(out, "last")
    saved = _usable_best(out)
    if saved is None:
        return f"no intact checkpoint remains to resume from; start again with another --out (or delete {out})"
    return (f"{best} is intact (epoch {saved.get('epoch')}, step {saved.get('global_step')}): to resume from it, "
            f"copy it to {last} and run with --resume")


def _check_resumable(out: Path, last: Path) -> int:
    """Fail with one line, before anything is written, when last.ckpt cannot be resumed from;
    name an intact best.ckpt to resume from instead. Returns last.ckpt's global step."""
    try:
        ckpt = read_checkpoint(last)
        if "optimizer_states" not in ckpt or "loops" not in ckpt:
            raise DataError(f"{last} holds weights only, not a training state")
    except DataError as exc:
        raise DataError(f"cannot resume: {exc}; {_without_last(out)}") from None
    return int(ckpt.get("global_step", 0))


def _init_weights(module: TrainModule, run_dir: str) -> None:
    """Fine-tuning: start from the best weights of another run of the same kind and model."""
    path = checkpoint_path(run_dir, "best")
    if not Path(run_dir).is_dir():
        raise DataError(f"init_from: run folder not found: {run_dir}")
    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    if hp["kind"] != module.kind:
        raise ConfigError(f"init_from {run_dir} is a {hp['kind']} run; this is a {module.kind} run")
    theirs, ours = hp["config"]["model"], to_dict(module.config)["model"]
    diff = sorted(k for k in ours if theirs.get(k) != ours[k])
    if diff:
        raise ConfigError(f"init_from {run_dir}: model.{diff[0]} is {theirs.get(diff[0])!r} there and "
                          f"{ours[diff[0]]!r} here; the model sections must match")
    module.load_state_dict(ckpt["state_dict"])


class _NoAdvert(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger from a normal run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


def _quiet_library_noise() -> None:
    """No advertisement and no deprecation notice addressed to library authors on a normal run."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvert) for f in log.filters):
        log.addFilter(_NoAdvert())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*is not supported by the model summary")


def _loggers(out: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(out, name="logs")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        # its own folder: two loggers picking version numbers in one folder can disagree
        loggers.append(TensorBoardLogger(out / "logs", name="tensorboard", default_hp_metric=False))
    return loggers


def _loader(dataset: Dataset, config: Any, runtime: Runtime, *, train: bool, in_memory: bool) -> DataLoader:
    """The training loader (batches in `EpochSampler`'s order, the last partial one dropped)
    or the validation one (in order)."""
    workers = 0 if in_memory else runtime.workers
    sampler = EpochSampler(len(dataset), config.seed) if train else None
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, drop_last=train and
                      len(dataset) > config.batch_size, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())


def _resume_position(loader: DataLoader, config: Any, step: int) -> None:
    """Start the order of a run resumed at global step `step` where the uninterrupted run was:
    the epoch of that step, past the samples of its batches already trained on. One process
    only: with several, Lightning shares each epoch's order out among them and the resumed
    epoch starts over, as before."""
    batches = len(loader)
    if config.limit_train_batches:
        batches = min(batches, config.limit_train_batches)
    epoch, done = divmod(step, max(batches, 1))
    loader.sampler.resume_at(epoch, done * config.batch_size)
    # Lightning warns that a loader resumed mid-epoch starts the epoch over: this one does not
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")


def train(kind: str, data: str | Path, out: str | Path, *, preset: str | None = None,
          overrides: list[str] = (), resume: bool = False, init: str | None = None,
          runtime: Runtime | None = None) -> dict[str, Any]:
    """Train one model into a run folder (see the module docstring); returns a summary dict.

    Args:
        kind: a name of `kinds.KINDS`.
        data: dataset root.
        out: run folder (must not hold a run unless `resume`).
        preset: shipped preset name or YAML path (default "cpu"); not with `resume`.
        overrides: `key=value` settings applied after the preset.
        resume: continue from `out/checkpoints/last.ckpt` with the saved config.
        init: fine-tune from the best weights of this run (same as `init_from=RUN`).
        runtime: devices, precision and workers.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    runtime = runtime or Runtime()
    if runtime.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {runtime.workers}")
    out, root = Path(out), Path(data)
    overrides = list(overrides) + ([f"init_from={init}"] if init else [])
    shape = task_shape(root)
    config, ckpt_path, step = _prepare_run(kind, out, preset, overrides, resume, shape)
    trainer_class = KINDS[kind].trainer()
    config = trainer_class.for_shape(config, shape)
    train_set, val_set = trainer_class.datasets(config, root)
    # every file a batch will read, before the first step (not when a batch first samples it)
    check_readable(train_set, val_set, progress=_is_rank_zero_process())

    _quiet_library_noise()
    L.seed_everything(config.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    module = trainer_class(config, shape)
    module.use_datasets(train_set, val_set, progress=_is_rank_zero_process())
    if config.init_from and ckpt_path is None:
        _init_weights(module, config.init_from)
    elif ckpt_path is None:
        module.fit_to_data(train_set)  # numbers fitted in closed form before the first step

    folder = out / "checkpoints"
    best = ModelCheckpoint(dirpath=folder, filename="best", monitor=module.monitor, mode=module.monitor_mode,
                           save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False)
    # Lightning's save_last only writes when the best one improves; an unconditional monitor-less
    # checkpoint named "last" after every epoch (and every N steps) is what resume needs.
    last = [ModelCheckpoint(dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False)]
    if config.checkpoint_every_steps:
        last.append(ModelCheckpoint(dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False,
                                    every_n_train_steps=config.checkpoint_every_steps))
    callbacks: list[L.Callback] = [best, *last, LearningRateMonitor(logging_interval="step"), RNGState(config.seed),
                                   ValidateLastEpoch(config.max_steps), MaxSteps(config.max_steps)]
    multi = runtime.num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1 or (
        str(runtime.devices).isdigit() and int(runtime.devices) > 1)
    with _device_errors(runtime):
        trainer = _trainer(out, config, runtime, callbacks, multi)
    if ckpt_path is None and _is_rank_zero_process():  # everything checked: now the folder is a run
        write_yaml(out / CONFIG_FILE, {"kind": kind, "shape": shape.as_dict(), **to_dict(config)})
    in_memory = trainer_class.in_memory_data
    train_loader = _loader(train_set, config, runtime, train=True, in_memory=in_memory)
    if ckpt_path is not None and trainer.world_size == 1:
        _resume_position(train_loader, config, step)
    start = time.time()
    try:
        trainer.fit(module, train_loader, _loader(val_set, config, runtime, train=False, in_memory=in_memory),
                    ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:
            raise
        if trainer.is_global_zero:  # Lightning exits on Ctrl-C; the CLI reports it (exit 130)
            if checkpoint_path(out, "last").is_file():
                print(f"continue from the last checkpoint with: simvp-unet train {kind} --data {data} "
                      f"--out {out} --resume", file=sys.stderr)
            else:
                print("stopped before the first checkpoint; run the same command again to start over",
                      file=sys.stderr)
        raise KeyboardInterrupt from None
    score = best.best_model_score
    summary = {
        "kind": kind,
        "run": str(out),
        "monitor": module.monitor,
        "best_score": None if score is None else float(score),
        "best": str(checkpoint_path(out, "best")),
        "last": str(checkpoint_path(out, "last")),
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seconds": time.time() - start,
        "rank_zero": trainer.is_global_zero,
    }
    return summary


@contextmanager
def _device_errors(runtime: Runtime) -> Iterator[None]:
    """Lightning's refusals of --accelerator/--devices/--num-nodes/--precision as one ConfigError."""
    try:
        yield
    except (MisconfigurationException, ValueError, RuntimeError, TypeError) as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConfigError(f"--accelerator {runtime.accelerator} --devices {runtime.devices} "
                          f"--num-nodes {runtime.num_nodes}: {reason}") from None


def _trainer(out: Path, config: Any, runtime: Runtime, callbacks: list[L.Callback], multi: bool) -> L.Trainer:
    return L.Trainer(
        default_root_dir=out,
        accelerator=runtime.accelerator,
        devices=int(runtime.devices) if str(runtime.devices).isdigit() else runtime.devices,
        num_nodes=runtime.num_nodes,
        strategy="ddp" if multi else "auto",
        precision=resolve_precision(runtime.precision or config.precision, runtime.accelerator),
        max_epochs=config.epochs,  # max_steps: common.MaxSteps, not Lightning's (see there)
        limit_train_batches=config.limit_train_batches or None,
        limit_val_batches=config.limit_val_batches or None,
        check_val_every_n_epoch=config.val_every_epochs,
        callbacks=callbacks,
        logger=_loggers(out),
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=config.log_every_steps,
        gradient_clip_val=config.grad_clip or None,
    )
