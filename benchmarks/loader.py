"""Loader speed: clips per second of VideoDataset through a DataLoader, PNG files vs packed.

    python benchmarks/loader.py --data data/demo --split train --workers 0 2

Packs the split first if it is not packed (`simvp-unet data pack`). Clips are whole videos
(22 frames and masks), batch size 4, one pass over at most --clips clips.
"""

from __future__ import annotations

import argparse
import os
import time

from torch.utils.data import DataLoader, Subset

from simvp_unet.data.datasets import VideoDataset
from simvp_unet.data.pack import open_packed, pack_split


def clips_per_second(dataset, workers: int, clips: int) -> float:
    """One pass over the first `clips` items; returns clips per second."""
    subset = Subset(dataset, range(min(clips, len(dataset))))
    loader = DataLoader(subset, batch_size=4, num_workers=workers, shuffle=False)
    start = time.perf_counter()
    count = sum(len(batch["index"]) for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    """Run the measurement and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    masks = "true" if args.split in ("train", "val") else "none"
    if open_packed(args.data, args.split) is None:
        pack_split(args.data, args.split, progress=False)
    print("| source | workers | clips/s | load before |")
    print("|---|---|---|---|")
    for packed in (False, True):
        dataset = VideoDataset(args.data, args.split, masks=masks, packed=packed)
        for workers in args.workers:
            load = os.getloadavg()[0]
            rate = clips_per_second(dataset, workers, args.clips)
            print(f"| {'packed' if packed else 'png'} | {workers} | {rate:.1f} | {load:.2f} |")


if __name__ == "__main__":
    main()
