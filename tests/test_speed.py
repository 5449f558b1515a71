"""Speed settings that must not change the answers: folded models, the upsampled argmax, and the
choice of bf16 and memory format for the machine in hand."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from simvp_unet import hardware
from simvp_unet.hardware import CPUFeatures, channels_last, has_native_bf16
from simvp_unet.models import SimVP, SimVPConfig, UNet, UNetConfig, fold
from simvp_unet.models.fold import fold_for_inference
from simvp_unet.models.layers import bilinear_at, upsampled_argmax
from simvp_unet.train.runner import resolve_precision

# ---------------------------------------------------------------------------------------------
# Folded models


def paper_incep() -> SimVP:
    return SimVP(SimVPConfig())  # 11x3 frames, 64/512/4/8: the paper's 58,197,635 parameters


def small_incep() -> SimVP:
    return SimVP(SimVPConfig(spatial_channels=16, temporal_channels=256, temporal_blocks=4))


def forecaster_cpu() -> SimVP:
    return SimVP(SimVPConfig(input_classes=49, out_channels=49, spatial_channels=16,
                             temporal_channels=128, spatial_blocks=2, temporal_blocks=4,
                             translator="gsta", extra_downsample=True, copy_prior=4.0))


def trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Give the norms' statistics and affines and the layer scales values far from their
    initial ones, so that folding them is tested (a fresh BatchNorm is the identity)."""
    generator = torch.Generator().manual_seed(1)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                uniform(m.running_mean, -0.5, 0.5)
                uniform(m.running_var, 0.5, 2.0)
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.3, 0.3)
            if hasattr(m, "scale1"):
                uniform(m.scale1, -0.5, 0.5)
                uniform(m.scale2, -0.5, 0.5)
    return model.eval()


REFERENCE_MODELS = {
    # name: (model, input); small H x W keep the test fast, odd sizes exercise the padding
    "incep paper 64/512/4/8": (paper_incep, lambda: torch.rand(1, 11, 3, 32, 44)),
    "incep 16/256/4/4": (small_incep, lambda: torch.rand(2, 11, 3, 40, 60)),
    "gsta forecaster cpu": (forecaster_cpu, lambda: torch.randint(0, 49, (2, 11, 37, 50))),
    "unet base 16": (lambda: UNet(UNetConfig(base_channels=16)), lambda: torch.rand(3, 3, 80, 120)),
    "unet base 64 (paper)": (lambda: UNet(UNetConfig()), lambda: torch.rand(1, 3, 45, 61)),
    "unet split head, factored (cpu)": (
        lambda: UNet(UNetConfig(base_channels=8, head="split", object_factors=[3, 2, 8])),
        lambda: torch.rand(2, 3, 50, 70)),
}


@pytest.mark.parametrize("name", list(REFERENCE_MODELS))
def test_folded_model_equals_the_original(name):
    build, example = REFERENCE_MODELS[name]
    torch.manual_seed(0)
    model = trained_looking(build())
    x = example()
    with torch.inference_mode():
        expected = model(x)
        folded = fold_for_inference(model)
        for _ in range(2):  # the first call packs the weights, the second uses them
            torch.testing.assert_close(folded(x), expected, rtol=0, atol=1e-5)
        # another batch size reuses the packed weights
        torch.testing.assert_close(folded(x[:1]), model(x[:1]), rtol=0, atol=1e-5)
    assert model.training is False and any(p.requires_grad for p in model.parameters())
    with torch.inference_mode():  # a copy of a folded model (its packed weights are not copied)
        torch.testing.assert_close(copy.deepcopy(folded)(x), expected, rtol=0, atol=1e-5)


