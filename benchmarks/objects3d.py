"""The renderers of the object path on the `objects` forecast: every object its template, as
served (templates where the objects stayed, 3D shapes where they travelled: `objects/render.py`),
and every object a 3D silhouette (`objects/silhouette.py`), all drawn by the camera fitted to
the training masks: the dynamics run's own, or for a run without one, fitted here.

    python benchmarks/objects3d.py --data data/demo --split val --dynamics runs/dyn [--segmenter runs/seg]

The dynamics run forecasts the objects of the input masks (the true ones; the segmenter's with
--segmenter) and each renderer paints frame 22 from the same forecast, the same objects as
served (`ObjectForecast.drawn`). Prints the Jaccard of
each and the seconds each renderer takes per video (the camera, read or fitted once, is timed apart).
`simvp-unet evaluate` scores both renderers at the true positions (`objects@true`, `shapes@true`).
"""

from __future__ import annotations

import argparse
import time

import torch

from simvp_unet.data.datasets import VideoDataset
from simvp_unet.evaluate import dataset_camera, video_loader
from simvp_unet.hardware import cpu_features
from simvp_unet.metrics import MaskScore
from simvp_unet.objects.placing import draw
from simvp_unet.objects.render import render
from simvp_unet.pipelines import segment_videos
from simvp_unet.runs import load_run


def main() -> None:
    """Run the measurement and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--split", default="val", help="a labeled split to score")
    parser.add_argument("--dynamics", required=True, help="dynamics run folder")
    parser.add_argument("--segmenter", help="segmenter run: forecast from its masks (default: the true masks)")
    parser.add_argument("--checkpoint", default="last", choices=("best", "last"))
    parser.add_argument("--batch", type=int, default=4, help="videos per call, as in evaluate")
    args = parser.parse_args()

    dataset = VideoDataset(args.data, args.split, masks="true", with_frames=args.segmenter is not None)
    shape = dataset.shape
    dynamics = load_run(args.dynamics, args.checkpoint)
    start = time.perf_counter()
    camera = dynamics.model.floor.camera() or dataset_camera(args.data, args.split, shape, progress=False)
    fit_seconds = time.perf_counter() - start
    if camera is None:
        raise SystemExit("no camera could be fitted to the training masks")
    segmenter = load_run(args.segmenter, args.checkpoint, fold=True) if args.segmenter else None
    scores = {"templates": MaskScore(), "as served": MaskScore(), "silhouettes": MaskScore()}
    seconds = dict.fromkeys(scores, 0.0)
    videos = 0
    with torch.inference_mode():
        for item in video_loader(dataset, args.batch):
            if segmenter is None:
                masks = item["masks"][:, : shape.input_frames].long()
            else:
                masks = segment_videos(segmenter, item["frames"][:, : shape.input_frames])
            forecast = dynamics.forecast_objects(masks)
            target = item["masks"][:, shape.target].long()
            centers = forecast.centers[:, :, shape.target_in_future]
            for name in scores:
                t0 = time.perf_counter()
                if name == "templates":
                    mask = render(forecast.tracks, centers, dynamics.model.plane, drawable=forecast.drawn)
                elif name == "as served":
                    mask = render(forecast.tracks, centers, dynamics.model.plane, camera=camera,
                                  drawable=forecast.drawn)
                else:
                    mask = draw(camera, forecast.tracks, centers, drawable=forecast.drawn)
                seconds[name] += time.perf_counter() - t0
                scores[name].update(mask, target)
            videos += len(target)
    inputs = "segmented" if segmenter is not None else "true"
    print(f"CPU: {cpu_features().summary()}; {torch.get_num_threads()} threads")
    print(f"{videos} `{args.split}` videos, input masks {inputs}; camera (read or fitted) in {fit_seconds:.1f} s: "
          f"{camera}")
    print("| renderer of the objects forecast | Jaccard | ms per video |")
    print("|---|---:|---:|")
    for name, score in scores.items():
        print(f"| {name} | {score.jaccard():.4f} | {1000 * seconds[name] / videos:.1f} |")


if __name__ == "__main__":
    main()
