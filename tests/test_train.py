"""Training end to end through the real CLI on the tiny dataset, load_run, and bad settings."""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from simvp_unet.cli import main
from simvp_unet.data import layout
from simvp_unet.errors import DataError
from simvp_unet.runs import load_run
from simvp_unet.train.forecaster import ForecasterModule

H, W = layout.COMPETITION.height, layout.COMPETITION.width


def read_metrics(run: Path, version: int = 0) -> list[dict[str, str]]:
    with open(run / "logs" / f"version_{version}" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(r[name]) for r in rows if r.get(name)]


@pytest.fixture(scope="module")
def train_cli(tiny_args: Callable[[str], list[str]]) -> Callable[..., int]:
    """`train_cli(kind, data, out, *extra)`: `simvp-unet train` with the shrunk cpu preset."""

    def run(kind: str, data: Path, out: Path, *extra: str) -> int:
        return main(["train", kind, "--data", str(data), "--out", str(out), *tiny_args(kind),
                     "--workers", "0", *extra])

    return run


@pytest.fixture(scope="module")
def runs(train_cli: Callable[..., int], tiny_data: Path,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny run of each kind, trained once for the whole module."""
    base = tmp_path_factory.mktemp("runs")
    out = {kind: base / kind for kind in ("segmenter", "predictor", "forecaster")}
    assert train_cli("segmenter", tiny_data, out["segmenter"]) == 0
    # bf16 mixed precision on the CPU, as a user would select it
    assert train_cli("predictor", tiny_data, out["predictor"], "--precision", "bf16-mixed") == 0
    assert train_cli("forecaster", tiny_data, out["forecaster"]) == 0
    return out


@pytest.mark.parametrize("kind", ["segmenter", "predictor", "forecaster"])
def test_run_folder_contents(runs: dict[str, Path], kind: str) -> None:
    run = runs[kind]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["kind"] == kind and config["resolution"] == [32, 48]
    steps = 6 if kind == "segmenter" else 4  # 2 epochs of 3 (segmenter) or 2 batches
    for name in ("best", "last"):
        ckpt = torch.load(run / "checkpoints" / f"{name}.ckpt", weights_only=True)
        assert ckpt["hyper_parameters"]["kind"] == kind
        assert 0 < ckpt["global_step"] <= steps
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == steps
    # the segmenter's preset validates every 4 epochs: of 2, only the last (ValidateLastEpoch)
    validated = ["epoch_001.png"] if kind == "segmenter" else ["epoch_000.png", "epoch_001.png"]
    assert sorted(p.name for p in (run / "pictures").glob("*.png")) == validated
    rows = read_metrics(run)
    losses = column(rows, "train/loss")
    assert len(losses) == steps
    assert all(math.isfinite(v) for v in losses)
    val = column(rows, {"segmenter": "val/jaccard", "predictor": "val/mse", "forecaster": "val/jaccard"}[kind])
    assert len(val) == len(validated) and all(math.isfinite(v) for v in val)
    assert column(rows, "lr-Adam"), "the learning rate is logged"
    assert not list(run.rglob("*.tmp*")), "no temporary files left behind"


def test_segmenter_loss_decreases(runs: dict[str, Path]) -> None:
    losses = column(read_metrics(runs["segmenter"]), "train/loss")
    assert losses[-1] < losses[0]


def test_predictor_metrics_in_range(runs: dict[str, Path]) -> None:
    rows = read_metrics(runs["predictor"])
    assert all(0 <= v <= 1 for v in column(rows, "val/ssim") + column(rows, "val/mse"))
    assert all(v > 0 for v in column(rows, "val/psnr"))


def test_onecycle_schedule_is_followed(runs: dict[str, Path]) -> None:
    lrs = column(read_metrics(runs["segmenter"]), "lr-Adam")
    peak = yaml.safe_load((runs["segmenter"] / "config.yaml").read_text())["lr"]
    assert max(lrs) <= peak + 1e-12 and lrs[0] < peak / 5 and lrs[-1] < lrs[int(np.argmax(lrs))]


def test_load_run_helpers(runs: dict[str, Path]) -> None:
    seg = load_run(runs["segmenter"])
    assert not seg.training and seg.device.type == "cpu"
    images = torch.randint(0, 256, (3, 3, H, W), dtype=torch.uint8)
    masks = seg.segment(images)
    assert masks.shape == (3, H, W) and masks.dtype == torch.long
    assert int(masks.min()) >= 0 and int(masks.max()) < 49

    pred = load_run(runs["predictor"], "last")
    frames = pred.predict_frames(torch.randint(0, 256, (2, 11, 3, H, W), dtype=torch.uint8))
    assert frames.shape == (2, 11, 3, H, W) and frames.dtype == torch.uint8

    fc = load_run(runs["forecaster"])
    future = fc.forecast_masks(torch.randint(0, 49, (2, 11, H, W)))
    assert future.shape == (2, 11, H, W) and future.dtype == torch.long
    assert int(future.max()) < 49


def test_load_run_restores_the_trained_weights(runs: dict[str, Path]) -> None:
    # map_location: trained on a GPU (where there is one), the checkpoint's tensors load there
    ckpt = torch.load(runs["segmenter"] / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    module = load_run(runs["segmenter"], "last")
    for name, value in module.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][name]), name


def test_load_run_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run folder not found"):
        load_run(tmp_path / "nothing")
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(DataError, match="best.ckpt"):
        load_run(tmp_path)
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="best.ckpt is not a readable checkpoint"):
        load_run(tmp_path)


def test_rollout_finetune_from_init(runs: dict[str, Path], train_cli: Callable[..., int], tiny_data: Path,
                                    tmp_path: Path) -> None:
    out = tmp_path / "roll"
    assert train_cli("forecaster", tiny_data, out, "--init", str(runs["forecaster"]),
                     "--set", "rollout_frames=4", "--set", "lr=1e-4") == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["init_from"] == str(runs["forecaster"]) and config["rollout_frames"] == 4
    probs = column(read_metrics(out), "train/feedback_prob")
    assert probs[0] == 0.0 and probs == sorted(probs) and probs[-1] > 0.5
    assert load_run(out).forecast_masks(torch.zeros(1, 11, H, W, dtype=torch.long)).shape == (1, 11, H, W)


def test_rollout_feeds_truth_or_predictions(tiny_config: Callable[..., Any]) -> None:
    config = tiny_config("forecaster", "rollout_frames=4")
    module = ForecasterModule(config).eval()
    inputs = torch.randint(0, 49, (2, 11, 32, 48))
    future = torch.randint(0, 49, (2, 11, 32, 48))
    with torch.no_grad():
        teacher = module(inputs, future, feedback=0.0)
        own = module(inputs)
        # chunk 2 (frames 5..8) from truth: context = inputs[4:] + future[:4]
        expected = module.model(torch.cat([inputs, future[:, :4]], 1)[:, -11:])[:, :4]
        one_shot = module.model(inputs)
    assert teacher.shape == own.shape == (2, 11, 49, 32, 48)
    assert torch.allclose(teacher[:, :4], one_shot[:, :4]) and torch.allclose(own[:, :4], one_shot[:, :4])
    assert torch.allclose(teacher[:, 4:8], expected, atol=1e-5)
    assert not torch.allclose(own[:, 4:8], expected, atol=1e-5)


def test_forecaster_uses_pseudo_labels_when_present(tiny_config: Callable[..., Any], tiny_data: Path,
                                                    tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    config = tiny_config("forecaster")
    n_train = len(layout.list_videos(root, "train"))
    unlabeled = layout.list_videos(root, "unlabeled")
    train, _ = ForecasterModule.datasets(config, root)
    assert len(train) == n_train
    layout.write_mask(unlabeled[0][1] / layout.PRED_MASK_FILE, np.zeros((22, H, W), np.uint8), layout.COMPETITION)
    with pytest.raises(DataError, match="finish `simvp-unet label` first"):
        ForecasterModule.datasets(config, root)
    for _, folder in unlabeled[1:]:
        layout.write_mask(folder / layout.PRED_MASK_FILE, np.ones((22, H, W), np.uint8), layout.COMPETITION)
    train, _ = ForecasterModule.datasets(config, root)
    assert len(train) == n_train + len(unlabeled)
    assert int(train[n_train + 1]["masks"].max()) == 1  # a pseudo-label, not a true mask


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("simvp-unet: error: "), err
    return err[0]


@pytest.mark.parametrize(("kind", "extra", "message"), [
    ("segmenter", ["--set", "foo=1"], "unknown config key foo"),
    ("segmenter", ["--set", "lr=-0.1"], "lr must be positive"),
    ("predictor", ["--set", "resolution=[0,60]"], "resolution must be two positive numbers"),
    ("segmenter", ["--preset", "paper", "--set", "model.num_classes=10"], "model.num_classes must be 49"),
    ("forecaster", ["--set", "model.copy_prior=0", "--set", "model.input_classes=0"], "model.input_classes must be 49"),
    ("forecaster", ["--set", "rollout_frames=12"], "rollout_frames must be in 0..11"),
    ("segmenter", ["--set", "train_splits=[unlabeled]"], "the segmenter needs labeled videos"),
    ("segmenter", ["--preset", "nope"], "unknown segmenter preset 'nope'"),
    ("segmenter", ["--resume"], "cannot resume"),
    ("forecaster", ["--set", "background_weight=0"], "background_weight must be in (0, 1]"),
    ("forecaster", ["--set", "model.copy_prior=-1"], "copy_prior must be >= 0"),
])
def test_bad_settings_exit_2_with_one_line(tiny_args: Callable[[str], list[str]], tiny_data: Path,
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          kind: str, extra: list[str], message: str) -> None:
    argv = ["train", kind, "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--workers", "0"]
    if "--preset" not in extra and "--resume" not in extra:
        argv += tiny_args(kind)
    assert main(argv + extra) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_data_folder(train_cli: Callable[..., int], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cli("segmenter", tmp_path / "missing", tmp_path / "run") == 2
    assert "data folder not found" in one_error_line(capsys)


def test_existing_run_is_refused(runs: dict[str, Path], train_cli: Callable[..., int], tiny_data: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cli("segmenter", tiny_data, runs["segmenter"]) == 2
    assert "already holds a run; pass --resume" in one_error_line(capsys)


def test_resume_without_checkpoint_says_so(tiny_data: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("kind: segmenter\n")
    argv = ["train", "segmenter", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--resume"]
    assert main(argv) == 2
    assert "last.ckpt not found" in one_error_line(capsys)
    assert main(argv + ["--set", "lr=1"]) == 2
    assert "drop --preset, --set and --init" in one_error_line(capsys)


@pytest.mark.parametrize("argv", [["train", "--help"], ["train", "segmenter", "--help"],
                                  ["train", "predictor", "--help"], ["train", "forecaster", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_diverged_training_stops_with_one_line(train_cli: Callable[..., int], tiny_data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A NaN loss ends the run at once with a message naming lr and grad_clip, not 20 NaN epochs."""
    code = train_cli("predictor", tiny_data, tmp_path / "run", "--set", "lr=1e30", "--set", "max_steps=6",
                     "--set", "grad_clip=0", "--precision", "32-true")
    assert code == 2
    message = one_error_line(capsys)
    assert "training diverged" in message and "lower lr" in message and "grad_clip" in message



def test_forecaster_background_weight_scales_background_pixels(tiny_config: Callable[..., Any]) -> None:
    """background_weight < 1: background pixels count less in the loss than object pixels."""
    base = tiny_config("forecaster", "background_weight=1.0")
    logits = torch.randn(1, 11, 49, 4, 6)
    target = torch.zeros(1, 11, 4, 6, dtype=torch.long)
    target[..., :2, :3] = 5  # a quarter of the pixels are an object
    plain = ForecasterModule(base)._loss(logits, target)
    weighted = ForecasterModule(tiny_config("forecaster", "background_weight=0.25"))
    per_pixel = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(0, 1), reduction="none")
    w = torch.where(target.flatten(0, 1) == 0, 0.25, 1.0)
    assert torch.allclose(plain, per_pixel.mean())
    assert torch.allclose(weighted._loss(logits, target), (per_pixel * w).sum() / w.sum())
