"""Served modules: one trained network each, with what serving it takes, and no Lightning.

    segmenter = Segmenter(UNet(UNetConfig()), resolution=(160, 240))  # or runs.load_run("runs/seg")
    masks = segmenter.segment(images)                  # uint8 (N, 3, 160, 240) -> long (N, 160, 240)
    forecaster = runs.load_run("runs/fc", device="cuda")   # a MaskForecaster
    future = forecaster.forecast_masks(masks_1_to_11)  # long (B, 11, H, W) -> masks 12..22

Each module knows the task shape it was trained for (`shape`, a `data.layout.TaskShape`: in
the competition's, frames 1..11 in and 12..22 out); a network that makes fewer frames in one
pass than the shape forecasts is rolled out (`roll_out`).

Each module wraps one network (`UNet` or `SimVP`) as `model`, with the resolution it works at
(inputs are converted and resized on its device, outputs are resized back to the input's size),
chunks that bound memory, and bf16 autocast where the device computes bf16 natively. The object
path's served module, `objects.serve.Dynamics`, shares the `Served` base. `runs.load_run` rebuilds
any of them from a run folder; the trainers (`simvp_unet.train`) wrap the same modules with a
loss, an optimizer and logging.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .classes import NUM_CLASSES
from .config import from_dict
from .data.layout import COMPETITION, TaskShape
from .hardware import has_native_bf16
from .models.layers import upsampled_argmax
from .models.simvp import SimVP, SimVPConfig
from .models.unet import UNet, UNetConfig

# ---------------------------------------------------------------------------- resizing


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float images (N, C, H, W) to `size`: area averaging when shrinking, bilinear otherwise."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinking = x.shape[-2] >= size[0] and x.shape[-1] >= size[1]
    if shrinking:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def frames_to_model(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 frames (B, T, 3, H, W) -> float in [0, 1] (B, T, 3, *size)."""
    b = frames.shape[0]
    x = rearrange(frames, "b t c h w -> (b t) c h w").float() / 255
    x = resize_images(x, size)
    return rearrange(x, "(b t) c h w -> b t c h w", b=b)


def frames_to_uint8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float frames (B, T, 3, h, w) in [0, 1] -> uint8 (B, T, 3, *size) (bilinear)."""
    b = x.shape[0]
    x = rearrange(x.float(), "b t c h w -> (b t) c h w")
    x = resize_images(x, size)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return rearrange(x, "(b t) c h w -> b t c h w", b=b)


def masks_to_size(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Integer class ids (..., H, W) -> long (..., *size), nearest neighbour (ids stay ids)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.long()
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()  # (N, 1, H, W)
    out = F.interpolate(flat, size=size, mode="nearest").long()
    return out.reshape(*lead, *size)


def logits_to_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class logits (N, K, h, w) -> (N, K, *size), bilinear (so argmax edges are smooth)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def in_chunks(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Split a batch along dim 0 so that full-size inference stays within memory."""
    return list(torch.split(x, size)) if len(x) else [x]


# ---------------------------------------------------------------------------- devices, precision


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------- the served modules


def check_network(config: Any, required: Mapping[str, tuple[Any, str]]) -> None:
    """Fail with one clear line when a network setting does not fit its role.

    `required` maps a field of the network's config to (the value it must have, why).
    """
    for name, (expected, why) in required.items():
        value = getattr(config, name)
        if value != expected:
            raise ValueError(f"model.{name} must be {expected} ({why}), got {value}")


def _resolution(value: Any) -> tuple[int, int]:
    size = tuple(value)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f"resolution must be two positive numbers (H, W), got {list(size)}")
    return size


