"""Speed of the objects rows: masks of frames 1..11 -> tracks -> dynamics -> mask of frame 22.

    python benchmarks/objects.py --data data/bench --run runs/bench/dyn [--videos 100] [--repeats 3]

Segmentation is excluded (the masks are the true ones, read before timing). Each stage is
timed over the whole set of videos in batches of --batch; the figures are medians of
--repeats passes. `placing` fits every sighting's silhouette (`objects/placing.py`; a run with a
camera). `forecast_objects` is the `objects` row as served (all stages: tracks, placing, the
simulator with the network's corrections, rendering). Prints the CPU's features and the torch build with the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from simvp_unet.data import layout
from simvp_unet.data.manifest import task_shape
from simvp_unet.hardware import cpu_features
from simvp_unet.objects import DynamicsNet, DynamicsNetConfig, extract_tracks, render
from simvp_unet.objects.placing import place_tracks
from simvp_unet.objects.serve import Dynamics
from simvp_unet.runs import load_run


def main() -> None:
    """Run the measurement and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset root (reads the val split's masks)")
    parser.add_argument("--run", help="dynamics run folder (default: an untrained model of the default size)")
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4, help="videos per call, as in evaluate")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    videos = layout.list_videos(args.data, "val")[: args.videos]
    shape = task_shape(args.data)
    masks = torch.from_numpy(np.stack([layout.read_mask(f, shape)[: shape.input_frames] for _, f in videos]))
    served = load_run(args.run) if args.run else Dynamics(DynamicsNet(DynamicsNetConfig()).eval())
    model = served.model
    camera = model.floor.camera()
    times: dict[str, list[float]] = {"tracks": [], "placing": [], "dynamics": [], "render": [], "total": [],
                                     "forecast_objects": []}
    with torch.inference_mode():
        for _ in range(args.repeats):
            spent = dict.fromkeys(times, 0.0)
            for part in masks.split(args.batch):
                t0 = time.perf_counter()
                tracks = extract_tracks(part)
                t1 = time.perf_counter()
                if camera is not None:  # every sighting placed by its silhouette, as served
                    present = model.sightings(tracks.classes, tracks.present, tracks.center, tracks.size)
                    place_tracks(camera, model.plane, tracks, present)
                t1b = time.perf_counter()
                centers = model(tracks.classes, tracks.present, tracks.center, size=tracks.size, learned=True)
                t2 = time.perf_counter()
                render(tracks, centers[:, :, -1], model.plane)
                t3 = time.perf_counter()
                spent["tracks"] += t1 - t0
                spent["placing"] += t1b - t1
                spent["dynamics"] += t2 - t1b
                spent["render"] += t3 - t2
                spent["total"] += t3 - t0
                served.forecast_objects(part)  # the objects row as served
                spent["forecast_objects"] += time.perf_counter() - t3
            for name, value in spent.items():
                times[name].append(value)
    n = len(masks)
    print(f"CPU: {cpu_features().summary()}; {torch.get_num_threads()} threads")
    print(f"{n} videos, batch {args.batch}, median of {args.repeats} passes")
    print("| stage | seconds | videos/s |")
    print("|---|---:|---:|")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"| {name} | {seconds:.3f} | {n / seconds:.1f} |")


if __name__ == "__main__":
    main()
