"""U-Net segmenter (Ronneberger et al., 2015) as the SimVP-UNet paper uses it.

    image (B, 3, H, W) -> encoder: (two 3x3 conv + BN + ReLU, 2x2 max-pool) x depth
      -> bottleneck (two 3x3 conv, 16x the first width) -> decoder: (2x2 transposed conv,
      cat skip, two 3x3 conv) x depth -> head: 1x1 conv -> (B, num_classes, H, W) logits

    model = UNet(UNetConfig(in_channels=3, num_classes=49))   # the paper's 64..512, 1024
    logits = model(torch.rand(1, 3, 160, 240))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, DataError
from .layers import crop_to, pad_to_multiple

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
    """

    in_channels: int = 3
    num_classes: int = 49
    base_channels: int = 64
    depth: int = 4

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "base_channels", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"UNetConfig.{name} must be an integer >= 1, got {value!r}")


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
        self.head = nn.Conv2d(widths[0], c.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) floats -> (B, num_classes, H, W) logits."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or not x.is_floating_point():
            raise DataError(
                f"UNet expects (B, {self.config.in_channels}, H, W) floats, "
                f"got {x.dtype} of shape {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, 2**self.config.depth)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)  # (B, 16 * base, H / 16, W / 16) at depth 4
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip)
        return crop_to(self.head(x), height, width)