class Served(nn.Module):
    """Base of the served modules: the network as `model`, its working resolution, its device.

    Subclasses set `NETWORK`, what their role requires of the network's config (checked here
    and, before any training starts, by the trainers' configs), and build themselves from a
    run's saved config with `from_config`.

    Args:
        model: the network; its `config` is the dataclass it was built from.
        resolution: (H, W) the network works at; None for a network that reads no images.
        shape: the task shape it serves (what it was trained for).
    """

    NETWORK: ClassVar[dict[str, tuple[Any, str]]] = {}

    def __init__(self, model: nn.Module, *, resolution: tuple[int, int] | None = None,
                 shape: TaskShape = COMPETITION) -> None:
        super().__init__()
        check_network(model.config, {**self.NETWORK, **self.network_for(shape)})
        self.model = model
        self.resolution = None if resolution is None else _resolution(resolution)
        self.shape = shape

    @classmethod
    def network_for(cls, shape: TaskShape) -> dict[str, tuple[Any, str]]:
        """What serving `shape` requires of the network's config, beyond `NETWORK` (the frames
        it reads and makes)."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shape: TaskShape = COMPETITION) -> Served:
        """Built (untrained) from a run's saved config (the trainer's settings as a plain dict)
        and the task shape it was trained for."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the weights are; inputs are moved there, outputs come back to the input's device."""
        # a folded network (`models.fold`) keeps its weights as buffers
        for tensor in itertools.chain(self.model.parameters(), self.model.buffers()):
            return tensor.device
        return torch.device("cpu")

    def autocast(self) -> torch.autocast:
        """bf16 autocast where this module's device computes bf16 natively
        (`hardware.has_native_bf16`), else a context that changes nothing; decided at every call,
        for the device the weights are on now (a module loaded on the CPU and moved to a GPU
        uses the GPU's answer)."""
        device = self.device
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=has_native_bf16(device.type))

    def example_input(self) -> torch.Tensor:
        """A zero input of batch 1 at the working resolution, in the network's input format
        (what an ONNX export traces with)."""
        raise NotImplementedError


class Segmenter(Served):
    """A U-Net served at its working resolution: uint8 frames of any size in, masks of that size out.

    Args:
        model: the U-Net (3 input channels, 49 classes).
        resolution: (H, W) the U-Net works at.
    """

    NETWORK = {"in_channels": (3, "the segmenter reads RGB frames"),
               "num_classes": (NUM_CLASSES, "the task has 49 classes")}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shape: TaskShape = COMPETITION) -> Segmenter:
        """Built (untrained) from a run's saved config: `resolution` and the `model` section."""
        model = UNet(from_dict(UNetConfig, config["model"], prefix="model.", stored=True))
        return cls(model, resolution=config["resolution"], shape=shape)

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> the network's input: floats in [0, 1] at the working resolution."""
        return resize_images(images.float() / 255, self.resolution)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> logits (N, 49, *resolution)."""
        return self.model(self.model_input(images))

    @torch.inference_mode()
    def segment(self, images: torch.Tensor, *, chunk: int = 32) -> torch.Tensor:
        """Masks of RGB frames: uint8 (N, 3, H, W) -> long (N, H, W), at the input's size.

        Logits are upsampled bilinearly from the working resolution before the argmax; at the
        working resolution the U-Net's `argmax` gives it (faster for the split head).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"segment expects uint8 images (N, 3, H, W), got shape {tuple(images.shape)}")
        size = tuple(images.shape[-2:])
        def masks(part: torch.Tensor) -> torch.Tensor:
            if size == self.resolution:  # no resizing: the network's own argmax (`UNet.argmax`)
                return self.model.argmax(self.model_input(part))
            return upsampled_argmax(self(part), size)

        with self.autocast():
            out = [masks(part.to(self.device)).to(images.device) for part in in_chunks(images, chunk)]
        return torch.cat(out)

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, self.model.config.in_channels, *self.resolution)  # one RGB frame


def simvp_frames(shape: TaskShape) -> dict[str, int]:
    """The frames a SimVP serving `shape` reads and makes in one pass: every input frame in,
    and as many forecast frames out as it reads at most (the rest come from `roll_out`)."""
    return {"in_frames": shape.input_frames, "out_frames": min(shape.future_frames, shape.input_frames)}


def _simvp_network(shape: TaskShape, what: str) -> dict[str, tuple[Any, str]]:
    frames = simvp_frames(shape)
    last = shape.input_frames
    return {"in_frames": (frames["in_frames"], f"{what} 1..{last} go in"),
            "out_frames": (frames["out_frames"], f"{what} {last + 1}.. come out, {frames['out_frames']} a pass")}