def test_folded_model_under_bf16_autocast_stays_close():
    """Under autocast the folded weights go through ordinary convolutions (bf16 where native)."""
    torch.manual_seed(0)
    model = trained_looking(SimVP(SimVPConfig(in_frames=3, out_frames=3, spatial_channels=8,
                                              temporal_channels=16, temporal_blocks=2)))
    x = torch.rand(2, 3, 3, 16, 24)
    folded = fold_for_inference(model)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(folded(x).float(), model(x).float(), rtol=0, atol=0.1)
    # the U-Net's split decoder convolutions (the sum of two) outside oneDNN as well
    unet = trained_looking(UNet(UNetConfig(base_channels=4, depth=2)))
    x = torch.rand(2, 3, 16, 24)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(fold_for_inference(unet)(x).float(), unet(x).float(), rtol=0, atol=0.15)
    with torch.inference_mode():  # float64 takes the same path, with float64 accuracy
        torch.testing.assert_close(fold_for_inference(unet.double())(x.double()), unet(x.double()))


def test_segment_with_the_folded_model_gives_the_same_masks(monkeypatch):
    """The served segmenter as `load_run(..., fold=True)` sets it up equals the plain network's
    answer computed the slow way (full upsampling of the logits, then argmax), in float32."""
    from simvp_unet import inference
    from simvp_unet.inference import Segmenter, logits_to_size

    monkeypatch.setattr(inference, "has_native_bf16", lambda device_type: False)

    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=8, depth=3)).eval()
    trained_looking(model)
    segmenter = Segmenter(model, resolution=(80, 120)).eval()
    images = (torch.rand(5, 3, 160, 240) * 255).to(torch.uint8)
    with torch.inference_mode():
        expected = logits_to_size(segmenter(images), (160, 240)).argmax(1)
    segmenter.model = fold_for_inference(model)
    assert torch.equal(segmenter.segment(images), expected)


class Spy:
    """A private oneDNN operator (all its overloads) that fails when called, as one whose
    signature changed would, and records the call."""

    def __init__(self, name: str, calls: list[str]):
        self.name, self.calls = name, calls

    def __getattr__(self, overload: str):
        if overload in ("default", "binary"):
            return self
        raise AttributeError(overload)

    def __call__(self, *args, **kwargs):
        self.calls.append(self.name)
        raise TypeError(f"{self.name}: not the signature this test's torch has")


class Mkldnn:
    """`torch.ops.mkldnn` as a torch without `missing` (None: with every operator, each a `Spy`)."""

    def __init__(self, real, missing: str | None, calls: list[str]):
        self.real, self.missing, self.calls = real, missing, calls

    def __getattr__(self, name: str):
        if name == self.missing:
            raise AttributeError(f"'_OpNamespace' 'mkldnn' object has no attribute '{name}'")
        if name in fold._PRIVATE_OPS:
            return Spy(name, self.calls)
        return getattr(self.real, name)


@pytest.fixture
def private_ops(monkeypatch):
    """Replace torch's private oneDNN operators (see `Mkldnn`); returns the calls made to them.
    The cached answer of `private_ops_available` is cleared before and after."""

    def replace(missing: str | None) -> list[str]:
        calls: list[str] = []
        monkeypatch.setattr(torch.ops, "mkldnn", Mkldnn(torch.ops.mkldnn, missing, calls))
        fold.private_ops_available.cache_clear()
        return calls

    yield replace
    fold.private_ops_available.cache_clear()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_the_private_operators_are_used_where_they_work():
    """The torch range pyproject.toml accepts has them: folded models run on oneDNN here."""
    fold.private_ops_available.cache_clear()
    assert fold.private_ops_available()


