"""SimVP and U-Net: shapes, parameter counts, output frames, precision, export, bad configs."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from simvp_unet.config import from_dict, to_dict
from simvp_unet.errors import ConfigError, DataError
from simvp_unet.models import SimVP, SimVPConfig, UNet, UNetConfig
from simvp_unet.models.export import MODELS, export_onnx, export_safetensors, load_safetensors
from simvp_unet.models.layers import crop_to, pad_to_multiple


def tiny(**overrides) -> SimVPConfig:
    """A SimVP small enough for a CPU test: 3 frames of 2 channels, 8/16 channels, 2 blocks."""
    base = dict(
        in_frames=3,
        out_frames=3,
        in_channels=2,
        out_channels=2,
        spatial_channels=8,
        temporal_channels=16,
        spatial_blocks=4,
        temporal_blocks=2,
    )
    return SimVPConfig(**{**base, **overrides})


def example_input(config: SimVPConfig, batch: int = 2, height: int = 13, width: int = 19):
    """Float frames, or class ids when the config takes them (13 x 19: not a multiple of 4 or 8)."""
    if config.input_classes:
        return torch.randint(0, config.input_classes, (batch, config.in_frames, height, width))
    return torch.rand(batch, config.in_frames, config.in_channels, height, width)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Parameter counts of the original code


@pytest.mark.parametrize(
    ("frames", "channels", "spatial", "temporal", "spatial_blocks", "temporal_blocks", "expected"),
    [
        (11, 3, 64, 512, 4, 8, 58_197_635),
        (10, 1, 64, 512, 4, 8, 57_761_409),
        (10, 1, 64, 256, 4, 8, 15_778_433),
        (11, 3, 16, 256, 4, 4, 6_817_699),
    ],
)
def test_incep_parameter_count_matches_original(
    frames, channels, spatial, temporal, spatial_blocks, temporal_blocks, expected
):
    config = SimVPConfig(
        in_frames=frames,
        out_frames=frames,
        in_channels=channels,
        out_channels=channels,
        spatial_channels=spatial,
        temporal_channels=temporal,
        spatial_blocks=spatial_blocks,
        temporal_blocks=temporal_blocks,
    )
    with torch.device("meta"):
        assert n_params(SimVP(config)) == expected


def test_paper_unet_parameter_count():
    # 64..512 stages, 1024 bottleneck, bias-free convs before BatchNorm, 49 logits
    with torch.device("meta"):
        model = UNet(UNetConfig())
    assert n_params(model) == 31_040_753
    # the count follows from the widths: the 1x1 head alone is 64 * 49 + 49
    assert model.head.weight.shape == (49, 64, 1, 1)


# ---------------------------------------------------------------------------------------------
# Shapes, gradients, variants


VARIANTS = {
    "incep": tiny(),
    "gsta": tiny(translator="gsta"),
    "class_ids": tiny(input_classes=5, embed_dim=4, out_channels=5),
    "more_out_channels": tiny(out_channels=7),
    "extra_downsample": tiny(extra_downsample=True),
    "fewer_out_frames": tiny(out_frames=2),
    "two_spatial_blocks": tiny(spatial_blocks=2, temporal_blocks=3),
    "groups_fallback": tiny(temporal_channels=12, groups=8),  # 6 branch inputs: groups -> 1
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_simvp_forward_backward(name):
    config = VARIANTS[name]
    torch.manual_seed(0)
    model = SimVP(config)
    x = example_input(config)
    y = model(x)
    assert y.shape == (2, config.out_frames, config.out_channels, 13, 19)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert model.readout.weight.grad.abs().sum() > 0


def test_extra_downsample_halves_the_translator_input():
    seen = {}
    for extra in (False, True):
        model = SimVP(tiny(extra_downsample=extra))
        handle = model.translator.register_forward_hook(
            lambda mod, inp, out, extra=extra: seen.__setitem__(extra, inp[0].shape[-2:])
        )
        model(example_input(model.config, height=16, width=24))
        handle.remove()
    assert tuple(seen[False]) == (4, 6)
    assert tuple(seen[True]) == (2, 3)


def test_fewer_out_frames_are_the_first_frames_of_the_full_output():
    torch.manual_seed(0)
    full = SimVP(tiny()).eval()
    short = SimVP(tiny(out_frames=2)).eval()
    short.load_state_dict(full.state_dict())
    x = example_input(full.config)
    with torch.no_grad():
        torch.testing.assert_close(short(x), full(x)[:, :2])


def test_odd_size_equals_cropped_replicate_padded_input():
    torch.manual_seed(0)
    model = SimVP(tiny()).eval()
    x = example_input(model.config, height=13, width=19)
    padded = torch.nn.functional.pad(x.flatten(0, 1), (0, 1, 0, 3), mode="replicate")
    padded = padded.unflatten(0, x.shape[:2])
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :13, :19])


def test_pad_and_crop_round_trip():
    x = torch.rand(2, 3, 13, 19)
    padded = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (16, 24)
    assert torch.equal(padded[..., 15, :19], x[..., 12, :])  # replicated last row
    assert torch.equal(crop_to(padded, 13, 19), x)
    assert pad_to_multiple(padded, 8) is padded


def test_gsta_blocks_start_near_identity():
    model = SimVP(tiny(translator="gsta"))
    block = model.translator.blocks[1]
    assert torch.allclose(block.scale1, torch.full_like(block.scale1, 1e-2))
    assert isinstance(block.norm1, torch.nn.BatchNorm2d)
    assert len(model.translator.blocks) == 2


@pytest.mark.parametrize(("base", "depth", "size"), [(4, 2, (13, 19)), (8, 4, (37, 45)), (2, 1, (5, 7))])
def test_unet_forward_backward(base, depth, size):
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=3, num_classes=6, base_channels=base, depth=depth))
    y = model(torch.rand(2, 3, *size))
    assert y.shape == (2, 6, *size)
    assert torch.isfinite(y).all()
    torch.nn.functional.cross_entropy(y, torch.randint(0, 6, (2, *size))).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("which", ["simvp", "gsta", "unet"])
def test_eval_mode_is_deterministic(which):
    torch.manual_seed(0)
    if which == "unet":
        model, x = UNet(UNetConfig(base_channels=4, depth=2)), torch.rand(2, 3, 16, 16)
    else:
        model = SimVP(tiny(translator="gsta" if which == "gsta" else "incep"))
        x = example_input(model.config)
    model.train()
    model(x)  # moves the BatchNorm running statistics away from their initial values
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        # eval mode normalizes each sample alone (GroupNorm, BatchNorm running statistics)
        torch.testing.assert_close(model(x[:1]), model(x)[:1], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Precision and memory format


@pytest.mark.parametrize("which", ["simvp", "gsta", "unet"])
def test_bf16_autocast_and_channels_last_match_float32(which):
    torch.manual_seed(0)
    if which == "unet":
        model, x = UNet(UNetConfig(base_channels=4, depth=2)).eval(), torch.rand(2, 3, 16, 24)
    else:
        model = SimVP(tiny(translator="gsta" if which == "gsta" else "incep")).eval()
        x = example_input(model.config)
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
        model = model.to(memory_format=torch.channels_last)
        last = model(x)
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    scale = reference.abs().max()
    assert (low.float() - reference).abs().max() <= 0.05 * scale
    torch.testing.assert_close(last, reference, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
def test_cuda_bf16_channels_last():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU test not run")
    model = SimVP(tiny()).cuda().to(memory_format=torch.channels_last)
    x = example_input(model.config).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = model(x)
    y.float().mean().backward()
    assert y.shape == (2, 3, 2, 13, 19) and torch.isfinite(y).all()


# ---------------------------------------------------------------------------------------------
# Export


@pytest.mark.parametrize(
    ("which", "dynamo"),
    [
        ("simvp", False),
        ("class_ids", False),
        ("unet", False),
        pytest.param("class_ids", True, marks=pytest.mark.slow),  # torch.export takes ~7 s
    ],
)
def test_onnx_matches_pytorch(tmp_path, which, dynamo):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is part of the test extras")
    torch.manual_seed(0)
    if which == "unet":
        model, x = UNet(UNetConfig(base_channels=4, depth=2)), torch.rand(1, 3, 13, 19)
    else:
        config = VARIANTS["class_ids" if which == "class_ids" else "gsta"]
        model, x = SimVP(config), example_input(config, batch=1)
    path = export_onnx(model, x, tmp_path / "model.onnx", dynamo=dynamo)
    batch = torch.cat([x, x.flip(0) if x.is_floating_point() else x.roll(1, dims=-1)])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": batch.numpy()})
    with torch.no_grad():
        expected = model.eval()(batch).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.parametrize("which", ["gsta", "unet"])
def test_safetensors_round_trip(tmp_path, which):
    torch.manual_seed(0)
    if which == "unet":
        model, x = UNet(UNetConfig(base_channels=4, depth=2)), torch.rand(1, 3, 16, 16)
    else:
        model, x = SimVP(tiny(translator="gsta", incep_kernels=[3, 5])), example_input(tiny())
    model(x)  # non-trivial BatchNorm statistics, which must travel too
    export_safetensors(model, model.config, tmp_path / "m.safetensors")
    loaded = load_safetensors(tmp_path / "m.safetensors")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


@dataclasses.dataclass
class NetConfig:
    """The config of `Net`, a network of a package above `models`."""

    width: int = 3


class Net(torch.nn.Module):
    """A network `models` does not know: a layer and a fitted buffer."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.linear = torch.nn.Linear(config.width, 1)
        self.register_buffer("fitted", torch.zeros(config.width))


