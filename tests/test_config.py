"""Presets and config resolution: every shipped preset resolves, and lists only what it changes."""

from __future__ import annotations

import pytest
import yaml

from simvp_unet.config import preset_dir, resolve, to_dict
from simvp_unet.data.generate import GenerateConfig
from simvp_unet.errors import ConfigError
from simvp_unet.kinds import KINDS
from simvp_unet.train.forecaster import ForecasterConfig

# the settings classes of every preset prefix: each kind of run's, and the data generator's
SETTINGS = {**{name: kind.config_class for name, kind in KINDS.items()}, "data": GenerateConfig}
PRESETS = sorted(path.stem for path in preset_dir().glob("*.yaml"))


def test_the_demo_and_readme_presets_are_shipped():
    for name in ("data_tiny", "data_demo", "data_bench", "data_paper"):
        assert name in PRESETS
    for kind in KINDS:
        assert f"{kind}_cpu" in PRESETS and f"{kind}_paper" in PRESETS


@pytest.mark.parametrize("stem", PRESETS)
def test_every_preset_resolves(stem):
    kind, name = stem.split("_", 1)
    config = resolve(SETTINGS[kind], kind, name)
    assert isinstance(config, SETTINGS[kind])


@pytest.mark.parametrize("stem", PRESETS)
def test_presets_list_only_what_they_change(stem):
    """A key that repeats its default hides the recipe; the run's config.yaml has every key."""
    kind, _ = stem.split("_", 1)
    listed = yaml.safe_load((preset_dir() / f"{stem}.yaml").read_text()) or {}
    defaults = to_dict(SETTINGS[kind]())
    for key, value in listed.items():
        assert key in defaults, f"{stem}: unknown key {key}"
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                assert yaml.safe_load(yaml.safe_dump(defaults[key][sub])) != sub_value, f"{stem}: {key}.{sub}"
        else:
            assert yaml.safe_load(yaml.safe_dump(defaults[key])) != value, f"{stem}: {key}"


def test_a_section_changes_the_kinds_own_default():
    """The forecaster's model defaults to class ids in and out; a partial section keeps that."""
    config = resolve(ForecasterConfig, "forecaster", None, ["model.spatial_channels=16"])
    assert config.model.input_classes == 49 and config.model.translator == "gsta"
    assert config.model.spatial_channels == 16
    with pytest.raises(ConfigError, match="unknown config key model.time_mode"):
        resolve(ForecasterConfig, "forecaster", None, ["model.time_mode=rollout"])


def test_stored_configs_drop_retired_settings_that_hold_what_is_built():
    """Run folders of the previous version hold settings this one removed: with the value this
    version always builds they load; another value, or user input naming them, is one line."""
    from simvp_unet.config import from_dict
    from simvp_unet.objects import DynamicsNetConfig
    from simvp_unet.train.segmenter import SegmenterConfig

    stored = {"hidden": 16, "space": "ground", "learned_near_px": 0.0}
    assert from_dict(DynamicsNetConfig, stored, prefix="model.", stored=True) == DynamicsNetConfig(hidden=16)
    with pytest.raises(ConfigError, match=r"model\.space='image': this version .* no longer has"):
        from_dict(DynamicsNetConfig, {"space": "image"}, prefix="model.", stored=True)
    with pytest.raises(ConfigError, match=r"unknown config key model\.space"):
        from_dict(DynamicsNetConfig, {"space": "ground"}, prefix="model.")
    saved = {**to_dict(SegmenterConfig()), "jaccard_weight": 0.0}
    assert from_dict(SegmenterConfig, saved, stored=True) == SegmenterConfig()
    with pytest.raises(ConfigError, match="jaccard_weight=1.0"):
        from_dict(SegmenterConfig, {**saved, "jaccard_weight": 1.0}, stored=True)
