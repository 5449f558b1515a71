"""`simvp-unet demo`: the whole method end to end, on freshly generated data.

    simvp-unet demo --out demo            # CPU presets, sized for a quarter of an hour on 2 cores
    simvp-unet demo --out /tmp/d --fast   # tiny sizes, a smoke test

Steps (each skipped when its output is complete, so an interrupted demo resumes):
  data        generate the demo dataset (`simvp-unet data generate --preset demo`)
  segmenter   train the U-Net on the labeled frames
  label       pseudo-label the unlabeled videos with it (mask_pred.npy)
  then one training per other kind of run (`kinds.KINDS`: predictor, forecaster, dynamics)
  evaluate    every row on the val split: results table and pictures
Training, labeling and evaluation use the GPU when there is one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .evaluate import evaluate
from .inference import default_device
from .io import write_json
from .kinds import KINDS
from .label import label
from .pipelines import Models
from .report import results_table
from .runs import load_run


@dataclass(frozen=True)
class DemoPresets:
    """Presets of one demo size.

    Args:
        data: data preset (`simvp_unet/presets/data_<name>.yaml`).
        train: preset of the trainers (`<kind>_<name>.yaml`).
        workers: data-loading worker processes during training.
        pictures: val videos drawn by the evaluation.
        fast: each kind's `smoke` settings (`kinds.Kind`) instead of its `demo` settings.
    """

    data: str
    train: str
    workers: int
    pictures: int
    fast: bool = False

    def overrides(self, kind: str) -> tuple[str, ...]:
        """The `key=value` settings applied after the preset to a run of `kind`."""
        return KINDS[kind].smoke if self.fast else KINDS[kind].demo


FULL = DemoPresets(data="demo", train="cpu", workers=1, pictures=4)
FAST = DemoPresets(data="tiny", train="cpu", workers=0, pictures=1, fast=True)  # a smoke test


def _header(number: int, total: int, name: str, what: str, start: float) -> None:
    elapsed = time.strftime("%H:%M:%S", time.gmtime(time.time() - start))
    print(f"\n=== [{number}/{total}] {name}: {what}  (elapsed {elapsed})", flush=True)


def _train(kind: str, data: Path, run: Path, presets: DemoPresets) -> dict[str, Any]:
    """Train one model into `run`, resuming an interrupted run of this demo."""
    from .train import Runtime, train

    runtime = Runtime(workers=presets.workers)
    if (run / "checkpoints" / "last.ckpt").is_file():
        print(f"resuming {run}")
        return train(kind, data, run, resume=True, runtime=runtime)
    if run.exists():
        # stopped before its first checkpoint: nothing worth keeping in this demo-owned folder
        print(f"starting {run} again (it stopped before its first checkpoint)")
        shutil.rmtree(run)
    return train(kind, data, run, preset=presets.train, overrides=list(presets.overrides(kind)),
                 runtime=runtime)


def run_demo(out: str | Path, *, fast: bool = False, data_workers: int = 2) -> dict[str, Any]:
    """Run (or resume) every step of the demo under `out`; returns the evaluation results.

    Args:
        out: folder for data/, runs/, eval/ and steps/ (the completed-step markers).
        fast: tiny presets (a smoke test) instead of the CPU demo presets.
        data_workers: processes rendering the videos.
    """
    from .config import resolve
    from .data.generate import GenerateConfig, generate

    presets = FAST if fast else FULL
    out = Path(out)
    data, runs, eval_dir = out / "data", out / "runs", out / "eval"
    device = default_device()
    size = "fast" if fast else "full"
    print(f"demo in {out} ({size}: data preset {presets.data}, train preset {presets.train}; "
          f"device {device})")
    # finished steps are skipped, so they must have been made at the same size
    size_file = out / "steps" / "size.json"
    if size_file.is_file():
        made = json.loads(size_file.read_text()).get("size")
        if made != size:
            raise ConfigError(f"{out} holds a {made} demo; run the {size} demo in another --out "
                              f"folder (or delete {out})")
    else:
        write_json(size_file, {"size": size})


    def trainer(kind: str) -> tuple[str, str, Callable[[], Any]]:
        return (kind, f"train the {kind} ({KINDS[kind].title})", lambda: _train(kind, data, runs / kind, presets))

    steps: list[tuple[str, str, Callable[[], Any]]] = [
        ("data", f"generate the dataset (preset {presets.data})",
         lambda: generate(data, resolve(GenerateConfig, "data", presets.data), workers=data_workers)),
        trainer("segmenter"),
        ("label", "pseudo-label the unlabeled videos with the segmenter",
         lambda: label(data, load_run(runs / "segmenter", device=device, fold=True), splits=("unlabeled",),
                       device=device)),
        *(trainer(kind) for kind in KINDS if kind != "segmenter"),
    ]
    start = time.time()
    total = len(steps) + 1
    for number, (name, what, action) in enumerate(steps, start=1):
        _header(number, total, name, what, start)
        marker = out / "steps" / f"{name}.json"
        if marker.is_file():
            print(f"done already ({marker}), skipped")
            continue
        step_start = time.time()
        summary = action()
        write_json(marker, {"seconds": round(time.time() - step_start, 1), "summary": summary})
        print(f"{name} done in {time.time() - step_start:.0f} s: {json.dumps(summary, default=str)}")

    _header(total, total, "evaluate", "every pipeline on the val split", start)
    run_dirs = {kind: str(runs / kind) for kind in KINDS}
    models = Models.load(run_dirs, device=device)
    results = evaluate(data, "val", models, eval_dir, pictures=presets.pictures, runs=run_dirs,
                       device=device)
    print()
    print(results_table(results))
    print(f"results: {eval_dir / 'results.json'}, {eval_dir / 'results.md'}")
    for picture in sorted((eval_dir / "pictures").glob("*")):
        print(f"picture: {picture}")
    for kind in run_dirs:
        print(f"training pictures: {runs / kind / 'pictures'}")
    print(f"demo finished in {time.strftime('%H:%M:%S', time.gmtime(time.time() - start))}")
    return results
