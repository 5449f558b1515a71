"""Inference-only rewrites of the models: the same function up to float rounding, faster.

    fast = fold_for_inference(model)             # an eval-only copy; `model` is left as it was

What is folded (each kept because benchmarks/models.py measured it faster:
benchmarks/results/models_avx2.md, models_native.md and the GPU tables; tests/test_speed.py checks
that the outputs agree with the original's up to float rounding):

- U-Net: every BatchNorm goes into the convolution before it, and the ReLU after it runs
  inside that convolution (a oneDNN post-op): one pass over the activations instead of three.
  The decoder's concatenations of skip and upsampled features are gone: the convolution after
  each is two, one per input, the second adding the first's output as a post-op.
- gSTA: the BatchNorm before each block's first 1x1 convolutions goes into them, the layer
  scales into the 1x1 convolutions they multiply, the attention's shortcut through the
  BatchNorm becomes a per-channel multiply-add, and GELU runs inside the convolution before it.
- On a CPU with oneDNN, every convolution's weights are reordered once, here, to the layout
  oneDNN computes with (eager PyTorch reorders them on every call), and activations are
  channels_last. Under autocast, or on another device, the folded weights go through the
  ordinary convolutions instead.

- Inception blocks: GroupNorm normalises with statistics of the data, so nothing folds into
  the branch convolutions (conv -> GroupNorm -> LeakyReLU, summed after the activation), and
  they stay four convolutions. Their outputs are stacked so that one GroupNorm, one LeakyReLU
  and one sum do the work of four, four and three. Computing the branches as one grouped
  convolution with every kernel zero-padded to 11 x 11 is the same function too, but it does
  more than twice the multiply-adds (4 x 121 taps instead of 9 + 25 + 49 + 121) and measured
  slower than the original block on an AVX2 CPU (benchmarks/results/models_avx2.md); it is not
  used.

The oneDNN calls go to private operators of torch (`torch.ops.mkldnn._convolution_pointwise`
and the three others in `_PRIVATE_OPS`), which another torch version may lack or change.
`private_ops_available` checks once per process that each exists and computes what the public
convolutions compute; where one does not, every folded convolution goes through F.conv2d
(F.conv_transpose2d) and its activation: the same outputs, without the oneDNN speed-up.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

from .simvp import GSTABlock, SimVP
from .unet import UNet, UpStage

# ---------------------------------------------------------------------------------------------
# Linear maps folded into convolutions


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = a * x + b per channel."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return a, bn.bias - a * bn.running_mean


def fold_bn_after(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of bn(conv(x)) as one convolution."""
    a, b = _bn_affine(bn)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(a)
    return conv.weight * a[:, None, None, None], a * bias + b


