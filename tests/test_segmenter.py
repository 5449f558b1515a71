"""The segmenter's training pieces: crops, the split head, its loss and argmax, the preset."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from simvp_unet.classes import CLASS_NAMES, attributes
from simvp_unet.errors import ConfigError
from simvp_unet.models import UNet, UNetConfig
from simvp_unet.train.segmenter import random_crops

# ---------------------------------------------------------------------------------------------
# crops


def test_random_crops_are_pieces_of_the_frames():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 20, 30)
    masks = torch.randint(0, 49, (4, 20, 30))
    crops, crop_masks = random_crops(images, masks, 8, on_objects=0.5)
    assert crops.shape == (4, 3, 8, 8) and crop_masks.shape == (4, 8, 8)
    for image, mask, crop, crop_mask in zip(images, masks, crops, crop_masks, strict=True):
        windows = image.unfold(1, 8, 1).unfold(2, 8, 1)  # (3, 13, 23, 8, 8): every 8 x 8 window
        hits = (windows == crop[:, None, None]).all(-1).all(-1).all(0).nonzero()
        assert len(hits) == 1
        top, left = hits[0].tolist()
        assert torch.equal(mask[top:top + 8, left:left + 8], crop_mask)


def test_crops_on_objects_hold_the_object():
    masks = torch.zeros(16, 40, 60, dtype=torch.long)
    masks[:, 35:38, 2:5] = 7  # one small object in a corner
    images = torch.rand(16, 3, 40, 60)
    _, crop_masks = random_crops(images, masks, 12, on_objects=1.0, generator=torch.Generator().manual_seed(0))
    assert all((m == 7).any() for m in crop_masks)
    # a frame without objects still gets a crop, anywhere
    _, crop_masks = random_crops(images, torch.zeros_like(masks), 12, on_objects=1.0)
    assert crop_masks.shape == (16, 12, 12)


def test_crop_larger_than_the_frame_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        random_crops(torch.rand(1, 3, 10, 10), torch.zeros(1, 10, 10, dtype=torch.long), 12, on_objects=0)


# ---------------------------------------------------------------------------------------------
# the split head


@pytest.mark.parametrize(("factors", "stages"), [([], 1), ([3, 2, 8], 2), ([3, 2, 8], 3)])
def test_split_head_gives_log_probabilities(factors, stages):
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=3, head="split", object_factors=factors,
                            object_stages=stages))
    y = model(torch.rand(2, 3, 13, 19))
    assert y.shape == (2, 49, 13, 19)
    torch.testing.assert_close(y.exp().sum(1), torch.ones(2, 13, 19))
    F.cross_entropy(y, torch.randint(0, 49, (2, 13, 19))).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("factors", [[], [3, 2, 8]])
def test_split_cross_entropy_is_the_cross_entropy_of_the_log_probabilities(factors):
    """Training reads the split head's raw outputs: same loss and same gradients as cross-entropy
    on the 49 log-probabilities that forward builds (odd size: the padding is cropped)."""
    from simvp_unet.train.segmenter import split_cross_entropy

    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=3, head="split", object_factors=factors, object_stages=2))
    x, target = torch.rand(2, 3, 13, 19), torch.randint(0, 49, (2, 13, 19))
    target[0, :5] = 0  # plenty of background too
    expected = F.cross_entropy(model(x), target)
    expected.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    z, objects = model.split_logits(x)
    assert z.shape == (2, 1, 13, 19) and objects.shape == (2, sum(factors) or 48, 13, 19)
    loss = split_cross_entropy(z, objects, target, factors or [48])
    loss.backward()
    torch.testing.assert_close(loss, expected)
    for grad, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, grad, atol=1e-6, rtol=1e-4)
    with pytest.raises(ConfigError, match="needs head 'split'"):
        UNet(UNetConfig(base_channels=4, depth=2)).split_logits(x)


def test_factored_classes_follow_the_class_ids():
    """With factors [3, 2, 8], log p(class) is the sum of its shape's, material's and color's."""
    model = UNet(UNetConfig(base_channels=4, depth=2, head="split", object_factors=[3, 2, 8]))
    logits = torch.randn(1, 13, 1, 1)
    shape, material, color = (part.log_softmax(1).flatten() for part in logits.split([3, 2, 8], dim=1))
    log_probs = model._object_log_probs(logits).flatten()
    from simvp_unet.classes import COLORS, MATERIALS, SHAPES

    for cid in range(1, len(CLASS_NAMES)):
        s, m, c = attributes(cid)
        expected = shape[SHAPES.index(s)] + material[MATERIALS.index(m)] + color[COLORS.index(c)]
        assert math.isclose(float(log_probs[cid - 1]), float(expected), rel_tol=0, abs_tol=1e-5)


