"""The 49-class taxonomy: ids, names and the palette."""

import numpy as np
import pytest

from simvp_unet.classes import (
    CLASS_NAMES,
    COLORS,
    MATERIALS,
    NUM_CLASSES,
    PALETTE,
    SHAPES,
    attributes,
    class_id,
    class_name,
    shape_and_material,
)


def test_round_trip_of_every_class():
    ids = set()
    for shape in SHAPES:
        for material in MATERIALS:
            for color in COLORS:
                cid = class_id(shape, material, color)
                assert attributes(cid) == (shape, material, color)
                ids.add(cid)
    assert ids == set(range(1, NUM_CLASSES)) and NUM_CLASSES == 49


def test_formula_and_names():
    # 1 + 16 * shape + 8 * material + color
    assert class_id("cube", "metal", "gray") == 1
    assert class_id("sphere", "rubber", "red") == 1 + 16 + 8 + 1
    assert class_id(2, 1, 7) == 48
    assert class_name(0) == "background" and CLASS_NAMES[0] == "background"
    assert class_name(class_id("cylinder", "metal", "cyan")) == "cyan metal cylinder"
    assert len(set(CLASS_NAMES)) == NUM_CLASSES


@pytest.mark.parametrize("bad", [0, 49, -1])
def test_bad_ids_are_refused(bad):
    with pytest.raises(ValueError, match="not an object class"):
        attributes(bad)


def test_bad_attribute_names_are_refused():
    with pytest.raises(ValueError, match="unknown color 'pink'"):
        class_id("cube", "metal", "pink")


def test_palette_is_distinct_and_tells_the_material():
    assert PALETTE.shape == (NUM_CLASSES, 3) and PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in PALETTE}) == NUM_CLASSES
    for shape in SHAPES:
        for color in COLORS:
            metal = PALETTE[class_id(shape, "metal", color)].astype(int).sum()
            rubber = PALETTE[class_id(shape, "rubber", color)].astype(int).sum()
            assert metal > rubber  # metal drawn brighter, rubber darker
    assert PALETTE[0].astype(int).sum() < PALETTE[1:].astype(int).sum(axis=1).min()


def test_shape_and_material_of_arrays_match_the_names():
    import torch

    ids = np.arange(1, 49)
    for array in (ids, torch.from_numpy(ids)):
        shape, material = shape_and_material(array)
        names = [(SHAPES[s], MATERIALS[m]) for s, m in zip(shape.tolist(), material.tolist(), strict=True)]
        assert names == [attributes(int(c))[:2] for c in ids]
    assert [int(v) for v in shape_and_material(torch.tensor(0))] == [0, 0]  # background
