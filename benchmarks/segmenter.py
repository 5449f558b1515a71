"""The segmenter on a CPU budget: validation Jaccard against training minutes, per-class IoU, speed.

    python benchmarks/segmenter.py train --data data/bench --runs runs/segbench --isa avx2 crop48-batch32
    python benchmarks/segmenter.py report --data data/bench --runs runs/segbench  # AVX2 speed

`train` trains the named variants (below) one after the other, each with
`simvp-unet train segmenter --preset cpu --precision 32-true` plus the variant's settings, and
records its wall time in RUN/benchmark.json. `--isa avx2` limits torch's and oneDNN's kernels
to AVX2 (what a CPU without AVX-512 runs; float32, since bf16 is emulated there), so minutes
measured on a bigger CPU stand for the common one. `report` scores every trained variant
on the true frame 22 of the validation videos (the `oracle` row of the results table), and for
the kept one adds the per-class IoU, the most confused pairs of classes and the frames per second
of `Segmenter.segment` (folded, 2 threads). It writes results/segmenter.md and .json.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from provenance import provenance, write_sections

from simvp_unet.classes import CLASS_NAMES, attributes
from simvp_unet.data.datasets import FrameDataset
from simvp_unet.data.manifest import task_shape
from simvp_unet.hardware import cpu_features
from simvp_unet.metrics import MaskScore
from simvp_unet.runs import load_run

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
RESULTS = Path(__file__).parent / "results"

# name: (what it tests, settings on top of the cpu preset). The proxies train 900 steps (3 epochs
# of 300 batches, validating on 40 batches after each) to compare designs quickly; each lists
# every setting in which it differs from the shipped preset (48x48 crops in batches of 32, 34
# epochs); until then the preset trained 96x96 crops in batches of 16 (_CROP96).
_CROP96 = ("crop=96", "batch_size=16")
_PROXY = (*_CROP96, "max_steps=900", "epochs=3", "limit_train_batches=300", "val_every_epochs=1",
          "checkpoint_every_steps=300")
_NO_EXTRAS = ("model.object_stages=1",)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "old-cpu-preset": ("the cpu preset before issue 10: width 16 at 80x120 on whole frames, plain head, "
                       "cross-entropy",
                       ("resolution=[80,120]", "crop=0", "batch_size=16", "epochs=8", "model.base_channels=16",
                        "model.head=plain", "model.object_factors=[]", *_NO_EXTRAS, "val_every_epochs=1",
                        "limit_val_batches=0")),
    "proxy-plain": ("900 steps: width 8 on 96x96 crops at 160x240, plain head, cross-entropy",
                    (*_PROXY, *_NO_EXTRAS, "model.head=plain", "model.object_factors=[]")),
    "proxy-split": ("900 steps: + split head (one softmax over the 48 object classes)",
                    (*_PROXY, *_NO_EXTRAS, "model.object_factors=[]")),
    "proxy-factored": ("900 steps: + object classes as shape x material x color",
                       (*_PROXY, *_NO_EXTRAS)),
    "proxy-factored-w12": ("900 steps: proxy-factored at width 12",
                           (*_PROXY, *_NO_EXTRAS, "model.base_channels=12")),
    "proxy-stages2": ("900 steps: proxy-factored, object logits from 2 decoder stages",
                      (*_PROXY, "model.object_stages=2")),
    "proxy-stages3": ("900 steps: proxy-factored, object logits from 3 decoder stages",
                      (*_PROXY,)),
    "proxy-stages4": ("900 steps: proxy-factored, object logits from all 4 decoder stages",
                      (*_PROXY, "model.object_stages=4")),
    "kept": ("the cpu preset's first setting: 8 epochs, validating every 4",
             (*_CROP96, "epochs=8", "val_every_epochs=4")),
    "kept-16-epochs": ("the preset trained 16 epochs (6,592 steps on bench), validating every 4",
                       (*_CROP96, "epochs=16", "val_every_epochs=4")),
    "kept-9-epochs": ("the cpu preset's second setting: 9 epochs, validating once at the end",
                      (*_CROP96, "epochs=9", "val_every_epochs=9")),
    "kept-10-epochs": ("the preset at 10 epochs, validating once at the end",
                       (*_CROP96, "epochs=10", "val_every_epochs=10")),
    "fast-loss-11-epochs": ("the preset with the split head's loss read from its raw outputs "
                            "(split_cross_entropy: 1.14x faster steps), 11 epochs",
                            (*_CROP96, "epochs=11", "val_every_epochs=11")),
    "crop64-batch24": ("64x64 crops in batches of 24 (2.3x the crops per second of 96x96 in 16s, "
                       "the same pixels per second), 20 epochs",
                       ("crop=64", "batch_size=24", "epochs=20", "val_every_epochs=20")),
    "crop64-batch24-seed1": ("crop64-batch24 again with another seed (the spread of one recipe)",
                             ("crop=64", "batch_size=24", "epochs=20", "val_every_epochs=20", "seed=1")),
    "crop48-batch32": ("48x48 crops in batches of 32 (1.9x the crops per second of 64x64 in 24s), 34 "
                       "epochs (the cpu preset before the shape weight)",
                       ("crop=48", "batch_size=32", "epochs=34", "val_every_epochs=34", "factor_weights=[]")),
    "crop48-batch32-seed1": ("crop48-batch32 again with another seed",
                             ("crop=48", "batch_size=32", "epochs=34", "val_every_epochs=34", "factor_weights=[]",
                              "seed=1")),
    "crop48-batch32-seed2": ("crop48-batch32 with a third seed",
                             ("crop=48", "batch_size=32", "epochs=34", "val_every_epochs=34", "factor_weights=[]",
                              "seed=2")),
    "shape2": ("crop48-batch32 with the shape factor's cross-entropy weighted 2 (factor_weights [2, 1, 1])",
               ("factor_weights=[2, 1, 1]",)),
    "shape2-seed1": ("shape2 with another seed", ("factor_weights=[2, 1, 1]", "seed=1")),
    "shape3": ("the cpu preset as shipped: the shape's cross-entropy weighted 3 (factor_weights [3, 1, 1])",
               ("factor_weights=[3, 1, 1]",)),
    "shape3-seed1": ("shape3 with another seed", ("factor_weights=[3, 1, 1]", "seed=1")),
}


def train(args: argparse.Namespace) -> None:
    env = {**os.environ, **(AVX2_ENV if args.isa == "avx2" else {})}
    for name in args.variants:
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        run = args.runs / name
        if run.exists():
            sys.exit(f"{run} exists; remove it to train {name} again")
        command = [sys.executable, "-c", "import sys; from simvp_unet.cli import main; sys.exit(main())",
                   "train", "segmenter", "--data", str(args.data),
                   "--out", str(run), "--preset", "cpu", "--precision", "32-true",
                   *(part for item in VARIANTS[name][1] for part in ("--set", item))]
        print(f"[{name}] simvp-unet {' '.join(command[3:])}", flush=True)
        start = time.monotonic()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.monotonic() - start
        cpu = subprocess.run([sys.executable, "-c", "from simvp_unet.hardware import cpu_features; "
                              "print(cpu_features().summary())"], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        (run / "benchmark.json").write_text(json.dumps(
            {"variant": name, "train_seconds": round(seconds, 1), "isa": args.isa, "cpu": cpu}, indent=2))
        print(f"[{name}] {seconds / 60:.1f} min", flush=True)


def validation_curve(run: Path) -> list[dict[str, float]]:
    """(step, minutes, val/jaccard) at every validation of a run, from its CSV log."""
    rows = []
    for path in sorted(run.glob("logs/**/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("val/jaccard"):
                    rows.append({"step": int(row["step"]) + 1, "val_jaccard": round(float(row["val/jaccard"]), 4)})
                if row.get("time/minutes") and rows:
                    rows[-1]["minutes"] = round(float(row["time/minutes"]), 2)
    return rows


def frame22(data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The true scored frame (22) of every validation video: uint8 images (N, 3, H, W), long masks (N, H, W)."""
    frames = FrameDataset(data, "val", frames=[task_shape(data).target])
    items = [frames[i] for i in range(len(frames))]
    return (torch.stack([item["image"] for item in items]),
            torch.stack([torch.as_tensor(item["mask"]) for item in items]).long())


