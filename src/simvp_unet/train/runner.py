"""Run folders: start, resume and load a training run of any kind.

    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg
    module = load_run("runs/seg")          # eval mode, CPU, weights_only=True

RUN/config.yaml            the resolved settings (written atomically before training)
RUN/checkpoints/last.ckpt  the latest state (weights, optimizer, schedule, loops, RNG) for --resume
RUN/checkpoints/best.ckpt  the best validation score so far
RUN/logs/                  CSV logs in version_<n>/ (one per start or resume); logs/tensorboard/ when installed
RUN/pictures/              predictions vs truth after every validation
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ..config import from_dict, read_yaml_mapping, resolve, to_dict
from ..data import layout
from ..data.datasets import FrameDataset, VideoDataset
from ..errors import ConfigError, DataError
from ..hardware import channels_last, has_native_bf16
from ..io import write_yaml
from ..models.fold import fold_for_inference
from .common import AtomicCheckpointIO, RNGState, TrainModule
from .forecaster import ForecasterConfig, ForecasterModule
from .predictor import PredictorConfig, PredictorModule
from .segmenter import SegmenterConfig, SegmenterModule

MODULES: dict[str, type[TrainModule]] = {
    "predictor": PredictorModule,
    "segmenter": SegmenterModule,
    "forecaster": ForecasterModule,
}
CONFIGS: dict[str, type] = {
    "predictor": PredictorConfig,
    "segmenter": SegmenterConfig,
    "forecaster": ForecasterConfig,
}
CONFIG_FILE = "config.yaml"


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """RUN/checkpoints/<which>.ckpt."""
    return Path(run_dir) / "checkpoints" / f"{which}.ckpt"


# ---------------------------------------------------------------------------- loading runs


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or hparams.get("kind") not in MODULES or "state_dict" not in ckpt:
        raise DataError(f"{path} is not a simvp-unet training checkpoint (no kind/config/state_dict)")
    return ckpt


def _module_from_checkpoint(ckpt: dict[str, Any], path: Path) -> TrainModule:
    kind = ckpt["hyper_parameters"]["kind"]
    try:
        config = from_dict(CONFIGS[kind], ckpt["hyper_parameters"]["config"])
    except ConfigError as exc:
        raise DataError(f"{path}: stored config is not valid here: {exc}") from None
    module = MODULES[kind](config)
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not fit the stored config: {exc}") from None
    return module


def load_run(run_dir: str | Path, which: str = "best", *, device: str | torch.device = "cpu",
             fold: bool = False) -> TrainModule:
    """The trained module of a run folder, in eval mode, with its inference helper.

    Args:
        run_dir: a folder written by `simvp-unet train`.
        which: "best" (best validation score) or "last" (latest state).
        device: where to put the module.
        fold: replace `module.model` by its inference-only equivalent (`models.fold`), faster
            for the helpers; its weights no longer match the checkpoint's names (not for export).

    Returns:
        `SegmenterModule` (`segment`), `PredictorModule` (`predict_frames`) or
        `ForecasterModule` (`forecast_masks`), according to the run.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder not found: {run_dir}")
    if which not in ("best", "last"):
        raise ConfigError(f"which must be 'best' or 'last', got {which!r}")
    path = checkpoint_path(run_dir, which)
    module = _module_from_checkpoint(_read_checkpoint(path), path).eval()
    if fold:
        module.model = fold_for_inference(module.model)
    module.to(device)
    if channels_last(module.model, "infer", torch.device(device).type):
        module.to(memory_format=torch.channels_last)  # same numbers, faster convolutions
    module.inference_bf16 = True  # where bf16 is native (`TrainModule.inference_autocast`)
    return module


# ---------------------------------------------------------------------------- data


