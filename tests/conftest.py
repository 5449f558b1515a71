"""Shared fixtures: a tiny generated dataset (made once per test session) and the real `cpu`
training presets shrunk to tiny sizes and a few steps (`tiny_config`, `tiny_args`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The CLI run in-process keeps the test process's thread count: its choice from the free cores
# (`simvp_unet.threads`, tested in test_threads.py) would sample the load at every command and
# could leave the rest of the session on one thread.
os.environ.setdefault("SIMVP_UNET_THREADS", str(os.cpu_count() or 1))

# Overrides that shrink each kind's real `cpu` preset: 32 x 48 pixels, a few channels, 2 epochs of
# 2-3 batches. Everything else (schedule, precision, clipping, the model's recipe) stays the
# preset's, so the tests train what users train, only smaller.
_FEW_STEPS = ("resolution=[32,48]", "epochs=2", "log_every_steps=1", "pictures=2")
_TINY_SIMVP = ("batch_size=2", "limit_train_batches=2", "limit_val_batches=1", "model.spatial_channels=8",
               "model.temporal_channels=16", "model.temporal_blocks=2")
TINY: dict[str, tuple[str, ...]] = {
    "segmenter": (*_FEW_STEPS, "batch_size=8", "lr=0.003", "limit_train_batches=3", "limit_val_batches=2", "crop=16",
                  "model.base_channels=4", "model.depth=2", "model.object_stages=2"),
    "predictor": (*_FEW_STEPS, *_TINY_SIMVP),
    "forecaster": (*_FEW_STEPS, *_TINY_SIMVP, "model.embed_dim=8"),
    "dynamics": ("train_splits=[train,unlabeled]", "epochs=3", "max_steps=6", "val_every_epochs=1", "batch_size=4",
                 "log_every_steps=1", "fit_iterations=5",
                 "pictures=2", "model.hidden=16"),
}


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Any]:
    """`tiny_config(kind, *overrides)`: the resolved config of the shrunk `cpu` preset."""
    from simvp_unet.config import resolve
    from simvp_unet.kinds import KINDS

    def make(kind: str, *overrides: str) -> Any:
        return resolve(KINDS[kind].config_class, kind, "cpu", [*TINY[kind], *overrides])

    return make


@pytest.fixture(scope="session")
def tiny_args() -> Callable[[str], list[str]]:
    """`tiny_args(kind)`: the `simvp-unet train` options that select the shrunk `cpu` preset."""

    def args(kind: str) -> list[str]:
        return ["--preset", "cpu", *(arg for item in TINY[kind] for arg in ("--set", item))]

    return args


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a tiny generated dataset (preset tiny: 4 train, 2 val, 4 unlabeled, 2 hidden).

    Shared by the whole session: tests must not modify it (copy it first). On a machine without
    PyBullet (a GPU machine, say), SIMVP_UNET_TINY_DATA names one made elsewhere with
    `simvp-unet data generate --preset tiny --out DIR`.
    """
    from simvp_unet.config import resolve
    from simvp_unet.data.generate import GenerateConfig, generate

    given = os.environ.get("SIMVP_UNET_TINY_DATA")
    if given:
        if not (Path(given) / "dataset.json").is_file():
            raise pytest.UsageError(f"SIMVP_UNET_TINY_DATA={given}: not a generated dataset (no dataset.json)")
        return Path(given)
    root = tmp_path_factory.mktemp("tiny_data")
    generate(root, resolve(GenerateConfig, "data", "tiny"), workers=1, progress=False)
    return root


@pytest.fixture
def data(tiny_data: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset, without its caches (the fault tests damage it)."""
    import shutil

    return Path(shutil.copytree(tiny_data, tmp_path / "data", ignore=shutil.ignore_patterns("tracks", "packed")))
