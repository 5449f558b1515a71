"""SimVP: video prediction with convolutions only (Gao et al., CVPR 2022) and its gSTA translator.

    frames (B, T_in, C_in, H, W) or class ids (B, T_in, H, W)
      -> encoder     every frame alone, 3x3 conv blocks, 4x smaller (8x with extra_downsample)
      -> translator  all frames stacked along channels: Inception U-Net ("incep", SimVP v1)
                     or gated spatiotemporal attention ("gsta", SimVPv2)
      -> decoder     every frame alone, back to full size, skip from the first encoder block
      -> readout     1x1 conv to C_out channels (frames, or class logits)
      -> (B, T_out, C_out, H, W)   the first T_out of the T_in predicted frames

Longer horizons are rolled out by the caller, which feeds predictions back
(`simvp_unet.inference.roll_out`).

    model = SimVP(SimVPConfig(in_frames=11, out_frames=11, in_channels=3, out_channels=3))
    y = model(torch.rand(2, 11, 3, 160, 240))

The paper's symbols map to config fields: hid_S = spatial_channels, hid_T = temporal_channels,
N_S = spatial_blocks, N_T = temporal_blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import ConfigError, DataError
from .layers import crop_to, pad_to_multiple

# ---------------------------------------------------------------------------------------------
# Config


@dataclass
class SimVPConfig:
    """Everything needed to build a `SimVP`; `dataclasses.asdict(config)` goes into checkpoints.

    Args:
        in_frames: frames the model reads (T_in).
        out_frames: frames it returns (T_out <= T_in): the first T_out of the T_in frames that
            one pass predicts.
        in_channels: channels of a float input frame (3 for RGB); unused when `input_classes > 0`.
        out_channels: channels of an output frame (3 for RGB, 49 for class logits).
        input_classes: 0 for float input; N > 0 for integer class-id input (B, T, H, W) with ids
            0..N-1, embedded by `nn.Embedding(N, embed_dim)` before the encoder.
        embed_dim: size of the class embedding (used only when `input_classes > 0`).
        spatial_channels: channels of the encoder and decoder (hid_S); even (GroupNorm of 2 groups).
        temporal_channels: channels inside the translator (hid_T).
        spatial_blocks: conv blocks in the encoder and in the decoder (N_S); strides 1, 2, 1, 2, ...
        temporal_blocks: translator blocks (N_T, at least 2): for "incep" that many down and that
            many up Inception blocks; for "gsta" a plain stack of that many gSTA blocks.
        translator: "incep" (SimVP v1, as in the paper) or "gsta" (SimVPv2 gated spatiotemporal
            attention, stronger per parameter).
        incep_kernels: kernel sizes of the Inception branches ("incep" only).
        groups: groups of the Inception branch convolutions ("incep" only); falls back to 1 for a
            branch whose channels it does not divide, as the original does.
        mlp_ratio: width of the gSTA MLP relative to its input ("gsta" only).
        extra_downsample: add one stride-2 conv block before the encoder and one transposed one
            after the decoder, which quarters the translator's cost at 160 x 240.
        copy_prior: class-id models only (`input_classes == out_channels`): 0 = plain logits;
            c > 0 = add a learnable scale (starting at c) times the one-hot of the last input
            frame to every output frame's logits, so that the untrained model already answers
            "the last mask again" and training learns the motion on top of it.
    """

    in_frames: int = 11
    out_frames: int = 11
    in_channels: int = 3
    out_channels: int = 3
    input_classes: int = 0
    embed_dim: int = 16
    spatial_channels: int = 64
    temporal_channels: int = 512
    spatial_blocks: int = 4
    temporal_blocks: int = 8
    translator: Literal["incep", "gsta"] = "incep"
    incep_kernels: tuple[int, ...] = (3, 5, 7, 11)
    groups: int = 8
    mlp_ratio: float = 8.0
    extra_downsample: bool = False
    copy_prior: float = 0.0

    def __post_init__(self) -> None:
        self.incep_kernels = tuple(self.incep_kernels)
        minimum = {
            "in_frames": 1,
            "out_frames": 1,
            "in_channels": 1,
            "out_channels": 1,
            "input_classes": 0,
            "embed_dim": 1,
            "spatial_channels": 2,
            "temporal_channels": 2,
            "spatial_blocks": 1,
            "temporal_blocks": 2,
            "groups": 1,
        }
        for name, low in minimum.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"SimVPConfig.{name} must be an integer >= {low}, got {value!r}")
        if self.spatial_channels % 2:
            raise ConfigError(
                f"SimVPConfig.spatial_channels must be even (GroupNorm with 2 groups), "
                f"got {self.spatial_channels}"
            )
        if self.translator not in ("incep", "gsta"):
            raise ConfigError(
                f"SimVPConfig.translator must be 'incep' or 'gsta', got {self.translator!r}"
            )
        if not self.incep_kernels or any(k < 1 or k % 2 == 0 for k in self.incep_kernels):
            raise ConfigError(
                "SimVPConfig.incep_kernels must be odd positive sizes, "
                f"got {list(self.incep_kernels)}"
            )
        if not self.mlp_ratio > 0:
            raise ConfigError(f"SimVPConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if self.copy_prior < 0 or (self.copy_prior and self.out_channels != self.input_classes):
            raise ConfigError(
                f"SimVPConfig.copy_prior must be >= 0 and needs class-id input with "
                f"input_classes == out_channels, got copy_prior={self.copy_prior!r}, "
                f"input_classes={self.input_classes}, out_channels={self.out_channels}"
            )
        if self.out_frames > self.in_frames:
            raise ConfigError(
                f"SimVPConfig.out_frames ({self.out_frames}) must be <= in_frames "
                f"({self.in_frames}): one pass predicts in_frames frames; roll the model out "
                "for more (simvp_unet.inference.roll_out)"
            )

    @property
    def downsample_factor(self) -> int:
        """H and W are padded to a multiple of this (2 per stride-2 block)."""
        return 2 ** (self.spatial_blocks // 2 + int(self.extra_downsample))


# ---------------------------------------------------------------------------------------------
# Encoder and decoder (per frame)


class ConvBlock(nn.Module):
    """3x3 convolution (transposed when it up-samples) -> GroupNorm(2) -> LeakyReLU(0.2)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, upsample: bool = False
    ):
        super().__init__()
        if upsample and stride == 2:
            # output_padding=1 makes the output exactly twice the input size
            self.conv = nn.ConvTranspose2d(
                in_channels, out_channels, 3, stride=2, padding=1, output_padding=1
            )
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(2, out_channels)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def _strides(blocks: int) -> list[int]:
    return [1 + i % 2 for i in range(blocks)]  # 1, 2, 1, 2, ...


