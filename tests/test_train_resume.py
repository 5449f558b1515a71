"""A run killed and resumed ends like an uninterrupted one: same steps, same LR schedule, the
same weights to the bit, for every kind, whether it was killed mid-epoch or after the
checkpoint at an epoch's end."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from simvp_unet.cli import main
from simvp_unet.kinds import KINDS
from simvp_unet.train.segmenter import SegmenterModule

# 2 epochs x 3 batches = 6 steps; last.ckpt every 2 steps, so a kill at step 4 is mid-epoch 2
SETTINGS = ["--set", "checkpoint_every_steps=2", "--set", "limit_train_batches=3", "--set", "epochs=2"]
KILL_AT = 4


class SimulatedKill(Exception):
    pass


def train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "segmenter", "--data", str(data), "--out", str(out), "--workers", "0", *extra])


def lr_by_step(run: Path, version: int) -> dict[int, float]:
    with open(run / "logs" / f"version_{version}" / "metrics.csv") as f:
        return {int(r["step"]): float(r["lr-Adam"]) for r in csv.DictReader(f) if r.get("lr-Adam")}


@pytest.mark.slow
def test_resume_continues_steps_and_schedule(tiny_args: Callable[[str], list[str]], tiny_data: Path,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train(tiny_data, straight, *tiny_args("segmenter"), *SETTINGS) == 0

    original = SegmenterModule.training_step

    def dies_at_step(self: SegmenterModule, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.global_step == KILL_AT:
            raise SimulatedKill
        return original(self, batch, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(SegmenterModule, "training_step", dies_at_step)
        with pytest.raises(SimulatedKill):
            train(tiny_data, killed, *tiny_args("segmenter"), *SETTINGS)
    half = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert half["global_step"] == KILL_AT

    assert train(tiny_data, killed, "--resume") == 0
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    sa, sb = a["lr_schedulers"][0], b["lr_schedulers"][0]
    assert sa["last_epoch"] == sb["last_epoch"] == 6 and sa["total_steps"] == sb["total_steps"]
    assert sa["_last_lr"] == pytest.approx(sb["_last_lr"])
    assert a["optimizer_states"][0]["state"][0]["step"] == b["optimizer_states"][0]["state"][0]["step"]

    # the resumed process logs the LR of steps 4 and 5 exactly as the uninterrupted run did
    before, after, reference = lr_by_step(killed, 0), lr_by_step(killed, 1), lr_by_step(straight, 0)
    assert max(before) == KILL_AT and min(after) == KILL_AT  # the killed step is done again
    assert before[KILL_AT] == pytest.approx(after[KILL_AT], rel=1e-6)
    for step, lr in after.items():
        assert lr == pytest.approx(reference[step], rel=1e-6)
    assert after[KILL_AT] != pytest.approx(reference[0])  # not a schedule restarted from scratch


# kind, settings added to the tiny preset, the step the run is killed at (before it runs). Each
# draws random numbers in its steps: the segmenter's crops, the forecaster's scheduled sampling
# (roll-out), the dynamics' windows and mirroring; all shuffle their training samples.
EXACT = {
    # 2 epochs x 3 batches, last.ckpt every 2 steps: killed at step 4, in epoch 2
    "segmenter": (["checkpoint_every_steps=2", "limit_train_batches=3"], 4),
    # 2 epochs x 2 batches, last.ckpt every step: killed at step 3, in epoch 2
    "predictor": (["checkpoint_every_steps=1"], 3),
    "forecaster": (["checkpoint_every_steps=1", "rollout_frames=4"], 3),
    # 3 epochs x 2 batches, last.ckpt after each epoch: killed at step 5, after epoch 2's
    # checkpoint; the epochs end the run though max_steps is set (it once ended one epoch short)
    "dynamics-epoch-end": (["train_splits=[train]", "batch_size=2", "epochs=3", "max_steps=100"], 5),
    # last.ckpt every step: killed at step 3, in epoch 2
    "dynamics-mid-epoch": (["train_splits=[train]", "batch_size=2", "epochs=3", "checkpoint_every_steps=1"], 3),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(EXACT))
def test_resumed_run_equals_uninterrupted(case: str, tiny_args: Callable[[str], list[str]], tiny_data: Path,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kind = case.split("-")[0]
    settings, kill_at = EXACT[case]
    module = KINDS[kind].trainer()
    argv = [*tiny_args(kind), *(arg for item in settings for arg in ("--set", item))]

    def run(out: Path, *extra: str) -> int:
        return main(["train", kind, "--data", str(tiny_data), "--out", str(out), "--workers", "0", *extra])

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run(straight, *argv) == 0
    original = module.training_step

    def dies_at_step(self: torch.nn.Module, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.global_step == kill_at:
            raise SimulatedKill
        return original(self, batch, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(module, "training_step", dies_at_step)
        with pytest.raises(SimulatedKill):
            run(killed, *argv)
    assert 0 < torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] <= kill_at
    assert run(killed, "--resume") == 0

    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] > kill_at and a["epoch"] == b["epoch"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not different, different


@pytest.mark.slow
def test_a_dynamics_run_from_before_the_floor_resumes_as_it_was(tiny_args: Callable[[str], list[str]],
                                                               tiny_data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed before the network had its camera and its fitted start resumes without
    them (no camera, tolerance 0), as it forecast when it was made."""
    from standins import as_made_before_the_floor

    from simvp_unet.runs import load_run
    from simvp_unet.train.dynamics import DynamicsModule

    settings = ["train_splits=[train]", "batch_size=2", "epochs=3", "checkpoint_every_steps=1"]
    argv = ["train", "dynamics", "--data", str(tiny_data), "--out", str(tmp_path / "old"), "--workers", "0",
            *tiny_args("dynamics"), *(arg for item in settings for arg in ("--set", item))]
    original = DynamicsModule.training_step

    def dies_at_step(self: DynamicsModule, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.global_step == 3:
            raise SimulatedKill
        return original(self, batch, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(DynamicsModule, "training_step", dies_at_step)
        with pytest.raises(SimulatedKill):
            main(argv)
    as_made_before_the_floor(tmp_path / "old" / "checkpoints" / "last.ckpt")
    assert main(["train", "dynamics", "--data", str(tiny_data), "--out", str(tmp_path / "old"), "--resume"]) == 0
    model = load_run(tmp_path / "old", "last").model
    # no camera, the mean starting velocity; the grip stays 0, frozen with the simulator's other
    # fitted numbers (`test_inference`: an old run loads with none)
    assert not model.floor.fitted and float(model.physics.window) == 0.0
