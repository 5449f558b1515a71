"""Multi-process training: DDP with 2 CPU processes (gloo), started by the real command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch


def simvp_unet_command() -> list[str]:
    """The installed `simvp-unet` script (Lightning's launcher re-runs it for the second process)."""
    script = Path(sys.executable).with_name("simvp-unet")
    found = str(script) if script.is_file() else shutil.which("simvp-unet")
    assert found, "the simvp-unet entry point is not installed (pip install -e .)"
    return [found]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_args: Callable[[str], list[str]], tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    result = subprocess.run(
        [*simvp_unet_command(), "train", "segmenter", "--data", str(tiny_data), "--out", str(out),
         *tiny_args("segmenter"), "--accelerator", "cpu", "--devices", "2", "--workers", "0"],
        capture_output=True, text=True, timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Starting with 2 processes" in output
    assert output.count("segmenter: best val/jaccard") == 1  # one final line, from rank 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    # 88 frames split over 2 processes: 44 each, batch 8 -> 6 batches, limited to 3 per epoch, 2 epochs
    assert ckpt["global_step"] == 6
    # the preset validates every 4 epochs: of 2, only the last (train.common.ValidateLastEpoch)
    assert sorted(p.name for p in (out / "pictures").glob("*.png")) == ["epoch_001.png"]


@pytest.mark.gpu
def test_gpu_training_and_load_run(tiny_args: Callable[[str], list[str]], tiny_data: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: GPU training is checked on a GPU machine (-m gpu)")
    from simvp_unet.cli import main
    from simvp_unet.runs import load_run

    out = tmp_path / "gpu"
    assert main(["train", "forecaster", "--data", str(tiny_data), "--out", str(out), *tiny_args("forecaster"),
                 "--accelerator", "gpu", "--devices", "1", "--precision", "bf16-mixed", "--workers", "0"]) == 0
    module = load_run(out, device="cuda")
    masks = torch.randint(0, 49, (2, 11, 160, 240), device="cuda")
    future = module.forecast_masks(masks)
    assert future.device.type == "cuda" and future.shape == (2, 11, 160, 240)
