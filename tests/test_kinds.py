"""The kind registry: one record per kind of run, and everything else reads it."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

from simvp_unet.cli import build_parser
from simvp_unet.inference import Served
from simvp_unet.kinds import KINDS, kind_of
from simvp_unet.pipelines import Models

ROOT = Path(__file__).resolve().parent.parent


def test_each_record_names_its_trainer_served_module_and_settings():
    for name, kind in KINDS.items():
        trainer = kind.trainer()
        assert kind.name == name and trainer.kind == name, name
        assert dataclasses.is_dataclass(trainer.config_class), name
        assert callable(trainer.datasets), name
        assert issubclass(kind.served, Served) and kind.served.from_config is not Served.from_config, name
        assert kind.title and kind.summary and kind.demo and kind.smoke, name


def test_served_modules_map_back_to_their_kind():
    assert kind_of(object()) is None
    for name, kind in KINDS.items():
        assert kind_of(kind.served.__new__(kind.served)) == name


def test_the_cli_and_the_model_set_offer_every_kind():
    parser = build_parser()
    for name in KINDS:
        assert parser.parse_args(["train", name, "--data", "d", "--out", "o"]).kind == name
        args = parser.parse_args(["evaluate", "--data", "d", "--out", "o", "--segmenter", "s", f"--{name}", "r"])
        assert getattr(args, name) == "r"  # the last --segmenter wins
    assert [field.name for field in dataclasses.fields(Models)] == list(KINDS)


def test_no_second_list_of_kinds_in_the_package():
    """Outside kinds.py no literal lists three or more kind names (a registry of its own)."""
    names = "|".join(KINDS)
    listed = re.compile(rf"""(["'](?:{names})["'][^\\n]*){{3,}}""")
    files = subprocess.run(["git", "ls-files", "src"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    offenders = [f"{path}:{number}" for path in files if path.endswith(".py") and not path.endswith("kinds.py")
                 for number, line in enumerate((ROOT / path).read_text().splitlines(), 1) if listed.search(line)]
    assert offenders == []