def roll_out(model: Callable[[torch.Tensor], torch.Tensor], context: torch.Tensor, *, step: int, frames: int,
             feed: Callable[[torch.Tensor], torch.Tensor], truth: torch.Tensor | None = None,
             feedback: float = 1.0) -> torch.Tensor:
    """The outputs of `frames` future frames, `step` frames per pass of the model (the one roll-out).

    The model keeps its shape (so one-shot weights fine-tune as they are) and only the first
    `step` frames of each pass are used: `feed` turns them into inputs (masks: their argmax;
    frames: themselves), which are appended to the context, and the last `window` inputs go
    in again, until `frames` frames exist. With `truth` (training only), each fed-back chunk
    is, per sample, the model's own with probability `feedback` and the truth otherwise
    (scheduled sampling). Fed-back masks pass no gradient (argmax), so each chunk of a mask
    roll-out learns from its own loss only.

    Args:
        model: inputs (B, T, ...) -> outputs (B, T', ...) with T' >= step.
        context: (B, T, ...), the inputs (masks or frames 1..11).
        step: frames kept from each pass.
        frames: future frames to make.
        feed: outputs (B, n, ...) -> inputs (B, n, ...).
        truth: (B, frames, ...) true future inputs; None feeds back predictions only.
        feedback: chance, per sample and chunk, of feeding back the prediction when `truth` is given.

    Returns:
        Outputs (B, frames, ...).
    """
    window = context.shape[1]
    chunks, made = [], 0
    while made < frames:
        n = min(step, frames - made)
        out = model(context)[:, :n]  # (B, n, ...)
        fed = feed(out)
        if truth is not None and feedback < 1.0:
            use_own = torch.rand(len(fed), *[1] * (fed.ndim - 1), device=fed.device) < feedback
            fed = torch.where(use_own, fed, truth[:, made : made + n])
        context = torch.cat([context, fed.to(context.dtype)], dim=1)[:, -window:]
        chunks.append(out)
        made += n
    return torch.cat(chunks, dim=1)