def test_safetensors_of_a_network_from_above(tmp_path):
    """export_safetensors writes any network built from a dataclass config; load_safetensors
    rebuilds the classes it is given, by default only the models' own."""
    torch.manual_seed(0)
    net = Net(NetConfig(width=5))
    net.fitted.uniform_()
    path = export_safetensors(net, net.config, tmp_path / "net.safetensors")
    with pytest.raises(DataError, match="does not name a known model.*'Net'.*known here: SimVP, UNet"):
        load_safetensors(path)
    loaded = load_safetensors(path, classes={**MODELS, "Net": (Net, NetConfig)})
    assert type(loaded) is Net and loaded.config == net.config and not loaded.training
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(TypeError, match="dataclass config"):
        export_safetensors(net, {"width": 5}, tmp_path / "bad.safetensors")
    assert set(MODELS) == {"SimVP", "UNet"}


def test_models_import_nothing_from_objects():
    """`models` is below `objects`: the networks and their files need nothing from it."""
    import simvp_unet.models as models

    for path in sorted(Path(models.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                above = module.startswith("simvp_unet.objects") or (
                    node.level == 2 and module.split(".")[0] == "objects")
                assert not above, f"{path.name} imports {'.' * node.level}{module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("simvp_unet.objects") for a in node.names), path.name


def test_load_safetensors_bad_files(tmp_path):
    with pytest.raises(DataError, match="not found.*missing.safetensors"):
        load_safetensors(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="corrupt.safetensors"):
        load_safetensors(corrupt)


# ---------------------------------------------------------------------------------------------
# Bad configs and inputs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(spatial_channels=-4), "spatial_channels"),
        (dict(spatial_channels=7), "spatial_channels must be even"),
        (dict(temporal_blocks=1), "temporal_blocks"),
        (dict(translator="lstm"), "translator"),
        (dict(incep_kernels=(3, 4)), "incep_kernels"),
        (dict(out_frames=5), "out_frames .5. must be <= in_frames .3."),
        (dict(in_frames=0), "in_frames"),
    ],
)
def test_bad_simvp_config(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**overrides)