class Encoder(nn.Module):
    """Conv blocks with strides 1, 2, 1, 2, ...; returns the latent and the first block's output."""

    def __init__(self, in_channels: int, channels: int, blocks: int, *, extra_downsample: bool):
        super().__init__()
        strides = ([2] if extra_downsample else []) + _strides(blocks)
        self.skip_index = int(extra_downsample)
        self.blocks = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else channels, channels, stride=s)
            for i, s in enumerate(strides)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.skip_index:
                skip = x
        return x, skip


class Decoder(nn.Module):
    """Mirror of the encoder; the block matching the skip's size reads cat(x, skip)."""

    def __init__(self, channels: int, blocks: int, *, extra_downsample: bool):
        super().__init__()
        strides = _strides(blocks)[::-1]
        self.blocks = nn.ModuleList(
            ConvBlock(
                2 * channels if i == blocks - 1 else channels, channels, stride=s, upsample=True
            )
            for i, s in enumerate(strides)
        )
        if extra_downsample:
            self.blocks.append(ConvBlock(channels, channels, stride=2, upsample=True))
        self.skip_index = blocks - 1

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            if i == self.skip_index:
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        return x


# ---------------------------------------------------------------------------------------------
# Translator "incep": the U-shaped Inception network of SimVP v1


class GroupedConvBlock(nn.Module):
    """k x k grouped convolution -> GroupNorm(groups) -> LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, groups: int):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            groups = 1
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups)
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class InceptionBlock(nn.Module):
    """1x1 reduction, then the sum of one grouped conv branch per kernel size (no residual)."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        kernels: tuple[int, ...],
        groups: int,
    ):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, mid_channels, 1)
        self.branches = nn.ModuleList(
            GroupedConvBlock(mid_channels, out_channels, k, groups) for k in kernels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class InceptionTranslator(nn.Module):
    """`depth` down blocks, then `depth` up blocks; all up blocks but the first read cat(x, skip)."""

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_channels: int,
        depth: int,
        kernels: tuple[int, ...],
        groups: int,
    ):
        super().__init__()
        mid = hidden // 2

        def block(cin: int, cout: int) -> InceptionBlock:
            return InceptionBlock(cin, mid, cout, kernels, groups)

        self.down = nn.ModuleList(
            [block(in_channels, hidden)] + [block(hidden, hidden) for _ in range(depth - 1)]
        )
        self.up = nn.ModuleList(
            [block(hidden, hidden)]
            + [block(2 * hidden, hidden) for _ in range(depth - 2)]
            + [block(2 * hidden, out_channels)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](x)
        for block, skip in zip(self.up[1:], reversed(skips[:-1]), strict=True):
            x = block(torch.cat([x, skip], dim=1))
        return x


# ---------------------------------------------------------------------------------------------
# Translator "gsta": gated spatiotemporal attention of SimVPv2


class GatedAttention(nn.Module):
    """1x1 -> GELU -> gate -> 1x1, plus shortcut; the gate is sigmoid(g) * f with (f, g) computed
    by depthwise 5x5 -> depthwise 7x7 (dilation 3, a 19x19 receptive field) -> 1x1."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.local = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.dilated = nn.Conv2d(dim, dim, 7, padding=9, dilation=3, groups=dim)
        self.to_gate = nn.Conv2d(dim, 2 * dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.act(self.proj_in(x))
        f, g = self.to_gate(self.dilated(self.local(u))).chunk(2, dim=1)
        return x + self.proj_out(torch.sigmoid(g) * f)


class ConvMLP(nn.Module):
    """1x1 widening -> depthwise 3x3 -> GELU -> 1x1 back."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class GSTABlock(nn.Module):
    """x + s1 * attn(BN(x)), then x + s2 * mlp(BN(x)); a 1x1 conv after if the width changes."""

    def __init__(self, in_channels: int, out_channels: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.attn = GatedAttention(in_channels)
        self.norm2 = nn.BatchNorm2d(in_channels)
        self.mlp = ConvMLP(in_channels, int(in_channels * mlp_ratio))
        # small layer scales start every block close to the identity, which keeps deep stacks stable
        self.scale1 = nn.Parameter(torch.full((in_channels, 1, 1), 1e-2))
        self.scale2 = nn.Parameter(torch.full((in_channels, 1, 1), 1e-2))
        self.reduce = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.attn(self.norm1(x))
        x = x + self.scale2 * self.mlp(self.norm2(x))
        return self.reduce(x)


class GSTATranslator(nn.Module):
    """A plain stack of gSTA blocks: in -> hidden, hidden -> hidden, ..., hidden -> out."""

    def __init__(
        self, in_channels: int, hidden: int, out_channels: int, depth: int, mlp_ratio: float
    ):
        super().__init__()
        widths = [in_channels] + [hidden] * (depth - 1) + [out_channels]
        self.blocks = nn.Sequential(
            *(GSTABlock(a, b, mlp_ratio) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


# ---------------------------------------------------------------------------------------------
# The model


class SimVP(nn.Module):
    """SimVP frame (or class-logit) predictor; see the module docstring for the data flow.

    The "gsta" variant keeps the v1 encoder and decoder (conv + GroupNorm + LeakyReLU,
    transposed-conv up-sampling), not the SiLU/PixelShuffle ones of the public v2 code.
    H and W need not be multiples of `config.downsample_factor`: the input is padded at the
    bottom/right (replicate) and the output cropped back.

    Args:
        config: the architecture; see `SimVPConfig`.
    """

    def __init__(self, config: SimVPConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.input_classes, c.embed_dim) if c.input_classes else None
        frame_channels = c.embed_dim if c.input_classes else c.in_channels
        self.encoder = Encoder(
            frame_channels,
            c.spatial_channels,
            c.spatial_blocks,
            extra_downsample=c.extra_downsample,
        )
        stacked = c.in_frames * c.spatial_channels
        if c.translator == "incep":
            self.translator = InceptionTranslator(
                stacked,
                c.temporal_channels,
                stacked,
                c.temporal_blocks,
                c.incep_kernels,
                c.groups,
            )
        else:
            self.translator = GSTATranslator(
                stacked, c.temporal_channels, stacked, c.temporal_blocks, c.mlp_ratio
            )
        self.decoder = Decoder(
            c.spatial_channels, c.spatial_blocks, extra_downsample=c.extra_downsample
        )
        self.readout = nn.Conv2d(c.spatial_channels, c.out_channels, 1)
        self.copy_prior = nn.Parameter(torch.tensor(float(c.copy_prior))) if c.copy_prior else None

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if c.input_classes:
            expected = f"(B, {c.in_frames}, H, W) integer class ids"
            ok = x.dim() == 4 and not x.is_floating_point() and x.shape[1] == c.in_frames
        else:
            expected = f"(B, {c.in_frames}, {c.in_channels}, H, W) floats"
            ok = (
                x.dim() == 5
                and x.is_floating_point()
                and x.shape[1] == c.in_frames
                and x.shape[2] == c.in_channels
            )
        if not ok:
            raise DataError(
                f"SimVP expects {expected} (in_frames={c.in_frames}), "
                f"got {x.dtype} of shape {tuple(x.shape)}"
            )
        if c.input_classes and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            if bool(((x < 0) | (x >= c.input_classes)).any()):
                raise DataError(
                    f"class ids must lie in 0..{c.input_classes - 1} (input_classes), "
                    f"got values from {int(x.min())} to {int(x.max())}"
                )

    def _frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Float input unchanged, class ids (B, T, H, W) embedded to (B, T, embed_dim, H, W)."""
        if self.embed is None:
            return x
        return rearrange(self.embed(x), "b t h w e -> b t e h w")

    def _predict(self, frames: torch.Tensor) -> torch.Tensor:
        """One pass: (B, T_in, C, H, W) features -> (B, T_in, C_out, H, W)."""
        batch, _, _, height, width = frames.shape
        x = rearrange(frames, "b t c h w -> (b t) c h w")
        x = pad_to_multiple(x, self.config.downsample_factor)
        latent, skip = self.encoder(x)  # (B*T_in, S, H/4, W/4), (B*T_in, S, H, W)
        z = self.translator(rearrange(latent, "(b t) s h w -> b (t s) h w", b=batch))
        z = rearrange(z, "b (t s) h w -> (b t) s h w", s=self.config.spatial_channels)
        y = self.readout(self.decoder(z, skip))  # (B*T_in, C_out, H_padded, W_padded)
        y = crop_to(y, height, width).contiguous()  # plain strides even for a channels_last model
        return rearrange(y, "(b t) c h w -> b t c h w", b=batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T_in, C_in, H, W) floats or (B, T_in, H, W) class ids -> (B, T_out, C_out, H, W)."""
        self._check_input(x)
        y = self._predict(self._frame_features(x))[:, : self.config.out_frames]
        if self.copy_prior is None:
            return y
        last = F.one_hot(x[:, -1], self.config.out_channels)  # (B, H, W, K): the last input's ids
        return y + self.copy_prior * rearrange(last, "b h w k -> b 1 k h w").to(y.dtype)