@pytest.mark.parametrize("missing", [*fold._PRIVATE_OPS, None])
def test_folding_without_the_private_operators_gives_the_same_answers(private_ops, missing):
    """A torch without one of the private operators (or with all of them, changed): folding
    runs the public convolutions, with the answers of the unfolded models, and the service
    does not fold on a CPU."""
    torch.manual_seed(0)
    unet = trained_looking(UNet(UNetConfig(base_channels=4, depth=3, head="split",
                                           object_factors=[3, 2, 8], object_stages=2)))
    simvp = trained_looking(SimVP(SimVPConfig(
        in_frames=3, out_frames=3, input_classes=49, out_channels=49, spatial_channels=8,
        temporal_channels=16, spatial_blocks=2, temporal_blocks=2, translator="gsta",
        extra_downsample=True, copy_prior=4.0)))
    images, ids = torch.rand(2, 3, 37, 50), torch.randint(0, 49, (2, 3, 29, 42))
    with torch.inference_mode():
        unet_logits, simvp_logits = unet(images), simvp(ids)

    calls = private_ops(missing)
    assert not fold.private_ops_available()
    assert not hardware.folding_helps(unet, "cpu") and not hardware.folding_helps(simvp, "cpu")
    calls.clear()  # calls made while checking are allowed: none may follow
    with torch.inference_mode():
        folded_unet, folded_simvp = fold_for_inference(unet), fold_for_inference(simvp)
        for _ in range(2):
            torch.testing.assert_close(folded_unet(images), unet_logits, rtol=0, atol=1e-5)
            assert torch.equal(folded_unet.argmax(images), unet_logits.argmax(1))
            out = folded_simvp(ids)
            torch.testing.assert_close(out, simvp_logits, rtol=0, atol=1e-5)
            assert torch.equal(out.argmax(2), simvp_logits.argmax(2))
    assert calls == []


