"""U-Net segmenter (Ronneberger et al., 2015) as the SimVP-UNet paper uses it.

    image (B, 3, H, W) -> encoder: (two 3x3 conv + BN + ReLU, 2x2 max-pool) x depth
      -> bottleneck (two 3x3 conv, 16x the first width) -> decoder: (2x2 transposed conv,
      cat skip, two 3x3 conv) x depth -> head: 1x1 conv -> (B, num_classes, H, W) logits

    model = UNet(UNetConfig(in_channels=3, num_classes=49))   # the paper's 64..512, 1024
    logits = model(torch.rand(1, 3, 160, 240))

The "split" head (not the paper's) is for narrow networks at full resolution, whose last stage
is too thin to tell 48 object classes apart: class 0 is the background and every other class an
object, so

    log p(background) = log sigmoid(-z),  log p(object class k) = log sigmoid(z) + log softmax(o)_k

with z (object or not) from the full-resolution stage, where the edges are, and the 48 object
logits o from the half-resolution stage (twice as wide; with `object_stages` > 1 also from the
coarser decoder stages below it, upsampled to half resolution and stacked: they see the whole
object, which tells a cube from a cylinder), upsampled bilinearly. With
`object_factors` (e.g. [3, 2, 8]: shape, material, color, the task's classes in row-major order)
the object class is a product of independent factors, log p(k) = sum of each factor's log softmax,
so that every object pixel teaches every factor (13 outputs instead of 48). The output is
log-probabilities, which are logits too: cross-entropy and argmax read them unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from .layers import bilinear_at, crop_to, pad_to_multiple

# ---------------------------------------------------------------------------------------------
# Config


@dataclass
class UNetConfig:
    """Everything needed to build a `UNet`; `dataclasses.asdict(config)` goes into checkpoints.

    Args:
        in_channels: channels of the input image (3 for RGB).
        num_classes: output logit channels (49 classes).
        base_channels: width of the first stage; stage i has base * 2**i, the bottleneck
            base * 2**depth (64 gives the paper's 64, 128, 256, 512 and 1024; 16 is a CPU size).
        depth: number of down-sampling stages; H and W are padded to a multiple of 2**depth.
        head: "plain" (one 1x1 convolution on the last stage: the paper's) or "split"
            (background vs object at full resolution, which object at half resolution; see the
            module docstring).
        object_factors: with the split head, the sizes of independent factors whose row-major
            product enumerates the object classes 1.. (e.g. [3, 2, 8]); empty: one softmax over
            all object classes.
        object_stages: with the split head, how many decoder stages the object logits read,
            from the half-resolution one down (1: that stage alone; at most `depth`).
    """

    in_channels: int = 3
    num_classes: int = 49
    base_channels: int = 64
    depth: int = 4
    head: Literal["plain", "split"] = "plain"
    object_factors: list[int] = field(default_factory=list)
    object_stages: int = 1

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "base_channels", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"UNetConfig.{name} must be an integer >= 1, got {value!r}")
        if self.head not in ("plain", "split"):
            raise ConfigError(f"UNetConfig.head must be 'plain' or 'split', got {self.head!r}")
        if self.head == "split" and self.num_classes < 3:
            raise ConfigError("UNetConfig.head 'split' needs a background and at least two object classes")
        if not isinstance(self.object_stages, int) or not 1 <= self.object_stages <= self.depth:
            raise ConfigError(f"UNetConfig.object_stages must be an integer in 1..depth ({self.depth}), "
                              f"got {self.object_stages!r}")
        if self.object_stages > 1 and self.head != "split":
            raise ConfigError("UNetConfig.object_stages needs head 'split'")
        if self.object_factors:
            if self.head != "split":
                raise ConfigError("UNetConfig.object_factors needs head 'split'")
            if any(not isinstance(f, int) or f < 2 for f in self.object_factors) or \
                    math.prod(self.object_factors) != self.num_classes - 1:
                raise ConfigError(f"UNetConfig.object_factors must be integers >= 2 whose product is "
                                  f"num_classes - 1 = {self.num_classes - 1}, got {list(self.object_factors)}")

    @property
    def factor_sizes(self) -> list[int]:
        """The split head's object logits, block by block: `object_factors`, or one block of all
        num_classes - 1 object classes."""
        return list(self.object_factors) or [self.num_classes - 1]


# ---------------------------------------------------------------------------------------------
# Blocks


class DoubleConv(nn.Module):
    """(3x3 conv -> BatchNorm -> ReLU) twice; the convs have no bias since BatchNorm adds one."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class UpStage(nn.Module):
    """2x2 transposed conv halving the channels, cat with the skip, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


# ---------------------------------------------------------------------------------------------
# The model


class UNet(nn.Module):
    """U-Net segmenter: (B, C_in, H, W) floats in [0, 1] -> (B, num_classes, H, W) logits.

    Any H and W work: the input is padded (replicate) to a multiple of 2**depth and the
    logits are cropped back.

    Args:
        config: the architecture; see `UNetConfig`.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        widths = [c.base_channels * 2**i for i in range(c.depth + 1)]
        self.encoder = nn.ModuleList(
            DoubleConv(c.in_channels if i == 0 else widths[i - 1], widths[i])
            for i in range(c.depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1])
        self.decoder = nn.ModuleList(
            UpStage(widths[i + 1], widths[i]) for i in reversed(range(c.depth))
        )
        if c.head == "plain":
            self.head = nn.Conv2d(widths[0], c.num_classes, 1)
        else:
            self.head = nn.Conv2d(widths[0], 1, 1)  # object or background, at full resolution
            # which object, at H / 2, from the half-resolution stage and the coarser ones
            self.head_objects = nn.Conv2d(sum(widths[1:1 + c.object_stages]), sum(c.factor_sizes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) floats -> (B, num_classes, H, W) logits."""
        height, width = x.shape[-2:]
        stages = self._stages(x)
        if self.config.head == "plain":
            return crop_to(self.head(stages[-1]), height, width)
        return crop_to(self._split_head(stages), height, width)

    @torch.no_grad()
    def argmax(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) floats -> long (B, H, W) class ids: `forward(x).argmax(1)`, computed
        for the factored split head without its num_classes full-resolution log-probabilities,
        and only where an object can win: the likeliest object class takes each factor's likeliest value,
        and it wins where log p(object) + its log-probability beats log p(background). That
        log-probability is at most 0, so wherever z <= 0 (p(object) <= 1/2) the background
        wins; the object logits are upsampled (bilinearly, as `forward` does) at the other
        pixels alone."""
        if not self.config.object_factors:
            return self(x).argmax(1)
        height, width = x.shape[-2:]
        stages = self._stages(x)
        z = self.head(stages[-1])[:, 0]  # (B, H, W) at the padded size
        out = torch.zeros(z.shape, dtype=torch.long, device=z.device)
        flat = (z > 0).flatten().nonzero().squeeze(1)
        if len(flat):
            objects = bilinear_at(self._half_object_logits(stages), z.shape[-2:], flat)  # (M, outputs)
            best, index = None, None
            for part in objects.split(list(self.config.object_factors), dim=1):
                value, arg = part.max(1)
                # the factor's largest log-probability, max - logsumexp, reusing the max
                value = -(part - value.unsqueeze(1)).exp().sum(1).log()
                best = value if best is None else best + value
                index = arg if index is None else index * part.shape[1] + arg
            z = z.flatten()[flat]
            out.view(-1)[flat] = torch.where(F.logsigmoid(z) + best > F.logsigmoid(-z), index + 1, 0)
        return crop_to(out, height, width).contiguous()

    def split_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The split head's raw outputs: (B, C_in, H, W) floats -> z (B, 1, H, W), object vs
        background, and the object logits (B, sum(object_factors) or num_classes - 1, H, W), each
        factor's block in order. `forward` combines them into log-probabilities; training reads
        them directly (`train.segmenter.split_cross_entropy`: the same loss, without building
        num_classes full-resolution channels)."""
        if self.config.head != "split":
            raise ConfigError("UNet.split_logits needs head 'split'")
        height, width = x.shape[-2:]
        z, objects = self._split_logits(self._stages(x))
        return crop_to(z, height, width), crop_to(objects, height, width)

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The bottleneck's output, then every decoder stage's, coarse to fine (padded size)."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or not x.is_floating_point():
            raise DataError(
                f"UNet expects (B, {self.config.in_channels}, H, W) floats, "
                f"got {x.dtype} of shape {tuple(x.shape)}"
            )
        x = pad_to_multiple(x, 2**self.config.depth)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)  # (B, 16 * base, H / 16, W / 16) at depth 4
        stages = [x]
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip)
            stages.append(x)
        return stages

    def _split_logits(self, stages: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder outputs -> z (B, 1, H, W), object or not, and the object logits (B, outputs,
        H, W), upsampled from half resolution."""
        z = self.head(stages[-1])
        objects = F.interpolate(self._half_object_logits(stages), size=z.shape[-2:], mode="bilinear",
                                align_corners=False)
        return z, objects

    def _half_object_logits(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """Decoder outputs -> the object logits at half resolution (B, outputs, H / 2, W / 2):
        `head_objects` (1x1) of the half-resolution stage concatenated with the coarser ones
        upsampled to it. A 1x1 convolution commutes with bilinear upsampling (both linear, the
        upsampling's weights sum to 1), so each coarser stage goes through its slice of the
        weights first and only `outputs` channels are upsampled, with no concatenation."""
        half = stages[-2]
        parts = [half, *reversed(stages[len(stages) - 1 - self.config.object_stages:-2])]
        weights = self.head_objects.weight.split([part.shape[1] for part in parts], dim=1)
        out = F.conv2d(half, weights[0], self.head_objects.bias)
        for part, weight in zip(parts[1:], weights[1:], strict=True):
            out = out + F.interpolate(F.conv2d(part, weight), size=half.shape[-2:], mode="bilinear",
                                      align_corners=False)
        return out

    def _split_head(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """Decoder outputs, coarse to fine -> (B, num_classes, H, W) log-probabilities."""
        z, objects = self._split_logits(stages)
        return torch.cat([F.logsigmoid(-z), F.logsigmoid(z) + self._object_log_probs(objects)], dim=1)

    def _object_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, outputs, H, W) -> (B, num_classes - 1, H, W) log p(object class | object)."""
        out = None
        for part in logits.split(self.config.factor_sizes, dim=1):  # row-major: the last varies fastest
            part = part.log_softmax(1)
            out = part if out is None else (out[:, :, None] + part[:, None]).flatten(1, 2)
        return out
