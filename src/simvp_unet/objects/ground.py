"""The ground plane, estimated from the objects themselves (no camera is given with a dataset).

Every object rests on one plane and all objects have one size, so their centers lie on a
plane too, and an object's apparent size is proportional to its inverse depth. On a plane,
inverse depth is an affine function of image position, so fitting

    size = k_shape * (1 + a * x_n + b * y_n),   x_n = (x - W/2) / W,  y_n = (y - H/2) / H

to the whole views of many objects gives the inverse depth w = 1 + a x_n + b y_n up to scale.
Then (x_n / w, y_n / w) are affine coordinates on the plane: motion that is uniform on the
floor is uniform there, which image coordinates are not (far objects move fewer pixels).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..classes import BACKGROUND, SHAPES, shape_and_material


class GroundPlane(nn.Module):
    """Image <-> ground coordinates and the apparent-size model, from fitted numbers.

    Args:
        image_size: (H, W) of the frames.
    """

    def __init__(self, *, image_size: tuple[int, int] = (160, 240)):
        super().__init__()
        self.register_buffer("frame", torch.tensor([float(image_size[1]), float(image_size[0])]))
        self.register_buffer("slope", torch.zeros(2))  # (a, b): inverse depth per normalized x, y
        self.register_buffer("shape_size", torch.ones(len(SHAPES)))  # k_shape, pixels at w = 1
        self.register_buffer("shape_aspect", torch.ones(len(SHAPES)))  # box width / height

    def normalized(self, xy: torch.Tensor) -> torch.Tensor:
        """Pixels (..., 2) -> centered coordinates in image widths/heights."""
        return xy / self.frame - 0.5

    def inverse_depth(self, xy: torch.Tensor) -> torch.Tensor:
        """w at pixel positions (..., 2) -> (...); 1 at the image center."""
        return 1 + (self.normalized(xy) * self.slope).sum(-1)

    def to_ground(self, xy: torch.Tensor) -> torch.Tensor:
        """Pixels (..., 2) -> ground coordinates (..., 2)."""
        w = self.inverse_depth(xy).clamp_min(1e-3)
        return self.normalized(xy) / w.unsqueeze(-1)

    def to_image(self, g: torch.Tensor) -> torch.Tensor:
        """Ground coordinates (..., 2) -> pixels (..., 2)."""
        w = 1 / (1 - (g * self.slope).sum(-1)).clamp_min(1e-3)
        return (g * w.unsqueeze(-1) + 0.5) * self.frame

    def expected_size(self, classes: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        """The box size (..., 2) (width, height, pixels) of whole objects of class ids `classes`
        (...) at pixel positions `xy` (..., 2)."""
        shape = shape_and_material(classes)[0]
        side = self.shape_size[shape] * self.inverse_depth(xy).clamp_min(1e-3)
        root = self.shape_aspect[shape].sqrt()
        return torch.stack([side * root, side / root], -1)

    def uncut(self, classes: torch.Tensor, present: torch.Tensor, center: torch.Tensor,
              size: torch.Tensor) -> torch.Tensor:
        """Centers of boxes cut by the image border, moved to where the whole box would be.

        A cut box keeps its inner edge (a true edge of the object) and gets at least the size
        a whole object of its shape has at that position: an object entering the view, cut in
        every frame it was seen, otherwise has its center biased inward by half its hidden part.

        Args:
            classes: long (B, K); present: bool (B, K, T); center, size: (B, K, T, 2) pixels, as
                `extract_tracks` measures them (a cut box's size is the largest whole size seen).

        Returns:
            (B, K, T, 2) centers; uncut boxes keep theirs.
        """
        low, high = center - size / 2, center + size / 2
        seen = present.unsqueeze(-1)
        cut_low = seen & (low <= 0) & (high < self.frame)  # cut at the left or top border only
        cut_high = seen & (high >= self.frame) & (low > 0)  # at the right or bottom only
        out = center
        for _ in range(2):  # the expected size depends on the position: settle it
            full = torch.maximum(size, self.expected_size(classes.unsqueeze(-1), out))
            out = torch.where(cut_low, high - full / 2, torch.where(cut_high, low + full / 2, center))
        return out

    @torch.no_grad()
    def fit(self, classes: np.ndarray, center: np.ndarray, size: np.ndarray, whole: np.ndarray,
            *, rounds: int = 5) -> GroundPlane:
        """Fit the slope, the size and the box aspect of each shape to whole views of objects.

        Args:
            classes: (N, K) class ids; center, size: (N, K, T, 2) pixels; whole: (N, K, T).
        """
        shape = np.broadcast_to(shape_and_material(classes)[0][:, :, None], whole.shape)
        use = whole & (classes[:, :, None] != BACKGROUND)
        if use.sum() < 10:
            return self  # too few whole views: keep a flat plane (image = ground, up to scale)
        s = np.sqrt(size[use].prod(-1))
        xy = center[use] / self.frame.numpy() - 0.5
        shape = shape[use]
        k = np.array([np.median(s[shape == i]) if (shape == i).any() else np.median(s)
                      for i in range(len(SHAPES))])
        slope = np.zeros(2)
        for _ in range(rounds):
            slope = np.linalg.lstsq(xy, s / k[shape] - 1, rcond=None)[0]
            w = 1 + xy @ slope
            k = np.array([np.median(s[shape == i] / w[shape == i]) if (shape == i).any() else k[i]
                          for i in range(len(SHAPES))])
        wide = size[use][:, 0] / np.maximum(size[use][:, 1], 1)
        aspect = [np.median(wide[shape == i]) if (shape == i).any() else np.median(wide)
                  for i in range(len(SHAPES))]
        self.slope.copy_(torch.as_tensor(slope, dtype=torch.float32))
        self.shape_size.copy_(torch.as_tensor(k, dtype=torch.float32))
        self.shape_aspect.copy_(torch.as_tensor(aspect, dtype=torch.float32))
        return self
