"""Config resolution: dataclass defaults, then a YAML preset, then `--set key=value` overrides.

Presets are flat YAML files shipped in `simvp_unet/presets/` and named `<kind>_<name>.yaml`
(e.g. `segmenter_cpu.yaml`); each lists only what it changes from the defaults, and a path to
any YAML file works too. The resolved config, every key included, is what a run records.
Nested dataclass fields are addressed with dots: `--set model.temporal_channels=256`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


def preset_dir() -> Path:
    """Folder of the YAML presets shipped with the package."""
    return Path(str(resources.files("simvp_unet") / "presets"))


def preset_names(kind: str) -> list[str]:
    """Names of the shipped presets of one kind (e.g. 'segmenter' -> ['cpu', 'paper', 'tiny'])."""
    return sorted(p.stem[len(kind) + 1 :] for p in preset_dir().glob(f"{kind}_*.yaml"))


def read_preset(kind: str, name_or_path: str | Path) -> dict[str, Any]:
    """Read a preset by name (shipped) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = preset_dir() / f"{kind}_{name_or_path}.yaml"
        if not path.is_file():
            names = ", ".join(preset_names(kind)) or "none"
            raise ConfigError(f"unknown {kind} preset {name_or_path!r}; shipped presets: {names}")
    if not path.is_file():
        raise ConfigError(f"preset file not found: {path}")
    return read_yaml_mapping(path, "preset")


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; `what` names it in the error ("preset", ...)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of keys to values")
    return data


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _field_default(cls: type, name: str) -> Any:
    """The default value of dataclass field `name` of `cls` (built, for a default_factory); None if none."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting YAML/CLI scalars where safe."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"bad value for {key}: {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item_tp, *rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


# Settings that earlier versions wrote into every run folder, checkpoint and export, and that this
# version no longer has ("Class.field"), with the value that did what this version always does
# (why each went: benchmarks/results/retired.md). A stored config holding that value loads as if
# the key were absent; another value is refused with one line naming the setting.
RETIRED: dict[str, Any] = {
    "SegmenterConfig.jaccard_weight": 0.0,  # no soft Jaccard loss
    "DynamicsNetConfig.space": "ground",  # motion simulated on the ground plane
    "DynamicsNetConfig.learned_near_px": 0.0,  # the learned forecast for every object
}


def _drop_retired(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = {}
    for name, value in data.items():
        retired = f"{cls.__name__}.{name}"
        if retired not in RETIRED:
            out[name] = value
        elif value != RETIRED[retired]:
            raise ConfigError(f"{prefix}{name}={value!r}: this version of simvp-unet no longer has that "
                              f"setting (only {RETIRED[retired]!r} is built); train the run again")
    return out


def from_dict(cls: type[T], data: dict[str, Any], *, prefix: str = "", stored: bool = False) -> T:
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys and bad types.

    `stored=True` reads a config this package wrote (a checkpoint, a run's config.yaml, an
    exported model): a retired setting (`RETIRED`) that holds the value this version always
    builds is dropped first. User input never passes it.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping")
    if stored:
        data = _drop_retired(cls, data, prefix)
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]}; valid keys: "
            + ", ".join(prefix + k for k in types_)
        )
    kwargs = {}
    for name, value in data.items():
        tp = types_[name]
        key = prefix + name
        if dataclasses.is_dataclass(tp):
            default = _field_default(cls, name)
            if isinstance(value, dict) and default is not None:
                # a section lists what it changes from this field's default (e.g. the forecaster's
                # model), not from the defaults of the section's own class
                value = {**to_dict(default), **value}
            kwargs[name] = from_dict(tp, value, prefix=key + ".", stored=stored)
        else:
            kwargs[name] = _coerce(value, tp, key)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key=value` strings (dotted keys for nested fields; values parsed as YAML)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        *parents, last = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        node[last] = value
    return data


def resolve(cls: type[T], kind: str, preset: str | Path | None, overrides: list[str] = ()) -> T:
    """Dataclass defaults, then the preset, then the overrides; validated."""
    data = read_preset(kind, preset) if preset is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides)))


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config as a plain dict (tuples become lists, YAML-friendly)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))