def test_fold_refuses_other_modules():
    with pytest.raises(TypeError, match="UNet or a SimVP"):
        fold_for_inference(torch.nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize("sizes", [((80, 120), (160, 240)), ((37, 50), (160, 240)),
                                   ((40, 60), (41, 59)), ((20, 30), (20, 30))])
def test_upsampled_argmax_equals_upsampling_then_argmax(sizes):
    (h, w), size = sizes
    torch.manual_seed(0)
    # smooth logits with noise, like a segmenter's: regions and boundaries between them
    logits = F.interpolate(torch.randn(3, 49, h // 4 + 1, w // 4 + 1) * 3, size=(h, w), mode="bicubic")
    logits = logits + 0.3 * torch.randn_like(logits)
    expected = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(upsampled_argmax(logits, size), expected)
    cl = logits.contiguous(memory_format=torch.channels_last)
    assert torch.equal(upsampled_argmax(cl, size), expected)


def test_bilinear_at_equals_upsampling_at_those_pixels():
    torch.manual_seed(0)
    for size in ((42, 61), (42, 60)):
        x = torch.randn(2, 13, 21, 30).contiguous(memory_format=torch.channels_last)
        full = F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (2, 13, *size)
        flat = torch.randperm(2 * size[0] * size[1])[:500]
        expected = full.permute(0, 2, 3, 1).reshape(-1, 13)[flat]
        assert torch.allclose(bilinear_at(x, size, flat), expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Settings for the machine in hand


def features(**flags) -> CPUFeatures:
    base = dict(name="test CPU", avx2=True, avx512=False, avx512_bf16=False, amx=False,
                torch_isa="AVX2", onednn_isa="ALL", torch_version="test")
    return CPUFeatures(**{**base, **flags})


AVX2_CPU = features()
BF16_CPU = features(avx512=True, avx512_bf16=True, amx=True, torch_isa="AVX512")


@pytest.fixture
def cpu_is(monkeypatch):
    """Pretend the CPU is the given `CPUFeatures` (and that there is no GPU)."""

    def pretend(value: CPUFeatures) -> None:
        monkeypatch.setattr(hardware, "cpu_features", lambda: value)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return pretend


@pytest.mark.parametrize(("cpu", "native"), [
    (AVX2_CPU, False),
    (features(avx512=True, torch_isa="AVX512"), False),  # AVX-512 without BF16: emulated
    (BF16_CPU, True),
    (features(avx512=True, amx=True, torch_isa="AVX512"), True),
    (dataclasses.replace(BF16_CPU, onednn_isa="AVX2"), False),  # oneDNN told to stay at AVX2
    (dataclasses.replace(BF16_CPU, onednn_isa="AVX512_CORE"), False),
    (dataclasses.replace(BF16_CPU, torch_isa="AVX2"), False),  # ATEN_CPU_CAPABILITY=avx2
])
def test_bf16_only_where_native(cpu_is, cpu, native):
    cpu_is(cpu)
    assert has_native_bf16("cpu") is native
    assert has_native_bf16("auto") is native
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native else "32-true")
    assert resolve_precision("32-true", "cpu") == "32-true"  # an explicit choice is kept


def test_inference_uses_bf16_only_where_native(cpu_is):
    from simvp_unet.inference import FramePredictor, Segmenter

    predictor = FramePredictor(SimVP(SimVPConfig(translator="incep", spatial_channels=8, temporal_channels=16,
                                                 temporal_blocks=2)), resolution=(32, 48)).eval()
    segmenter = Segmenter(UNet(UNetConfig(base_channels=4, depth=2)), resolution=(32, 48)).eval()
    for cpu, native in ((AVX2_CPU, False), (BF16_CPU, True)):
        cpu_is(cpu)
        for module in (predictor, segmenter):
            with module.autocast():
                assert torch.is_autocast_enabled("cpu") is native


def test_torch_and_onednn_limits_turn_native_bf16_off():
    """The limits benchmarks/models.py --isa avx2 sets reach `has_native_bf16` (a real process)."""
    code = ("from simvp_unet.hardware import cpu_features, has_native_bf16\n"
            "f = cpu_features()\nprint(f.torch_isa, f.onednn_isa, has_native_bf16('cpu'))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() in (["AVX2", "AVX2", "False"], ["DEFAULT", "AVX2", "False"])


def test_channels_last_choice(cpu_is):
    cpu_is(AVX2_CPU)
    assert not channels_last(paper_incep(), "train")  # measured slower on AVX2
    assert channels_last(small_incep(), "train")
    assert not channels_last(forecaster_cpu(), "train")
    assert channels_last(UNet(UNetConfig(base_channels=16)), "train")
    assert not channels_last(UNet(UNetConfig(base_channels=8)), "train")  # measured slower on AVX2
    assert channels_last(UNet(UNetConfig(base_channels=8)), "infer")
    assert channels_last(paper_incep(), "infer")
    cpu_is(BF16_CPU)
    assert channels_last(paper_incep(), "train")


@pytest.mark.parametrize("gpu_bf16", [True, False])
def test_gpu_memory_format_and_folding_choice(monkeypatch, gpu_bf16):
    """On a bf16 GPU the SimVP serves and trains as it is (measured faster under bf16 autocast);
    on a CPU, or a GPU in float32, it is folded and channels_last; the U-Net is everywhere."""
    monkeypatch.setattr(hardware, "has_native_bf16", lambda device_type="auto": gpu_bf16)
    simvp, unet = paper_incep(), UNet(UNetConfig(base_channels=8))
    for direction in ("train", "infer"):
        assert channels_last(simvp, direction, "cuda") is not gpu_bf16
        assert channels_last(unet, direction, "cuda")
    assert hardware.folding_helps(simvp, "cuda") is not gpu_bf16
    assert hardware.folding_helps(unet, "cuda")
    assert hardware.folding_helps(simvp, "cpu")
    # a trainer in float32 on a bf16 GPU (--precision 32-true): channels_last again
    assert channels_last(simvp, "train", "cuda", bf16=False)
    assert not channels_last(simvp, "train", "cuda", bf16=True)


def test_cpu_features_of_this_machine():
    f = hardware.cpu_features()
    assert f.torch_isa == torch.backends.cpu.get_cpu_capability()
    assert "AVX2" in f.summary() and "native bf16" in f.summary()
    if f.avx512_bf16 or f.amx:
        assert f.avx512 or f.amx


def test_keep_freed_memory_applies_on_glibc_and_can_be_turned_off():
    """The allocator setting `simvp-unet` makes at start (a real process each: it is global)."""
    import platform

    code = "from simvp_unet.hardware import keep_freed_memory\nprint(keep_freed_memory(), keep_freed_memory())"
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    env = {k: v for k, v in os.environ.items() if k != "SIMVP_UNET_DEFAULT_MALLOC"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(glibc)] * 2
    env["SIMVP_UNET_DEFAULT_MALLOC"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
