"""Frames per second of the segmenter and of `simvp-unet label`, before and after issue 12.

    python benchmarks/label.py --data data/bench --segmenter runs/seg            # this CPU
    python benchmarks/label.py --data data/bench --segmenter runs/seg --isa avx2 # as on AVX2

"before": the module as `load_run` gave it before (a channels_last U-Net), the logits upsampled
in full to 160 x 240, then the argmax. "after": `load_run(..., fold=True)` (models/fold.py) and
`upsampled_argmax`. Both are timed in one loop (each repeat runs both, the median counts):
`segment` on 32 frames in memory, and `label` end to end (read the PNGs of --videos videos,
segment their 22 frames, write mask_pred.npy) on a copy of those videos. The masks of the two
must be identical; the script says how many pixels differ.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

import numpy as np  # noqa: E402
import torch  # noqa: E402

from simvp_unet.data import layout  # noqa: E402
from simvp_unet.hardware import cpu_features  # noqa: E402
from simvp_unet.inference import (  # noqa: E402
    in_chunks,
    load_run,  # noqa: E402
    logits_to_size,
)
from simvp_unet.label import label  # noqa: E402


class Before:
    """The segmenter's `segment` as it was: full upsampling of the logits, then the argmax."""

    def __init__(self, module):
        self.module = module

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
        for t in range(layout.FRAMES):
            shutil.copy(folder / layout.frame_name(t), target)
        folders.append(target)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description="Frames/s of segment and label, before and after issue 12.",
                                     epilog="example: python benchmarks/label.py --data data/bench --segmenter runs/seg")
    parser.add_argument("--data", required=True, help="dataset root with unlabeled/ videos")
    parser.add_argument("--segmenter", required=True, help="segmenter run folder")
    parser.add_argument("--videos", type=int, default=6, help="videos labeled per repeat (default 6)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native",
                        help="avx2: limit torch and oneDNN to AVX2 (see benchmarks/models.py)")
    args = parser.parse_args()
    if args.isa == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_features().summary()}; {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    before = Before(load_run(args.segmenter))
    after = load_run(args.segmenter, fold=True)
    segmenters = {"before": before, "after": after}
    tmp = Path(tempfile.mkdtemp())
    folders = copy_videos(Path(args.data), args.videos, tmp)
    frames = torch.from_numpy(np.stack([layout.read_frames(folders[0]), layout.read_frames(folders[1])]))
    images = frames.permute(0, 1, 4, 2, 3).reshape(-1, 3, layout.HEIGHT, layout.WIDTH)[:32].contiguous()

    def label_once(segmenter) -> dict[str, np.ndarray]:
        for folder in folders:
            (folder / layout.PRED_MASK_FILE).unlink(missing_ok=True)
        label(tmp, segmenter, splits=("unlabeled",), progress=False, device="cpu")
        return {f.name: layout.read_mask(f, predicted=True) for f in folders}

    times = {(what, name): [] for what in ("segment", "label") for name in segmenters}
    masks = {name: label_once(s) for name, s in segmenters.items()}  # warm-up, and the answers
    for s in segmenters.values():
        s.segment(images)
    for _ in range(args.repeats):
        for name, s in segmenters.items():
            start = time.perf_counter()
            s.segment(images)
            times["segment", name].append(time.perf_counter() - start)
            start = time.perf_counter()
            label_once(s)
            times["label", name].append(time.perf_counter() - start)
    shutil.rmtree(tmp)

    differ = sum(int((masks["before"][k] != masks["after"][k]).sum()) for k in masks["before"])
    total = sum(m.size for m in masks["before"].values())
    n = {"segment": len(images), "label": args.videos * layout.FRAMES}
    print(f"\nmedian of {args.repeats} interleaved repeats; load average {os.getloadavg()[0]:.1f} at the end")
    print("| what | before frames/s | after frames/s | after / before |\n|---|---:|---:|---:|")
    for what in ("segment", "label"):
        b, a = (n[what] / statistics.median(times[what, k]) for k in ("before", "after"))
        print(f"| {what} | {b:.1f} | {a:.1f} | {a / b:.2f}x |")
    print(f"pseudo-label pixels that differ between before and after: {differ} of {total}")


if __name__ == "__main__":
    main()
