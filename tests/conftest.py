"""Shared fixtures: a tiny generated dataset (made once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a tiny generated dataset (preset tiny: 4 train, 2 val, 4 unlabeled, 2 hidden).

    Shared by the whole session: tests must not modify it (copy it first).
    """
    from simvp_unet.config import resolve
    from simvp_unet.data.generate import GenerateConfig, generate

    root = tmp_path_factory.mktemp("tiny_data")
    generate(root, resolve(GenerateConfig, "data", "tiny"), workers=1, progress=False)
    return root