def test_configs_survive_a_yaml_round_trip():
    config = tiny(translator="gsta", incep_kernels=(3, 5), input_classes=4, out_channels=4)
    data = yaml.safe_load(yaml.safe_dump(to_dict(config)))
    assert from_dict(SimVPConfig, data) == config
    assert from_dict(UNetConfig, to_dict(UNetConfig(base_channels=8))) == UNetConfig(base_channels=8)


def test_a_removed_key_fails_in_one_line():
    """time_mode (retired: benchmarks/results/retired.md) is no key any more: a config that holds
    it, written by hand or by an earlier version, fails with the one-line unknown-key error."""
    stored = {**to_dict(tiny()), "time_mode": "rollout"}
    with pytest.raises(ConfigError, match="^unknown config key time_mode; valid keys: in_frames, ") as error:
        from_dict(SimVPConfig, stored)
    assert "\n" not in str(error.value)


def test_bad_config_from_yaml_values_is_a_config_error():
    with pytest.raises(ConfigError, match="translator"):
        from_dict(SimVPConfig, {"translator": "unknown"})
    with pytest.raises(ConfigError, match="base_channels"):
        from_dict(UNetConfig, {"base_channels": 0})


def test_simvp_rejects_wrong_inputs():
    model = SimVP(tiny())
    with pytest.raises(DataError, match="in_frames=3.*shape \\(2, 4, 2, 13, 19\\)"):
        model(torch.rand(2, 4, 2, 13, 19))
    with pytest.raises(DataError, match="\\(B, 3, 2, H, W\\)"):
        model(torch.rand(2, 3, 1, 13, 19))
    ids = SimVP(tiny(input_classes=5, out_channels=5))
    with pytest.raises(DataError, match="0..4"):
        ids(torch.full((1, 3, 8, 8), 5))
    with pytest.raises(DataError, match="integer class ids"):
        ids(torch.rand(1, 3, 8, 8))


def test_unet_rejects_wrong_inputs():
    with pytest.raises(DataError, match="\\(B, 3, H, W\\)"):
        UNet(UNetConfig(base_channels=4, depth=2))(torch.rand(1, 1, 16, 16))


def test_copy_prior_starts_as_copy_last_and_learns():
    """copy_prior: the untrained class-id model answers the last input mask; the scale trains."""
    config = SimVPConfig(input_classes=49, out_channels=49, spatial_channels=8, temporal_channels=16,
                         spatial_blocks=2, temporal_blocks=2, translator="gsta", copy_prior=50.0)
    model = SimVP(config)
    x = torch.randint(0, 49, (2, 11, 24, 36))
    y = model(x)
    assert torch.equal(y.argmax(2), x[:, -1:].expand(-1, 11, -1, -1))
    y.logsumexp(2).mean().backward()
    assert model.copy_prior.grad is not None and model.copy_prior.grad.abs() > 0
    plain = SimVP(SimVPConfig(input_classes=49, out_channels=49, spatial_channels=8, temporal_channels=16,
                              spatial_blocks=2, temporal_blocks=2, translator="gsta"))
    assert plain.copy_prior is None
    with pytest.raises(ConfigError, match="copy_prior"):
        SimVPConfig(copy_prior=1.0)  # RGB model: no class ids to copy
