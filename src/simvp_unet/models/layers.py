"""Pieces both models use: padding any H x W to a multiple of the down-sampling factor and back."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom and right so that H and W are multiples of `multiple`.

    Replicate padding (edge values repeated) keeps the border statistics close to the image's,
    so the padded rows do not look like a dark frame edge to the convolutions.
    """
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def crop_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Undo `pad_to_multiple`: keep the top-left `height` x `width` of the last two dimensions."""
    if x.shape[-2] == height and x.shape[-1] == width:
        return x
    return x[..., :height, :width]
