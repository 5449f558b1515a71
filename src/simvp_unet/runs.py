"""Run folders: serve a trained run, export it (no Lightning).

    from simvp_unet.runs import load_run
    segmenter = load_run("runs/seg")                   # a Segmenter in eval mode, on the CPU
    masks = segmenter.segment(images)                  # uint8 (N, 3, 160, 240) -> long (N, 160, 240)
    dynamics = load_run("runs/dyn", device="cuda")     # a Dynamics

A run folder holds `checkpoints/best.ckpt` and `last.ckpt`, each with the run's kind, its
resolved settings as a plain dict and the task shape it was trained for beside the weights. `load_run` rebuilds the kind's served
module (`kinds.KINDS`) from those settings (as nanoGPT rebuilds its model from the saved
arguments) and loads its weights: serving a run needs no command line and no trainer.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .data.layout import TaskShape
from .errors import ConfigError, DataError, short_reason
from .hardware import channels_last, folding_helps
from .inference import Served
from .kinds import KINDS
from .models import export as exporters
from .models.fold import fold_for_inference
from .models.simvp import SimVP
from .models.unet import UNet
from .objects.dynamics import DynamicsNet, DynamicsNetConfig

# The networks a safetensors file may hold: the models' own and the dynamics network (named
# MotionForecaster in files of earlier versions).
EXPORTABLE = {**exporters.MODELS, "DynamicsNet": (DynamicsNet, DynamicsNetConfig),
              "MotionForecaster": (DynamicsNet, DynamicsNetConfig)}


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """RUN/checkpoints/<which>.ckpt."""
    return Path(run_dir) / "checkpoints" / f"{which}.ckpt"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint (weights_only=True): `hyper_parameters` {kind, config, shape} and
    `state_dict` (checkpoints of earlier versions have no shape: the competition's)."""
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{path} is not a readable checkpoint ({short_reason(exc)})") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or hparams.get("kind") not in KINDS or "state_dict" not in ckpt:
        raise DataError(f"{path} is not a simvp-unet training checkpoint (no kind/config/state_dict)")
    return ckpt


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def load_run(run_dir: str | Path, which: str = "best", *, device: str | torch.device = "cpu",
             fold: bool = False) -> Served:
    """The served module of a run folder, in eval mode, with its trained weights.

    The checkpoint's `state_dict` is the trainer's, whose network is its `model`: the weights
    under `model.` are those of the served module's `model`.

    Args:
        run_dir: a folder written by `simvp-unet train`.
        which: "best" (best validation score) or "last" (latest state).
        device: where to put the module (it can be moved later; precision follows the device,
            but folding and the memory format are chosen here, for `device`).
        fold: replace a U-Net's or SimVP's network by its inference-only equivalent
            (`models.fold`: the same function up to float rounding) where that is faster on
            `device` (`hardware.folding_helps`); not for export or training.

    Returns:
        The served module of the run's kind (`kinds.KINDS[kind].served`): a `Segmenter`,
        `FramePredictor`, `MaskForecaster` or `Dynamics`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder not found: {run_dir}")
    if which not in ("best", "last"):
        raise ConfigError(f"which must be 'best' or 'last', got {which!r}")
    path = checkpoint_path(run_dir, which)
    ckpt = read_checkpoint(path)
    hparams = ckpt["hyper_parameters"]
    try:
        shape = TaskShape.from_dict(hparams.get("shape"), where=f"{path}: shape")
        module = KINDS[hparams["kind"]].served.from_config(hparams["config"], shape)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:  # e.g. a setting this version no longer has
        raise DataError(f"{path}: stored config is not valid here ({exc}): a run made by another "
                        "version of simvp-unet? Train it again") from None
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    expected = module.model.state_dict()
    weights = exporters.with_legacy_weights(module.model, weights)  # a run made before they existed
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing or unexpected:
        parts = ([f"missing {_some(missing)}"] if missing else []) + \
                ([f"unexpected {_some(unexpected)}"] if unexpected else [])
        raise DataError(f"{path}: weights do not fit the stored config ({'; '.join(parts)}): a run made by "
                        "another version of simvp-unet? Train it again")
    try:
        module.model.load_state_dict(weights)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())  # one line
        raise DataError(f"{path}: weights do not fit the stored config: {reason}") from None
    module = module.eval()
    device_type = torch.device(device).type
    if fold and isinstance(module.model, (UNet, SimVP)) and folding_helps(module.model, device_type):
        module.model = fold_for_inference(module.model)
    module = module.to(device)
    if channels_last(module.model, "infer", device_type):
        module = module.to(memory_format=torch.channels_last)  # same numbers, faster convolutions
    return module


def export(run: str | Path, fmt: str, out: str | Path | None = None, *, which: str = "best") -> Path:
    """Export a run's network as safetensors (weights + config) or ONNX (graph at working size)."""
    if fmt not in ("safetensors", "onnx"):
        raise ConfigError(f"--format must be safetensors or onnx, got {fmt!r}")
    module = load_run(run, which=which)
    out = Path(out) if out is not None else Path(run) / f"model.{fmt}"
    if fmt == "safetensors":
        exporters.export_safetensors(module.model, module.model.config, out)
    else:
        exporters.export_onnx(module.model, module.example_input(), out)
    return out


def load_exported(path: str | Path) -> torch.nn.Module:
    """A network exported as safetensors by `export` (any kind's, the dynamics network's too),
    in eval mode."""
    return exporters.load_safetensors(path, classes=EXPORTABLE)
