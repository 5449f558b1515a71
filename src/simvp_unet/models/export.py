"""Model files for use outside this package: ONNX graphs and safetensors weights with their config.

    export_onnx(model, torch.rand(1, 11, 3, 160, 240), "simvp.onnx")
    export_safetensors(model, model.config, "simvp.safetensors")
    model = load_safetensors("simvp.safetensors")       # SimVP or UNet, in eval mode
    net = load_safetensors("net.safetensors", classes={**MODELS, "Net": (Net, NetConfig)})

Both writers go through a temporary file, so a failed export leaves no half-written file. The
writers take any network built from a dataclass config; the reader rebuilds the classes it is
given, by default this package's own (`MODELS`): a package above passes its networks too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..config import from_dict
from ..errors import DataError, short_reason
from ..io import atomic_path
from .simvp import SimVP, SimVPConfig
from .unet import UNet, UNetConfig

# This package's networks, by the class name a safetensors file records, with the config each
# is built from: what `load_safetensors` rebuilds unless it is given more.
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "SimVP": (SimVP, SimVPConfig),
    "UNet": (UNet, UNetConfig),
}


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | Path,
    *,
    opset: int = 18,
    dynamo: bool = False,
) -> Path:
    """Write `model` (in eval mode, on the CPU, float32) as an ONNX graph with a dynamic batch size.

    Args:
        model: a `SimVP` or `UNet` (any module taking one tensor).
        example_input: an input of the shape to trace with (its batch size may be 1).
        path: the `.onnx` file to write.
        opset: ONNX operator set version.
        dynamo: use the torch.export-based exporter (slower to export, needs onnxscript)
            instead of the TorchScript-based one, which PyTorch has deprecated but which
            exports these models in a fraction of a second.

    Returns the path written. The graph's input is named "input" and its output "output"; H and
    W are fixed to those of `example_input` (padding and cropping are decided when tracing).
    """
    path = Path(path)
    was_training = model.training
    model = model.eval()
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            # shape checks read as Python constants while tracing; that is intended here
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            if dynamo:
                # one self-contained file: external weights would be named after the temp file
                batch = {
                    "dynamic_shapes": ({0: torch.export.Dim("batch")},),
                    "external_data": False,
                }
            else:
                batch = {"dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}}}
                warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (example_input,),
                str(tmp),
                input_names=["input"],
                output_names=["output"],
                opset_version=opset,
                dynamo=dynamo,
                verbose=False,
                **batch,
            )
    finally:
        model.train(was_training)
    return path


def export_safetensors(model: nn.Module, config, path: str | Path) -> Path:
    """Write the weights of `model` and its config (JSON in the file's metadata) as safetensors.

    Args:
        model: a network built as `type(model)(config)` whose state (parameters and buffers) is
            all it learned or fitted: a `SimVP`, a `UNet`, or a network of a package above.
        config: the dataclass instance it was built from (`model.config`).
        path: the `.safetensors` file to write.

    The file records the class name; `load_safetensors` rebuilds it given that class. A failed
    write (a full disk, the file-size limit) is an `OutputError` naming `path`, which keeps its
    previous content.
    """
    name = type(model).__name__
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"export_safetensors needs the dataclass config {name} was built from, "
                        f"got {type(config).__name__}")
    # safetensors refuses tensors that share memory, so every tensor gets its own copy
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"model": name, "config": json.dumps(dataclasses.asdict(config))}
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            save_file(state, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # a failed write: an OSError for atomic_path to name the path
            raise _os_error(exc) from None
    return path


def _os_error(exc: SafetensorError) -> OSError | SafetensorError:
    """The OSError inside a safetensors write error ("Error while serializing: I/O error: File too
    large (os error 27)", before 0.5 "IoError(Os { code: 28, kind: StorageFull, ... })"); `exc`
    itself when it is not an I/O error."""
    found = re.search(r"\(os error (\d+)\)|Os \{ code: (\d+)", str(exc))
    if not found:
        return exc
    number = int(found.group(1) or found.group(2))
    return OSError(number, os.strerror(number))


def with_legacy_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], *,
                        prefix: str = "") -> dict[str, torch.Tensor]:
    """`state` with the weights a model of this version has and a file made by an earlier one
    lacks, where the model says which (`legacy_weights()`: name -> the value that keeps the old
    behaviour); `prefix` is put before each name (the model's place in a larger module)."""
    legacy = model.legacy_weights() if hasattr(model, "legacy_weights") else {}
    return {**{prefix + k: v for k, v in legacy.items() if prefix + k not in state}, **state}


def load_safetensors(path: str | Path, *,
                     classes: Mapping[str, tuple[type[nn.Module], type]] = MODELS) -> nn.Module:
    """Rebuild the model saved by `export_safetensors` (on the CPU, in eval mode).

    Args:
        path: the `.safetensors` file.
        classes: the networks it may hold, by class name, each with its config class (as
            `MODELS`, the default: SimVP and UNet); a caller above passes its own as well.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable safetensors file ({short_reason(exc)})") from None
    name = metadata.get("model")
    if name not in classes:
        raise DataError(f"{path} does not name a known model in its metadata (got {name!r}; "
                        f"known here: {', '.join(classes)})")
    model_cls, config_cls = classes[name]
    try:
        config = from_dict(config_cls, json.loads(metadata["config"]), stored=True)
        model = model_cls(config)
        model.load_state_dict(with_legacy_weights(model, state), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{path} holds a {name} that cannot be rebuilt: {exc}") from None
    return model.eval()