def fold_bn_before(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of conv(bn(x)) as one convolution; `conv` must be 1x1 and ungrouped (with
    padding, the zeros it adds would no longer pass through the BatchNorm's shift)."""
    assert conv.kernel_size == (1, 1) and conv.groups == 1 and conv.padding == (0, 0)
    a, b = _bn_affine(bn)
    weight = conv.weight * a[None, :, None, None]
    return weight, conv.bias + (conv.weight[:, :, 0, 0] @ b)


# ---------------------------------------------------------------------------------------------
# Convolutions with their weights in oneDNN's layout

# The private oneDNN operators `FoldedConv` calls, each with the overloads it calls. torch does
# not promise them from one version to the next; `private_ops_available` checks them.
_PRIVATE_OPS: dict[str, tuple[str, ...]] = {
    "_convolution_pointwise": ("default", "binary"),
    "_reorder_convolution_weight": ("default",),
    "_convolution_transpose_pointwise": ("default",),
    "_reorder_convolution_transpose_weight": ("default",),
}


@functools.cache
def private_ops_available() -> bool:
    """Whether folded models may call the private oneDNN operators (checked once per process).

    True where torch has oneDNN, every operator and overload in `_PRIVATE_OPS` resolves, and
    each kind of call the folded models make computes, on a tiny float32 input, what F.conv2d
    (F.conv_transpose2d) and the activation compute. Elsewhere folded models run their
    convolutions through those public functions: the same outputs, without the speed-up.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        for name, overloads in _PRIVATE_OPS.items():
            packet = getattr(torch.ops.mkldnn, name)
            for overload in overloads:
                getattr(packet, overload)
        return _onednn_matches_plain()
    except Exception:  # noqa: BLE001 - an operator missing, renamed or called otherwise: not used
        return False


def _onednn_matches_plain() -> bool:
    """Every kind of call the folded models send to oneDNN (a convolution alone, with GELU or
    ReLU, with an added input and ReLU; a transposed convolution) on a tiny input, against the
    same call through F.conv2d (F.conv_transpose2d)."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float32) - 0.5

    # skip_init: the layers give their geometry only, and the global generator is not drawn from
    conv = nn.utils.skip_init(nn.Conv2d, 4, 4, 3, padding=1)
    up = nn.utils.skip_init(nn.ConvTranspose2d, 4, 4, 2, stride=2)
    x, other = rand(1, 4, 6, 6), rand(1, 4, 6, 6)
    cases = [
        (FoldedConv(conv, rand(4, 4, 3, 3), rand(4)), None),
        (FoldedConv(conv, rand(4, 4, 3, 3), rand(4), activation="gelu"), None),
        (FoldedConv(conv, rand(4, 4, 3, 3), rand(4), activation="relu"), None),
        (FoldedConv(conv, rand(4, 4, 3, 3), rand(4), activation="relu"), other),
        (FoldedConv(up, rand(4, 4, 2, 2), rand(4)), None),
    ]
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        for module, add in cases:
            for _ in range(2):  # the first call packs the weights, the second uses them
                if not torch.allclose(module._onednn(x, add), module._plain(x, add), rtol=0, atol=1e-5):
                    return False
    return True


def _packable(x: torch.Tensor) -> bool:
    """True where the oneDNN kernels run: float32 on a CPU, outside autocast, with the private
    operators at hand (`private_ops_available`)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and private_ops_available()
    )


class FoldedConv(nn.Module):
    """A convolution (or transposed convolution) with fixed weights and an optional activation
    ("relu", "leaky_relu" or "gelu") computed inside it.

    On a float32 CPU input the weights are reordered once, at the first call, and the call goes
    to oneDNN with the activation as a post-op; elsewhere, or without the private operators
    (`private_ops_available`), it is F.conv2d (F.conv_transpose2d) followed by the activation.
    """

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, *, activation: str = "none",
                 negative_slope: float = 0.0):
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        weight = conv.weight if weight is None else weight
        bias = conv.bias if bias is None else bias
        if bias is None:
            bias = torch.zeros(weight.shape[1] * conv.groups if self.transposed else weight.shape[0])
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.output_padding = list(conv.output_padding) if self.transposed else None
        self.activation, self.negative_slope = activation, negative_slope
        self._packed: torch.Tensor | None = None  # oneDNN-layout weights, made at the first call

    def __getstate__(self) -> dict:
        # oneDNN-layout tensors cannot be copied or saved: a copy packs its weights again
        return {**self.__dict__, "_packed": None}

    def _act(self, y: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return F.relu(y, inplace=True)
        if self.activation == "leaky_relu":
            return F.leaky_relu(y, self.negative_slope, inplace=True)
        if self.activation == "gelu":
            return F.gelu(y)
        return y

    def _scalars(self) -> list[float]:
        return [self.negative_slope] if self.activation == "leaky_relu" else []

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution of `x`, plus `add` (of the output's shape) when given, then the
        activation; on oneDNN the addition is a post-op too (not for transposed convolutions)."""
        if add is not None and self.transposed:
            raise ValueError("FoldedConv: add is for convolutions, not transposed ones")
        return self._onednn(x, add) if _packable(x) else self._plain(x, add)

    def _plain(self, x: torch.Tensor, add: torch.Tensor | None) -> torch.Tensor:
        """`forward` through the public convolutions (any device, dtype and autocast)."""
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                   self.output_padding, self.groups, self.dilation)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                         self.groups)
        return self._act(y if add is None else y + add)

    def _onednn(self, x: torch.Tensor, add: torch.Tensor | None) -> torch.Tensor:
        """`forward` through the private oneDNN operators (float32 on a CPU, outside autocast)."""
        x = x.contiguous(memory_format=torch.channels_last)
        mkldnn = torch.ops.mkldnn
        algorithm = "none" if self.activation == "gelu" else ""  # exact (erf) GELU
        if add is not None:
            self._pack(x)
            return mkldnn._convolution_pointwise.binary(
                x, add.contiguous(memory_format=torch.channels_last), self._packed, self.bias,
                self.padding, self.stride, self.dilation, self.groups, "add", 1.0,
                None if self.activation == "none" else self.activation, self._scalars(), algorithm)
        if self.transposed:
            if self._packed is None:
                self._packed = mkldnn._reorder_convolution_transpose_weight.default(
                    self.weight, self.padding, self.output_padding, self.stride, self.dilation,
                    self.groups, list(x.shape))
            return mkldnn._convolution_transpose_pointwise.default(
                x, self._packed, self.bias, self.padding, self.output_padding, self.stride,
                self.dilation, self.groups, self.activation, self._scalars(), algorithm)
        self._pack(x)
        return mkldnn._convolution_pointwise.default(
            x, self._packed, self.bias, self.padding, self.stride, self.dilation, self.groups,
            self.activation, self._scalars(), algorithm)

    def _pack(self, x: torch.Tensor) -> None:
        if self._packed is None:
            self._packed = torch.ops.mkldnn._reorder_convolution_weight.default(
                self.weight, self.padding, self.stride, self.dilation, self.groups, list(x.shape))


# ---------------------------------------------------------------------------------------------
# The models