def _check_data_root(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")


def _pseudo_labeled(root: Path, split: str) -> bool:
    """True when every video of a split without true masks has its pseudo-label."""
    videos = layout.list_videos(root, split)
    done = [(folder / layout.PRED_MASK_FILE).is_file() for _, folder in videos]
    if not any(done):
        return False
    if not all(done):
        missing = next(folder for (_, folder), ok in zip(videos, done, strict=True) if not ok)
        raise DataError(f"{sum(done)} of {len(done)} {split} videos have {layout.PRED_MASK_FILE}; "
                        f"missing {missing / layout.PRED_MASK_FILE} (finish `simvp-unet label` first)")
    return True


def _has_true_masks(root: Path, split: str) -> bool:
    videos = layout.list_videos(root, split)
    return bool(videos) and all((folder / layout.MASK_FILE).is_file() for _, folder in videos)


def build_datasets(kind: str, config: Any, root: Path) -> tuple[Dataset, Dataset]:
    """(train, val) datasets of one kind of run."""
    _check_data_root(root)
    for split in [*config.train_splits, config.val_split]:
        if split not in layout.SPLITS or split == "hidden":
            raise ConfigError(f"split {split!r} cannot train or validate; use train, val or unlabeled")
    if kind == "predictor":
        train = [VideoDataset(root, split) for split in config.train_splits]
        return ConcatDataset(train), VideoDataset(root, config.val_split)
    if kind == "segmenter":
        for split in [*config.train_splits, config.val_split]:
            if not _has_true_masks(root, split):
                raise DataError(f"the segmenter needs labeled videos: {root / split} has videos "
                                f"without {layout.MASK_FILE} (or none)")
        train = [FrameDataset(root, split) for split in config.train_splits]
        return ConcatDataset(train), FrameDataset(root, config.val_split)
    # forecaster: true masks where there are some, else complete pseudo-labels, else skip the split
    if not _has_true_masks(root, config.val_split):
        raise DataError(f"the forecaster validates on true masks: {root / config.val_split} has "
                        f"videos without {layout.MASK_FILE} (or none)")
    train = []
    for split in config.train_splits:
        if _has_true_masks(root, split) or _pseudo_labeled(root, split):
            train.append(VideoDataset(root, split, masks="any", with_frames=False))
        elif layout.list_videos(root, split):
            print(f"forecaster: skipping {root / split}: no masks or pseudo-labels "
                  f"(run `simvp-unet label` to use it)")
    if not train:
        raise DataError(f"the forecaster found no masks in {root} splits {', '.join(config.train_splits)}")
    return ConcatDataset(train), VideoDataset(root, config.val_split, masks="true", with_frames=False)


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


def _prepare_run(kind: str, out: Path, preset: str | None, overrides: list[str],
                 resume: bool) -> tuple[Any, Path | None]:
    """Resolve the config (new run) or read it back (resume); check the folder; write config.yaml."""
    config_file = out / CONFIG_FILE
    last = checkpoint_path(out, "last")
    if resume:
        if preset is not None or overrides:
            raise ConfigError("--resume continues a run with its saved config.yaml; drop --preset, "
                              "--set and --init (or start a new run with another --out)")
        if not config_file.is_file():
            raise ConfigError(f"cannot resume: {config_file} not found (is {out} a training run?)")
        if not last.is_file():
            raise ConfigError(f"cannot resume: {last} not found (the run stopped before its first "
                              f"checkpoint; delete {out} and start again)")
        data = read_yaml_mapping(config_file, "run config")
        saved_kind = data.pop("kind", kind)
        if saved_kind != kind:
            raise ConfigError(f"cannot resume: {out} is a {saved_kind} run, not a {kind} run")
        try:
            saved = from_dict(CONFIGS[kind], data)
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
        return saved, last
    if _is_rank_zero_process() and (config_file.exists() or (out / "checkpoints").exists()):
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    config = resolve(CONFIGS[kind], kind, preset or "cpu", overrides)
    if _is_rank_zero_process():
        write_yaml(config_file, {"kind": kind, **to_dict(config)})
    return config, None


def _init_weights(module: TrainModule, run_dir: str) -> None:
    """Fine-tuning: start from the best weights of another run of the same kind and model."""
    path = checkpoint_path(run_dir, "best")
    if not Path(run_dir).is_dir():
        raise DataError(f"init_from: run folder not found: {run_dir}")
    ckpt = _read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    if hp["kind"] != module.kind:
        raise ConfigError(f"init_from {run_dir} is a {hp['kind']} run; this is a {module.kind} run")
    theirs, ours = hp["config"]["model"], to_dict(module.config)["model"]
    diff = sorted(k for k in ours if theirs.get(k) != ours[k])
    if diff:
        raise ConfigError(f"init_from {run_dir}: model.{diff[0]} is {theirs.get(diff[0])!r} there and "
                          f"{ours[diff[0]]!r} here; the model sections must match")
    module.load_state_dict(ckpt["state_dict"])


def _loggers(out: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(out, name="logs")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        # its own folder: two loggers picking version numbers in one folder can disagree
        loggers.append(TensorBoardLogger(out / "logs", name="tensorboard", default_hp_metric=False))
    return loggers


def _loader(dataset: Dataset, config: Any, runtime: Runtime, *, shuffle: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=shuffle, drop_last=shuffle and
                      len(dataset) > config.batch_size, num_workers=runtime.workers,
                      persistent_workers=runtime.workers > 0, pin_memory=torch.cuda.is_available())


def train(kind: str, data: str | Path, out: str | Path, *, preset: str | None = None,
          overrides: list[str] = (), resume: bool = False, init: str | None = None,
          runtime: Runtime | None = None) -> dict[str, Any]:
    """Train one model into a run folder (see the module docstring); returns a summary dict.

    Args:
        kind: "predictor", "segmenter" or "forecaster".
        data: dataset root.
        out: run folder (must not hold a run unless `resume`).
        preset: shipped preset name or YAML path (default "cpu"); not with `resume`.
        overrides: `key=value` settings applied after the preset.
        resume: continue from `out/checkpoints/last.ckpt` with the saved config.
        init: fine-tune from the best weights of this run (same as `init_from=RUN`).
        runtime: devices, precision and workers.
    """
    if kind not in MODULES:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(MODULES)}")
    runtime = runtime or Runtime()
    if runtime.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {runtime.workers}")
    out, root = Path(out), Path(data)
    overrides = list(overrides) + ([f"init_from={init}"] if init else [])
    config, ckpt_path = _prepare_run(kind, out, preset, overrides, resume)
    train_set, val_set = build_datasets(kind, config, root)

    L.seed_everything(config.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    module = MODULES[kind](config)
    if config.init_from and ckpt_path is None:
        _init_weights(module, config.init_from)

    folder = out / "checkpoints"
    best = ModelCheckpoint(dirpath=folder, filename="best", monitor=module.monitor, mode=module.monitor_mode,
                           save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False)
    # Lightning's save_last only writes when the best one improves; an unconditional monitor-less
    # checkpoint named "last" after every epoch (and every N steps) is what resume needs.
    last = [ModelCheckpoint(dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False)]
    if config.checkpoint_every_steps:
        last.append(ModelCheckpoint(dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False,
                                    every_n_train_steps=config.checkpoint_every_steps))
    callbacks: list[L.Callback] = [best, *last, LearningRateMonitor(logging_interval="step"), RNGState()]
    multi = runtime.num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1 or (
        str(runtime.devices).isdigit() and int(runtime.devices) > 1)
    trainer = L.Trainer(
        default_root_dir=out,
        accelerator=runtime.accelerator,
        devices=int(runtime.devices) if str(runtime.devices).isdigit() else runtime.devices,
        num_nodes=runtime.num_nodes,
        strategy="ddp" if multi else "auto",
        precision=resolve_precision(runtime.precision or config.precision, runtime.accelerator),
        max_epochs=config.epochs,
        max_steps=config.max_steps,
        limit_train_batches=config.limit_train_batches or None,
        limit_val_batches=config.limit_val_batches or None,
        check_val_every_n_epoch=config.val_every_epochs,
        callbacks=callbacks,
        logger=_loggers(out),
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=config.log_every_steps,
        gradient_clip_val=config.grad_clip or None,
    )
    start = time.time()
    try:
        trainer.fit(module, _loader(train_set, config, runtime, shuffle=True),
                    _loader(val_set, config, runtime, shuffle=False), ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if trainer.interrupted and trainer.is_global_zero:  # Lightning exits on Ctrl-C
            print(f"interrupted; continue from the last checkpoint with: simvp-unet train {kind} "
                  f"--data {data} --out {out} --resume", file=sys.stderr)
        raise
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
