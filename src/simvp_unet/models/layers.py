"""Pieces both models and their users share: padding any H x W to a multiple of the down-sampling
factor and back, and bilinear upsampling computed only where it decides something."""

from __future__ import annotations

import functools

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


# ---------------------------------------------------------------------------------------------
# Bilinear upsampling where it is needed


@functools.lru_cache(maxsize=8)
def _source_pixels(out_size: int, in_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every output row (or column) of bilinear upsampling with align_corners=False: the two
    input rows it mixes and the weight of the second, computed as PyTorch's CPU kernel does."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    src = ((torch.arange(out_size, dtype=torch.float32) + 0.5) * scale - 0.5).clamp(min=0)
    first = src.floor().long().clamp(max=in_size - 1)
    second = (first + 1).clamp(max=in_size - 1)
    return first, second, (src - first).clamp(0, 1)


@functools.lru_cache(maxsize=8)
def _sources(size: tuple[int, int], low_size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per output pixel (flattened), on `device`: the flat indices of its four source pixels
    (top-left, top-right, bottom-left, bottom-right) and its vertical and horizontal weights."""
    (height, width), (h, w) = size, low_size
    rows0, rows1, wy = _source_pixels(height, h)
    cols0, cols1, wx = _source_pixels(width, w)
    corners = [(r[:, None] * w + c[None, :]).flatten() for r in (rows0, rows1) for c in (cols0, cols1)]
    fy = wy[:, None].expand(height, width).flatten()
    fx = wx[None, :].expand(height, width).flatten()
    return tuple(t.to(device) for t in (*corners, fy, fx))


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`F.interpolate(logits, size, mode="bilinear").argmax(1)` without upsampling every logit.

    An upsampled pixel is a convex combination of (at most) four neighbouring input pixels, so
    where those four agree on the winning class, so does the mix: only the pixels on a class
    boundary are interpolated, from the logits of their four sources. (N, K, h, w) logits ->
    long (N, *size).
    """
    n, _, h, w = logits.shape
    size = (int(size[0]), int(size[1]))
    if (h, w) == size:
        return logits.argmax(1)
    logits = logits.float()  # as the full upsampling computes it (a no-op for float32)
    low = logits.argmax(1)  # (N, h, w)
    # a low-resolution pixel whose 2 x 2 block (it, right, below, below-right) holds one class
    agree = torch.ones_like(low, dtype=torch.bool)
    agree[:, :, :-1] &= low[:, :, :-1] == low[:, :, 1:]
    agree[:, :-1, :] &= low[:, :-1, :] == low[:, 1:, :]
    agree[:, :-1, :-1] &= low[:, :-1, :-1] == low[:, 1:, 1:]
    top_left = _sources(size, (h, w), logits.device)[0]
    out = low.flatten(1).index_select(1, top_left)  # (N, H * W): the top-left source's class
    boundary = ~agree.flatten(1).index_select(1, top_left)
    flat = boundary.flatten().nonzero().squeeze(1)
    if len(flat):
        out.view(-1)[flat] = bilinear_at(logits, size, flat).argmax(1)
    return out.view(n, *size)


def bilinear_at(x: torch.Tensor, size: tuple[int, int], flat: torch.Tensor) -> torch.Tensor:
    """Some pixels of `F.interpolate(x, size, mode="bilinear")` without upsampling the rest:
    (N, K, h, w) and long indices into the flattened (N, *size) output -> (M, K) float32. The
    same sources and weights as PyTorch's CPU kernel; the values agree up to float rounding
    (tests/test_speed.py)."""
    n, k, h, w = x.shape
    size = (int(size[0]), int(size[1]))
    top_left, top_right, bottom_left, bottom_right, fy, fx = _sources(size, (h, w), x.device)
    sample, pixel = flat // (size[0] * size[1]), flat % (size[0] * size[1])
    base = sample * (h * w)
    pixels = x.float().permute(0, 2, 3, 1).reshape(-1, k)  # (N * h * w, K), a view if channels_last

    def source(corner: torch.Tensor) -> torch.Tensor:
        return pixels.index_select(0, base + corner[pixel])  # (M, K)

    wy, wx = fy[pixel, None], fx[pixel, None]
    return (1 - wy) * ((1 - wx) * source(top_left) + wx * source(top_right)) + wy * (
        (1 - wx) * source(bottom_left) + wx * source(bottom_right))