def frames_per_second(segmenter, images: torch.Tensor, repeats: int = 3) -> float:
    segmenter.segment(images[:4])  # warm-up: packs the folded weights
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        segmenter.segment(images)
        times.append(time.perf_counter() - start)
    return len(images) / statistics.median(times)


def confusions(confusion: torch.Tensor, top: int = 10) -> tuple[list[dict], dict[str, int]]:
    """The most frequent (true, predicted) pairs of different classes, and the wrong object
    pixels split by what differs (background involved, or shape/material/color)."""
    off = confusion.clone()
    off.fill_diagonal_(0)
    pairs = []
    for k in torch.argsort(off.flatten(), descending=True)[:top].tolist():
        t, p = divmod(k, len(CLASS_NAMES))
        pairs.append({"true": CLASS_NAMES[t], "predicted": CLASS_NAMES[p], "pixels": int(off[t, p])})
    kinds = {"object->background": 0, "background->object": 0, "shape": 0, "material": 0, "color": 0}
    for t, p in zip(*off.nonzero(as_tuple=True), strict=True):
        t, p, n = int(t), int(p), int(off[t, p])
        if t == 0 or p == 0:
            kinds["background->object" if t == 0 else "object->background"] += n
            continue
        for name, a, b in zip(("shape", "material", "color"), attributes(t), attributes(p), strict=True):
            if a != b:
                kinds[name] += n  # a pixel wrong in two attributes counts in both
    return pairs, kinds