class FoldedGSTABlock(nn.Module):
    """`GSTABlock` with its BatchNorms and layer scales folded:

        x + s1 * attn(bn1(x)) = (1 + s1 * a1) * x + s1 * b1 + s1 * proj_out(gate(bn1(x)))
        x + s2 * mlp(bn2(x))  = x + s2 * fc2(gelu(dwconv(fc1(bn2(x)))))

    with bn1 folded into proj_in, s1 and s1 * b1 into proj_out, bn2 into fc1 and s2 into fc2.
    """

    def __init__(self, block: GSTABlock):
        super().__init__()
        attn, mlp = block.attn, block.mlp
        s1, s2 = block.scale1.flatten(), block.scale2.flatten()
        a1, b1 = _bn_affine(block.norm1)
        self.proj_in = FoldedConv(attn.proj_in, *fold_bn_before(block.norm1, attn.proj_in),
                                  activation="gelu")
        self.local = FoldedConv(attn.local)
        self.dilated = FoldedConv(attn.dilated)
        self.to_gate = FoldedConv(attn.to_gate)
        self.proj_out = FoldedConv(attn.proj_out, attn.proj_out.weight * s1[:, None, None, None],
                                   s1 * (attn.proj_out.bias + b1))
        self.register_buffer("shortcut", (1 + s1 * a1).detach().clone()[None, :, None, None])
        self.fc1 = FoldedConv(mlp.fc1, *fold_bn_before(block.norm2, mlp.fc1))
        self.dwconv = FoldedConv(mlp.dwconv, activation="gelu")
        self.fc2 = FoldedConv(mlp.fc2, mlp.fc2.weight * s2[:, None, None, None], s2 * mlp.fc2.bias)
        self.reduce = block.reduce if isinstance(block.reduce, nn.Identity) else FoldedConv(block.reduce)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.to_gate(self.dilated(self.local(self.proj_in(x)))).chunk(2, dim=1)
        x = torch.addcmul(self.proj_out(torch.sigmoid(g) * f), x, self.shortcut)
        x = x + self.fc2(self.dwconv(self.fc1(x)))
        return self.reduce(x)


def _conv_bn_relu(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> FoldedConv:
    """conv -> BatchNorm -> ReLU of a U-Net block as one folded convolution."""
    return FoldedConv(conv, *fold_bn_after(conv, bn), activation="relu")


class FoldedUpStage(nn.Module):
    """`UpStage` without its concatenation: the first convolution of cat(skip, up(x)) is split by
    input channels, conv(cat(skip, u)) = conv_skip(skip) + conv_up(u), the sum and the ReLU
    computed inside the second one: copying both inputs into one tensor cost about as much as
    the convolution itself at full resolution (the segmenter's speed with and without it:
    benchmarks/results/label.md)."""

    def __init__(self, stage: UpStage):
        super().__init__()
        conv1, bn1, _, conv2, bn2, _ = stage.conv.layers
        weight, bias = fold_bn_after(conv1, bn1)
        skip_channels = weight.shape[1] - stage.up.out_channels
        self.up = FoldedConv(stage.up)
        self.from_up = FoldedConv(conv1, weight[:, skip_channels:], bias)
        self.from_skip = FoldedConv(conv1, weight[:, :skip_channels], torch.zeros_like(bias), activation="relu")
        self.conv2 = _conv_bn_relu(conv2, bn2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """`UpStage.forward`: the coarser features `x` and the encoder's `skip` -> this stage's output."""
        return self.conv2(self.from_skip(skip, add=self.from_up(self.up(x))))


def _fold_unet(model: UNet) -> None:
    for stage in [*model.encoder, model.bottleneck]:
        conv1, bn1, _, conv2, bn2, _ = stage.layers
        stage.layers = nn.Sequential(_conv_bn_relu(conv1, bn1), _conv_bn_relu(conv2, bn2))
    model.decoder = nn.ModuleList(FoldedUpStage(stage) for stage in model.decoder)
    model.head = FoldedConv(model.head)  # head_objects is used by its weights (UNet._half_object_logits)


def _replace(model: nn.Module, kinds: tuple[type, ...], make) -> None:
    """Replace every submodule of one of `kinds` by `make(submodule)`, outermost first."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, kinds):
                setattr(module, name, make(child))


def _fold_simvp(model: SimVP) -> None:
    _replace(model, (GSTABlock,), FoldedGSTABlock)
    _replace(model, (nn.Conv2d, nn.ConvTranspose2d), FoldedConv)
    for module in model.modules():
        if isinstance(module, nn.LeakyReLU):  # after a GroupNorm, whose output is new: overwrite it
            module.inplace = True


def fold_for_inference(model: nn.Module) -> nn.Module:
    """An eval-only copy of a `UNet` or `SimVP` computing the same outputs faster (see the module
    docstring). Its weights are fixed: train the original and fold again."""
    if not isinstance(model, (UNet, SimVP)):
        raise TypeError(f"fold_for_inference takes a UNet or a SimVP, not {type(model).__name__}")
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        if isinstance(model, UNet):
            _fold_unet(folded)
        else:
            _fold_simvp(folded)
    folded.requires_grad_(False)
    return folded.to(memory_format=torch.channels_last)