def test_factor_weights_scale_each_factors_term():
    """weights [1, 1, 1] are the plain loss; raising one factor's weight adds exactly that
    factor's cross-entropy on object pixels."""
    from simvp_unet.train.segmenter import split_cross_entropy

    torch.manual_seed(0)
    z, objects = torch.randn(2, 1, 7, 9), torch.randn(2, 13, 7, 9)
    target = torch.randint(0, 49, (2, 7, 9))
    plain = split_cross_entropy(z, objects, target, [3, 2, 8])
    torch.testing.assert_close(split_cross_entropy(z, objects, target, [3, 2, 8], [1, 1, 1]), plain)
    shape = torch.where(target > 0, (target - 1) // 16, -100)
    shape_term = F.cross_entropy(objects[:, :3], shape, ignore_index=-100, reduction="sum") / target.numel()
    torch.testing.assert_close(split_cross_entropy(z, objects, target, [3, 2, 8], [2, 1, 1]), plain + shape_term)


@pytest.mark.parametrize(("preset", "overrides", "message"), [
    ("cpu", ["factor_weights=[2, 1]"], "factor_weights must be 3 positive numbers"),
    ("cpu", ["factor_weights=[2, 1, 0]"], "factor_weights must be 3 positive numbers"),
    (None, ["factor_weights=[2]"], "needs a factored split head"),  # the default model: plain head
])
def test_bad_factor_weights(preset, overrides, message):
    from simvp_unet.config import resolve
    from simvp_unet.train.segmenter import SegmenterConfig

    with pytest.raises(ConfigError, match=message):
        resolve(SegmenterConfig, "segmenter", preset, overrides)


def test_the_removed_jaccard_weight_is_an_unknown_key():
    """jaccard_weight (a soft Jaccard loss, retired: benchmarks/results/retired.md) is gone: a
    preset or a saved config that sets it fails with the one-line unknown-key error."""
    from simvp_unet.config import resolve
    from simvp_unet.train.segmenter import SegmenterConfig

    with pytest.raises(ConfigError, match="^unknown config key jaccard_weight; valid keys: [^\\n]*$"):
        resolve(SegmenterConfig, "segmenter", "cpu", ["jaccard_weight=1"])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"head": "softmax"}, "head must be"),
    ({"head": "split", "object_factors": [3, 2, 7]}, "product is num_classes - 1 = 48"),
    ({"object_factors": [3, 2, 8]}, "needs head 'split'"),
    ({"head": "split", "num_classes": 2}, "at least two object classes"),
    ({"head": "split", "depth": 2, "object_stages": 3}, "object_stages must be an integer in 1..depth"),
    ({"object_stages": 2}, "object_stages needs head 'split'"),
])
def test_bad_split_head_configs(overrides, message):
    with pytest.raises(ConfigError, match=message):
        UNetConfig(**overrides)


# ---------------------------------------------------------------------------------------------
# the preset