def report(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    images, masks = frame22(args.data)
    results = {"cpu_of_this_report": cpu_features().summary(), "threads": args.threads,
               "validation_frames": len(images), "variants": {}}
    for run in sorted(p.parent for p in args.runs.glob("*/benchmark.json")):
        info = json.loads((run / "benchmark.json").read_text())
        segmenter = load_run(run, fold=True)
        score = MaskScore()
        score.update(segmenter.segment(images), masks)
        config = dataclasses.asdict(segmenter.model.config)
        entry = {**info, "description": VARIANTS.get(info["variant"], ("?",))[0],
                 "frame22_jaccard": round(score.jaccard(), 4), "curve": validation_curve(run),
                 "resolution": list(segmenter.resolution), "model": config,
                 "segment_frames_per_second": round(frames_per_second(segmenter, images[:64]), 1)}
        if info["variant"] == args.kept:
            iou = score.per_class_iou()
            entry["per_class_iou"] = {CLASS_NAMES[k]: None if v is None else round(v, 4)
                                      for k, v in enumerate(iou)}
            entry["confused_pairs"], entry["wrong_pixels_by_kind"] = confusions(score.confusion())
        results["variants"][info["variant"]] = entry
        print(f"{info['variant']}: frame 22 Jaccard {entry['frame22_jaccard']}, "
              f"{minutes(info)} min", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "segmenter.json").write_text(json.dumps(results, indent=2) + "\n")
    command = " ".join(["python benchmarks/segmenter.py", *sys.argv[1:]])
    header = ["# The segmenter on a CPU budget", "", *provenance(command)]
    write_sections(RESULTS / "segmenter.md", header, sections(results, args.kept))
    print(f"wrote {RESULTS / 'segmenter.md'} and .json")


def minutes(info: dict) -> str:
    """Training minutes, or "-" for a run timed elsewhere (its benchmark.json says how)."""
    return "-" if info.get("train_seconds") is None else f"{info['train_seconds'] / 60:.1f}"


def sections(results: dict, kept: str) -> dict[str, list[str]]:
    """The sections `report` writes into segmenter.md (the file's other sections stay)."""
    lines = ["", "Written by `benchmarks/segmenter.py report` (see its docstring for the commands). Training:",
             "`simvp-unet train segmenter --preset cpu --precision 32-true` plus each variant's settings,",
             "on `bench` (300 training videos, 6,600 labeled frames), timed as wall minutes of the whole",
             "command. Score: the task's Jaccard on the true frame 22 of the 100 validation videos (the",
             "`oracle` row). Validation during training runs on all frames of the first validation batches.",
             "", "| variant | what | CPU kernels | minutes | frame 22 Jaccard | segment, frames/s | "
             "validation curve (step: Jaccard @ min) |",
             "|---|---|---|---:|---:|---:|---|"]
    for name, v in results["variants"].items():
        curve = ", ".join(f"{c['step']}: {c['val_jaccard']:.3f}" + (f" @ {c['minutes']:.1f}" if "minutes" in c else "")
                          for c in v["curve"])
        lines.append(f"| {name} | {v['description']} | {v['isa']} | {minutes(v)} | "
                     f"{v['frame22_jaccard']:.4f} | {v['segment_frames_per_second']} | {curve} |")
    cpus = sorted({v["cpu"] for v in results["variants"].values()})
    lines += ["", "Trained on: " + "; ".join(cpus) + ".", "",
              f"Segmentation speed: `Segmenter.segment` on 64 frames (folded, {results['threads']} threads, "
              f"median of 3; float32 unless the CPU computes bf16 natively), measured on "
              f"{results['cpu_of_this_report']}.", ""]
    notes = [f"- {name}: {v['note']}" for name, v in results["variants"].items() if v.get("note")]
    lines += [*notes, ""] if notes else []
    out = {"## Variants (written by `report`)": lines}
    if kept in results["variants"]:
        out[f"## The kept segmenter ({kept})"] = kept_section(results["variants"][kept])
    return out


def kept_section(v: dict) -> list[str]:
    """The kept variant's errors: by kind, the most confused pairs, per-class IoU."""
    lines = ["", f"Model: {v['model']} at {v['resolution'][0]}x{v['resolution'][1]}.", "",
             "Wrong pixels by kind (a pixel wrong in two attributes counts in both):", "",
             "| kind | pixels |", "|---|---:|"]
    lines += [f"| {k} | {n} |" for k, n in v["wrong_pixels_by_kind"].items()]
    lines += ["", "Most confused pairs:", "", "| true | predicted | pixels |", "|---|---|---:|"]
    lines += [f"| {p['true']} | {p['predicted']} | {p['pixels']} |" for p in v["confused_pairs"]]
    lines += ["", "Per-class IoU (classes absent from the predictions and the targets: -):", "",
              "| class | IoU | class | IoU | class | IoU |", "|---|---:|---|---:|---|---:|"]
    items = [(k, "-" if x is None else f"{x:.3f}") for k, x in v["per_class_iou"].items()]
    for i in range(0, len(items), 3):
        lines.append("| " + " | ".join(f"{k} | {x}" for k, x in items[i:i + 3]) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python benchmarks/segmenter.py train --data data/bench "
                                            "--runs runs/segbench --isa avx2 crop48-batch32")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train variants, timing each")
    t.add_argument("variants", nargs="+", help=f"any of: {', '.join(VARIANTS)}")
    t.add_argument("--isa", choices=("native", "avx2"), default="avx2")
    r = sub.add_parser("report", help="score every trained variant, write results/segmenter.*")
    r.add_argument("--kept", default="shape3", help="the variant whose per-class IoU and confusions are reported")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--isa", choices=("native", "avx2"), default="avx2",
                   help="kernels the speed is measured with (default avx2: a CPU without AVX-512)")
    for p in (t, r):
        p.add_argument("--data", type=Path, required=True)
        p.add_argument("--runs", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "report" and args.isa == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        # the limits are read when torch starts: run again in a process that has them
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})
    train(args) if args.command == "train" else report(args)


if __name__ == "__main__":
    main()
