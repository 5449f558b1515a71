"""Frames per second of the segmenter and of `simvp-unet label`, before and after issue 12.

    python benchmarks/label.py --data data/bench --segmenter runs/seg            # this CPU
    python benchmarks/label.py --data data/bench --segmenter runs/seg --isa avx2 # as on AVX2

"before": the module as `load_run` gave it before (a channels_last U-Net), the logits upsampled
in full to 160 x 240, then the argmax, with glibc's default allocator. "after": what `simvp-unet
label` runs now: `load_run(..., fold=True)` (models/fold.py), `Segmenter.segment`, and the
allocator setting of `simvp-unet` (`hardware.keep_freed_memory`, global to a process). So each
measurement is a fresh child process, the two alternating (before, after, before, ...) for
--rounds rounds; each child times `segment` on 32 frames in memory and `label` end to end (read
the PNGs of --videos videos, segment their 22 frames, write mask_pred.npy) on its own copy of
those videos, --repeats times after a warm-up, and the report gives the medians over the
rounds. The masks of the two must be identical; the script says how many pixels differ.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from simvp_unet.data import layout  # noqa: E402
from simvp_unet.data.manifest import task_shape  # noqa: E402
from simvp_unet.hardware import cpu_features, keep_freed_memory  # noqa: E402
from simvp_unet.inference import in_chunks, logits_to_size  # noqa: E402
from simvp_unet.label import label  # noqa: E402
from simvp_unet.runs import load_run  # noqa: E402


class Before:
    """The segmenter's `segment` as it was: full upsampling of the logits, then the argmax; the
    split head's half-resolution object logits from the concatenated features, as they were."""

    def __init__(self, module):
        self.module = module
        model = module.model
        if model.config.head == "split":

            def half_object_logits(stages: list[torch.Tensor]) -> torch.Tensor:
                half = stages[-2]
                coarser = stages[len(stages) - 1 - model.config.object_stages:-2]
                features = torch.cat([half, *(F.interpolate(f, size=half.shape[-2:], mode="bilinear",
                                                            align_corners=False) for f in reversed(coarser))], dim=1)
                return model.head_objects(features)

            model._half_object_logits = half_object_logits

    @torch.inference_mode()
    def segment(self, images: torch.Tensor, *, chunk: int = 32) -> torch.Tensor:
        with self.module.autocast():
            return torch.cat([logits_to_size(self.module(part), images.shape[-2:]).argmax(1)
                              for part in in_chunks(images, chunk)])


def copy_videos(data: Path, videos: int, out: Path) -> list[Path]:
    """The first `videos` unlabeled videos of `data`, frames only, under out/unlabeled."""
    folders = []
    for _, folder in layout.list_videos(data, "unlabeled")[:videos]:
        target = out / "unlabeled" / folder.name
        target.mkdir(parents=True)
        for t in range(task_shape(data).frames):
            shutil.copy(folder / layout.frame_name(t), target)
        folders.append(target)
    return folders


def child(args: argparse.Namespace) -> None:
    """One process: time one setting, print its medians as JSON, save its masks to --masks-out."""
    after = args.child == "after"
    applied = keep_freed_memory() if after else False
    torch.set_num_threads(args.threads)
    segmenter = load_run(args.segmenter, fold=True) if after else Before(load_run(args.segmenter))
    tmp = Path(tempfile.mkdtemp())
    folders = copy_videos(Path(args.data), args.videos, tmp)
    shape = task_shape(args.data)
    frames = torch.from_numpy(np.stack([layout.read_frames(f, range(shape.frames)) for f in folders[:2]]))
    images = frames.permute(0, 1, 4, 2, 3).reshape(-1, 3, *shape.size)[:32].contiguous()

    def label_once() -> dict[str, np.ndarray]:
        for folder in folders:
            (folder / layout.PRED_MASK_FILE).unlink(missing_ok=True)
        label(tmp, segmenter, splits=("unlabeled",), progress=False, device="cpu")
        return {f.name: layout.read_mask(f, shape, predicted=True) for f in folders}

    masks = label_once()  # warm-up, and the answers
    segmenter.segment(images)
    times: dict[str, list[float]] = {"segment": [], "label": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        segmenter.segment(images)
        times["segment"].append(time.perf_counter() - start)
        start = time.perf_counter()
        label_once()
        times["label"].append(time.perf_counter() - start)
    shutil.rmtree(tmp)
    np.savez(args.masks_out, **masks)
    n = {"segment": len(images), "label": args.videos * shape.frames}
    print(json.dumps({"applied": applied, **{k: n[k] / statistics.median(v) for k, v in times.items()}}))


def main() -> None:
    parser = argparse.ArgumentParser(description="Frames/s of segment and label, before and after issue 12.",
                                     epilog="example: python benchmarks/label.py --data data/bench --segmenter runs/seg")
    parser.add_argument("--data", required=True, help="dataset root with unlabeled/ videos")
    parser.add_argument("--segmenter", required=True, help="segmenter run folder")
    parser.add_argument("--videos", type=int, default=6, help="videos labeled per repeat (default 6)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per process (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native",
                        help="avx2: limit torch and oneDNN to AVX2 (see benchmarks/models.py)")
    parser.add_argument("--child", choices=("before", "after"), help=argparse.SUPPRESS)
    parser.add_argument("--masks-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.isa == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})
    if args.child:
        child(args)
        return
    print(f"CPU: {cpu_features().summary()}; {args.threads} threads; torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, list[dict]] = {"before": [], "after": []}
    tmp = Path(tempfile.mkdtemp())
    env = {k: v for k, v in os.environ.items() if k != "SIMVP_UNET_DEFAULT_MALLOC"}
    for r in range(args.rounds):
        for name in results:
            command = [sys.executable, __file__, *sys.argv[1:], "--child", name,
                       "--masks-out", str(tmp / f"{name}.npz")]
            out = subprocess.run(command, env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"the {name} process failed:\n{out.stderr[-2000:]}")
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {name}: {results[name][-1]}", flush=True)
    masks = {name: np.load(tmp / f"{name}.npz") for name in results}
    differ = sum(int((masks["before"][k] != masks["after"][k]).sum()) for k in masks["before"].files)
    total = sum(masks["before"][k].size for k in masks["before"].files)
    shutil.rmtree(tmp)
    print(f"\nmedians over {args.rounds} processes per setting (each the median of {args.repeats} repeats); "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| what | before frames/s | after frames/s | after / before |\n|---|---:|---:|---:|")
    for what in ("segment", "label"):
        b, a = (statistics.median(x[what] for x in results[k]) for k in ("before", "after"))
        print(f"| {what} | {b:.1f} | {a:.1f} | {a / b:.2f}x |")
    print(f"pseudo-label pixels that differ between before and after: {differ} of {total}")


if __name__ == "__main__":
    main()
