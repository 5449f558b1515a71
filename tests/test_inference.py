"""The served modules: no Lightning, weights from training checkpoints, precision per device."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from simvp_unet import inference
from simvp_unet.errors import ConfigError, DataError
from simvp_unet.inference import MaskForecaster, Segmenter
from simvp_unet.models import SimVP, SimVPConfig, UNet, UNetConfig
from simvp_unet.pipelines import Models
from simvp_unet.runs import load_run


def test_serving_imports_no_lightning():
    """Serving a forecast needs no trainer: these modules must not import Lightning."""
    code = ("import sys\n"
            "import simvp_unet.pipelines, simvp_unet.inference, simvp_unet.evaluate, simvp_unet.runs\n"
            "import simvp_unet.kinds, simvp_unet.objects.serve\n"
            "import simvp_unet.submission, simvp_unet.label, simvp_unet.report\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def write_run(folder, module) -> None:
    """A run folder as the trainers write it: the LightningModule's hyper-parameters and state."""
    (folder / "checkpoints").mkdir(parents=True)
    ckpt = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(), "global_step": 0}
    torch.save(ckpt, folder / "checkpoints" / "best.ckpt")


def test_a_checkpoint_with_a_setting_this_version_lacks_is_refused_in_one_line(tiny_config, tmp_path):
    """A run whose stored config holds a setting that no longer exists (an earlier version's,
    e.g. the retired model.time_mode) is refused with one line naming the setting."""
    from simvp_unet.train.forecaster import ForecasterModule

    trainer = ForecasterModule(tiny_config("forecaster", "rollout_frames=6")).eval()
    trainer.hparams["config"]["model"]["time_mode"] = "rollout"
    write_run(tmp_path / "fc", trainer)
    with pytest.raises(DataError, match=r"unknown config key model\.time_mode.*another version") as info:
        load_run(tmp_path / "fc")
    assert "\n" not in str(info.value)


def test_models_load_checks_the_kind_of_each_run(tiny_config, tmp_path):
    from simvp_unet.train.segmenter import SegmenterModule

    write_run(tmp_path / "seg", SegmenterModule(tiny_config("segmenter")))
    models = Models.load({"segmenter": tmp_path / "seg", "forecaster": None})
    assert isinstance(models.segmenter, Segmenter) and models.forecaster is None
    with pytest.raises(ConfigError, match="is not a forecaster run"):
        Models.load({"forecaster": tmp_path / "seg"})
    with pytest.raises(ConfigError, match="unknown kind of run 'magic'"):
        Models.load({"magic": tmp_path / "seg"})


def test_a_checkpoint_whose_weights_do_not_fit_is_a_data_error(tiny_config, tmp_path):
    from simvp_unet.train.segmenter import SegmenterModule

    trainer = SegmenterModule(tiny_config("segmenter"))
    trainer.hparams["config"]["model"]["base_channels"] = 8
    write_run(tmp_path / "seg", trainer)
    with pytest.raises(DataError, match="weights do not fit the stored config") as error:
        load_run(tmp_path / "seg")
    assert "\n" not in str(error.value)


def test_a_run_of_another_version_names_the_missing_weights(tiny_config, tmp_path):
    """A dynamics run from before the model gained a part: one line naming what is missing."""
    from simvp_unet.train.dynamics import DynamicsModule

    trainer = DynamicsModule(tiny_config("dynamics"))
    write_run(tmp_path / "dyn", trainer)
    path = tmp_path / "dyn" / "checkpoints" / "best.ckpt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if ".physics." not in k}
    torch.save(ckpt, path)
    with pytest.raises(DataError, match=r"missing physics\.metric, .* and \d+ more\): a run made by another "
                                        "version") as error:
        load_run(tmp_path / "dyn")
    assert "\n" not in str(error.value)


def test_served_modules_check_the_network_for_their_role():
    with pytest.raises(ValueError, match=r"model.num_classes must be 49 \(the task has 49 classes\)"):
        Segmenter(UNet(UNetConfig(num_classes=10, base_channels=4, depth=2)), resolution=(16, 24))
    forecaster = SimVP(SimVPConfig(input_classes=49, out_channels=49, spatial_channels=8, temporal_channels=16,
                                   spatial_blocks=2, temporal_blocks=2, translator="gsta"))
    with pytest.raises(ValueError, match="rollout_frames must be in 0..11"):
        MaskForecaster(forecaster, resolution=(16, 24), rollout_frames=12)
    with pytest.raises(ValueError, match="resolution must be two positive numbers"):
        MaskForecaster(forecaster, resolution=(16,))


def test_precision_is_chosen_when_and_where_the_network_runs(monkeypatch):
    """The bf16 decision is asked for the weights' device at call time, not for the host at load time."""
    asked = []
    monkeypatch.setattr(inference, "has_native_bf16", lambda device_type: asked.append(device_type) or False)
    segmenter = Segmenter(UNet(UNetConfig(base_channels=4, depth=2)), resolution=(16, 24)).eval()
    assert asked == []
    masks = segmenter.segment(torch.zeros(2, 3, 32, 48, dtype=torch.uint8))
    assert masks.shape == (2, 32, 48) and asked == ["cpu"]


@pytest.mark.gpu
def test_a_module_loaded_on_the_cpu_and_moved_to_cuda_uses_the_gpus_precision(tiny_config, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU test not run")
    from simvp_unet.train.segmenter import SegmenterModule

    write_run(tmp_path / "seg", SegmenterModule(tiny_config("segmenter")))
    segmenter = load_run(tmp_path / "seg").to("cuda")
    context = segmenter.autocast()
    assert context.device == "cuda" and context._enabled == inference.has_native_bf16("cuda")
    images = torch.randint(0, 256, (3, 3, 160, 240), dtype=torch.uint8, device="cuda")
    masks = segmenter.segment(images)
    assert masks.device.type == "cuda" and masks.shape == (3, 160, 240)


def test_a_dynamics_run_from_before_the_floor_and_the_fitted_start_forecasts_as_it_did(tiny_config, tmp_path):
    """Runs trained before the camera's floor and the fitted starting path existed lack their
    weights: they load without a camera and with the mean starting velocity, as they forecast."""
    from standins import as_made_before_the_floor

    from simvp_unet.train.dynamics import DynamicsModule

    trainer = DynamicsModule(tiny_config("dynamics"))
    write_run(tmp_path / "dyn", trainer)
    as_made_before_the_floor(tmp_path / "dyn" / "checkpoints" / "best.ckpt")
    model = load_run(tmp_path / "dyn").model
    assert not model.floor.fitted and float(model.physics.window) == 0.0 and float(model.physics.grip) == 0.0
    assert float(model.physics.spin_up) == 0.0  # balls slide like the other shapes
    assert float(trainer.model.physics.window) > 0  # a new run starts from fitted paths