def test_cpu_preset_trains_on_crops_at_full_resolution(tiny_config):
    from simvp_unet.config import resolve
    from simvp_unet.train.segmenter import SegmenterConfig

    config = resolve(SegmenterConfig, "segmenter", "cpu", [])
    assert tuple(config.resolution) == (160, 240) and config.crop > 0
    assert config.model.head == "split" and math.prod(config.model.object_factors) == 48
    with pytest.raises(ValueError, match="crop must be 0"):
        tiny_config("segmenter", "crop=64")  # larger than the tiny 32 x 48 frames


def test_crop_trained_segmenter_segments_whole_frames(tiny_data, tmp_path, tiny_args):
    """Also: 2 epochs with the preset validating every 4 still end validated (a best.ckpt)."""
    from simvp_unet.cli import main
    from simvp_unet.data.datasets import FrameDataset
    from simvp_unet.runs import load_run

    run = tmp_path / "seg"
    assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(run),
                 *tiny_args("segmenter")]) == 0
    segmenter = load_run(run, fold=True)
    frames = FrameDataset(tiny_data, "val", frames=[21])
    images = torch.stack([frames[i]["image"] for i in range(len(frames))])
    masks = segmenter.segment(images)
    assert masks.shape == (len(frames), *images.shape[-2:])  # whole frames, at their size
    assert int(masks.min()) >= 0 and int(masks.max()) < 49



def decisive(model: UNet, x: torch.Tensor) -> UNet:
    """Scale a fresh split head so that, on `x`, it answers like a trained one: z spread over
    about +-10 around 2, the object logits far apart (confident factors). Then some pixels are objects, some background
    with z > 0 (the object's own log-probability decides) and some have z <= 0 (`argmax`
    skips them); the caller checks that all three happen."""
    with torch.no_grad():
        z, objects = model.split_logits(x)
        model.head.weight.mul_(5 / z.std())
        model.head.bias.mul_(5 / z.std())
        spread = (objects - objects.mean((0, 2, 3), keepdim=True)).std()  # across pixels
        model.head_objects.weight.mul_(10 / spread)
        model.head.bias.add_(2 - model.split_logits(x)[0].median())
    return model


def assert_every_case(model: UNet, x: torch.Tensor, expected: torch.Tensor) -> None:
    with torch.no_grad():
        z = model.split_logits(x)[0][:, 0]
    assert (expected > 0).any() and (expected[z > 0] == 0).any() and (z <= 0).any()
    assert len(expected.unique()) >= 3  # background and at least two object classes


@pytest.mark.parametrize("config", [
    UNetConfig(base_channels=4, depth=2),
    UNetConfig(base_channels=4, depth=2, head="split"),
    UNetConfig(base_channels=4, depth=3, head="split", object_factors=[3, 2, 8], object_stages=3),
])
def test_argmax_is_the_argmax_of_the_logits(config):
    torch.manual_seed(0)
    model = UNet(config).eval()
    x = torch.rand(2, 3, 37, 50)  # padded to 40 x 56 inside, cropped back
    if config.object_factors:  # `argmax` has its own computation only for factored heads
        decisive(model, x)
    with torch.no_grad():
        expected = model(x).argmax(1)
        if config.object_factors:
            assert_every_case(model, x, expected)
        assert torch.equal(model.argmax(x), expected)


def test_segment_at_the_working_resolution_uses_the_networks_argmax(monkeypatch):
    from simvp_unet import inference
    from simvp_unet.inference import Segmenter
    from simvp_unet.models.fold import fold_for_inference

    monkeypatch.setattr(inference, "has_native_bf16", lambda device_type: False)  # float32 both
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=3, head="split", object_factors=[3, 2, 8],
                            object_stages=2)).eval()
    images = torch.randint(0, 256, (3, 3, 32, 48), dtype=torch.uint8)
    x = images.float() / 255
    decisive(model, x)
    segmenter = Segmenter(fold_for_inference(model), resolution=(32, 48))
    with torch.no_grad():
        expected = model(x).argmax(1)
    assert_every_case(model, x, expected)
    assert torch.equal(segmenter.segment(images), expected)