class FramePredictor(Served):
    """A frame-predicting SimVP served at its working resolution: frames 1..11 in, 12..22 out.

    Args:
        model: the SimVP (the input frames in, RGB; as many out as it reads at most).
        resolution: (H, W) the SimVP works at.
        shape: the task shape: frames beyond one pass are rolled out.
    """

    NETWORK = {"in_channels": (3, "RGB frames"),
               "out_channels": (3, "RGB frames"),
               "input_classes": (0, "the predictor reads frames, not class ids")}

    @classmethod
    def network_for(cls, shape: TaskShape) -> dict[str, tuple[Any, str]]:
        return _simvp_network(shape, "frames")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shape: TaskShape = COMPETITION) -> FramePredictor:
        """Built (untrained) from a run's saved config: `resolution` and the `model` section."""
        model = SimVP(from_dict(SimVPConfig, config["model"], prefix="model.", stored=True))
        return cls(model, resolution=config["resolution"], shape=shape)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames 1..11 (B, 11, 3, H, W) -> float frames 12..22 (B, 11, 3, *resolution)."""
        x = frames_to_model(frames, self.resolution)
        future = self.shape.future_frames
        if future <= self.model.config.out_frames:
            return self.model(x)[:, :future]
        return roll_out(self.model, x, step=self.model.config.out_frames, frames=future, feed=lambda y: y)

    @torch.inference_mode()
    def predict_frames(self, frames: torch.Tensor, *, chunk: int = 8) -> torch.Tensor:
        """The forecast frames from the input frames: uint8 (B, 11, 3, H, W) -> uint8 (B, 11, 3, H, W)
        (in the competition's shape: frames 12..22 from frames 1..11)."""
        n = self.shape.input_frames
        if frames.ndim != 5 or frames.shape[1] != n or frames.shape[2] != 3:
            raise ValueError(f"predict_frames expects uint8 frames (B, {n}, 3, H, W), got shape "
                             f"{tuple(frames.shape)}")
        size = tuple(frames.shape[-2:])
        with self.autocast():
            out = [frames_to_uint8(self(part.to(self.device)).float(), size).to(frames.device)
                   for part in in_chunks(frames, chunk)]
        return torch.cat(out)

    def example_input(self) -> torch.Tensor:
        c = self.model.config
        return torch.zeros(1, c.in_frames, c.in_channels, *self.resolution)


class MaskForecaster(Served):
    """A mask-forecasting SimVP served at its working resolution: masks 1..11 in, 12..22 out.

    Args:
        model: the SimVP (the input masks in through an embedding of 49 ids, 49 logits out).
        resolution: (H, W) the SimVP works at.
        rollout_frames: 0 = one pass makes every forecast mask (rolled out a pass at a time
            where the shape forecasts more frames than one pass makes); k > 0 = `roll_out` k
            frames at a time.
        shape: the task shape.
    """

    NETWORK = {"input_classes": (NUM_CLASSES, "class ids go in through an embedding"),
               "out_channels": (NUM_CLASSES, "one logit per class comes out")}

    def __init__(self, model: SimVP, *, resolution: tuple[int, int], rollout_frames: int = 0,
                 shape: TaskShape = COMPETITION) -> None:
        super().__init__(model, resolution=resolution, shape=shape)
        check_rollout(rollout_frames, shape)
        self.rollout_frames = rollout_frames

    @classmethod
    def network_for(cls, shape: TaskShape) -> dict[str, tuple[Any, str]]:
        return _simvp_network(shape, "masks")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shape: TaskShape = COMPETITION) -> MaskForecaster:
        """Built (untrained) from a run's saved config: `resolution`, `rollout_frames`, `model`."""
        model = SimVP(from_dict(SimVPConfig, config["model"], prefix="model.", stored=True))
        return cls(model, resolution=config["resolution"], rollout_frames=config.get("rollout_frames", 0),
                   shape=shape)

    def forward(self, masks: torch.Tensor, future: torch.Tensor | None = None,
                feedback: float = 1.0) -> torch.Tensor:
        """Masks 1..11 at the working size, long (B, 11, h, w) -> logits (B, 11, 49, h, w).

        `future` (the true masks 12..22) and `feedback` < 1 serve the roll-out's scheduled
        sampling in training only.
        """
        frames, per_pass = self.shape.future_frames, self.model.config.out_frames
        if self.rollout_frames == 0 and frames <= per_pass:
            return self.model(masks)[:, :frames]
        return roll_out(self.model, masks, step=self.rollout_frames or per_pass, frames=frames,
                        feed=lambda logits: logits.argmax(2), truth=future, feedback=feedback)

    @torch.inference_mode()
    def forecast_masks(self, masks: torch.Tensor, *, chunk: int = 4) -> torch.Tensor:
        """The forecast masks from the input masks, at the input's size: long (B, 11, H, W) ->
        long (B, 11, H, W) (in the competition's shape: masks 12..22 from masks 1..11)."""
        n = self.shape.input_frames
        if masks.ndim != 4 or masks.shape[1] != n or masks.is_floating_point():
            raise ValueError(f"forecast_masks expects integer masks (B, {n}, H, W), got {masks.dtype} "
                             f"of shape {tuple(masks.shape)}")
        size = tuple(masks.shape[-2:])
        out = []
        for part in in_chunks(masks, chunk):
            with self.autocast():
                logits = self(masks_to_size(part.to(self.device), self.resolution))  # (b, 11, 49, h, w)
            full = upsampled_argmax(rearrange(logits, "b t k h w -> (b t) k h w"), size)
            out.append(rearrange(full, "(b t) h w -> b t h w", b=len(part)).to(masks.device))
        return torch.cat(out)

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, self.model.config.in_frames, *self.resolution, dtype=torch.long)  # ids


def check_rollout(rollout_frames: int, shape: TaskShape) -> None:
    """`ValueError` unless 0 <= rollout_frames <= the frames `shape` forecasts."""
    if not 0 <= rollout_frames <= shape.future_frames:
        raise ValueError(f"rollout_frames must be in 0..{shape.future_frames}, got {rollout_frames}")
