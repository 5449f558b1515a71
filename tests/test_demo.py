"""`simvp-unet demo --fast`: the whole method end to end through the real CLI, and its resume."""

import json

import pytest

from simvp_unet.cli import main

STEPS = ["data", "segmenter", "label", "predictor", "forecaster", "dynamics"]


@pytest.mark.slow
def test_fast_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--fast", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    for number, step in enumerate([*STEPS, "evaluate"], start=1):
        assert f"=== [{number}/{len(STEPS) + 1}] {step}:" in printed
        if step != "evaluate":
            assert (out / "steps" / f"{step}.json").is_file()
    results = json.loads((out / "eval" / "results.json").read_text())
    assert list(results["jaccard"]) == ["copy-last", "frames", "oracle", "objects@true", "shapes@true",
                                        "no-entries", "masks", "masks+absent", "objects-cv", "objects"]
    assert "| masks+absent |" in printed and "demo finished" in printed
    pictures = sorted((out / "eval" / "pictures").iterdir())
    assert pictures and all(f"picture: {p}" in printed for p in pictures)
    assert all((out / "runs" / kind / "checkpoints" / "best.ckpt").is_file()
               for kind in ("segmenter", "predictor", "forecaster", "dynamics"))

    # a second run skips every finished step; a step without its marker resumes from its files
    (out / "steps" / "forecaster.json").unlink()
    (out / "steps" / "label.json").unlink()
    pseudo = sorted((out / "data" / "unlabeled").glob("video_*/mask_pred.npy"))
    pseudo[0].unlink()
    assert main(["demo", "--out", str(out), "--fast"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("done already") == 4
    assert f"resuming {out / 'runs' / 'forecaster'}" in printed
    assert '"written": 1, "skipped": ' in printed  # only the lost pseudo-label was redone
    assert pseudo[0].is_file()

    # finished steps of a fast demo must not pass for those of the full one
    assert main(["demo", "--out", str(out)]) == 2
    assert "holds a fast demo" in capsys.readouterr().err


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and "simvp-unet demo --out demo" in text and "--fast" in text


def test_full_demo_settings_resolve_and_shorten_the_cpu_presets():
    """The full demo trains the cpu presets with its overrides: each must resolve, and the
    segmenter and the two SimVP baselines train less than their presets (the 15-minute budget)."""
    from simvp_unet.config import resolve
    from simvp_unet.demo import FULL
    from simvp_unet.kinds import KINDS

    assert FULL.train == "cpu"
    configs = {kind: KINDS[kind].config_class for kind in KINDS}
    demo = {kind: resolve(configs[kind], kind, "cpu", list(FULL.overrides(kind))) for kind in KINDS}
    preset = {kind: resolve(configs[kind], kind, "cpu", []) for kind in KINDS}
    assert demo["segmenter"].epochs < preset["segmenter"].epochs
    assert demo["segmenter"].val_every_epochs == demo["segmenter"].epochs  # one validation, at the end
    for kind in ("predictor", "forecaster"):
        assert 0 < demo[kind].limit_train_batches < preset[kind].limit_train_batches, kind
