"""The 49-class taxonomy: background + 3 shapes x 2 materials x 8 colors.

class id = 1 + 16 * shape + 8 * material + color  (0 is background)
"""

from __future__ import annotations

import numpy as np

SHAPES = ("cube", "sphere", "cylinder")
MATERIALS = ("metal", "rubber")
COLORS = ("gray", "red", "blue", "green", "brown", "cyan", "purple", "yellow")
NUM_CLASSES = 1 + len(SHAPES) * len(MATERIALS) * len(COLORS)  # 49
BACKGROUND = 0

# CLEVR color values (RGB 0..255).
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "cyan": (41, 208, 208),
    "purple": (129, 38, 192),
    "yellow": (255, 238, 51),
}


def _index(value: int | str, names: tuple[str, ...], what: str) -> int:
    if isinstance(value, str):
        if value not in names:
            raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(names)}")
        return names.index(value)
    if not 0 <= int(value) < len(names):
        raise ValueError(f"{what} index {value} out of range 0..{len(names) - 1}")
    return int(value)


def class_id(shape: int | str, material: int | str, color: int | str) -> int:
    """Class id of an object, from attribute names or indices: 1 + 16*shape + 8*material + color."""
    s = _index(shape, SHAPES, "shape")
    m = _index(material, MATERIALS, "material")
    c = _index(color, COLORS, "color")
    return 1 + 16 * s + 8 * m + c


def attributes(cid: int) -> tuple[str, str, str]:
    """(shape, material, color) names of an object class id in 1..48."""
    if not 1 <= int(cid) < NUM_CLASSES:
        raise ValueError(f"class id {cid} is not an object class (expected 1..{NUM_CLASSES - 1})")
    s, rest = divmod(int(cid) - 1, 16)
    m, c = divmod(rest, 8)
    return SHAPES[s], MATERIALS[m], COLORS[c]


def shape_and_material(classes):
    """Shape and material indices (into SHAPES, MATERIALS) of an array or tensor of class ids,
    elementwise; background (0) gives 0 and 0."""
    index = (classes - 1).clip(0, NUM_CLASSES - 2)
    return index // (len(MATERIALS) * len(COLORS)), (index // len(COLORS)) % len(MATERIALS)


def class_name(cid: int) -> str:
    """Readable name: 'background' for 0, else e.g. 'red metal cube'."""
    if int(cid) == BACKGROUND:
        return "background"
    shape, material, color = attributes(cid)
    return f"{color} {material} {shape}"


CLASS_NAMES: tuple[str, ...] = tuple(class_name(i) for i in range(NUM_CLASSES))


def _make_palette() -> np.ndarray:
    """49 x 3 uint8 colors for drawing masks.

    Background is near-black. Each class takes its object's CLEVR color; metal is
    drawn brighter and rubber darker, and the three shapes are nudged apart, so that
    a mask picture tells the material and (roughly) the shape.
    """
    palette = np.zeros((NUM_CLASSES, 3), dtype=np.uint8)
    palette[BACKGROUND] = (20, 20, 24)
    for cid in range(1, NUM_CLASSES):
        shape, material, color = attributes(cid)
        rgb = np.array(COLOR_RGB[color], dtype=np.float32)
        # metal: mix toward white; rubber: darken
        rgb = rgb + (255 - rgb) * 0.35 if material == "metal" else rgb * 0.7
        rgb = rgb * (1.0, 0.88, 0.76)[SHAPES.index(shape)] + (0, 14, 28)[SHAPES.index(shape)]
        palette[cid] = np.clip(rgb, 30, 255).astype(np.uint8)
    return palette


PALETTE: np.ndarray = _make_palette()
