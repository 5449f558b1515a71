"""Generator speed: videos per second for 1 and 2 worker processes (160 x 240, 22 frames).

    python benchmarks/generate.py --videos 60 --workers 1 2

Writes into a temporary folder that is removed afterwards. The machine may be shared: the
load average before each run is printed beside the result.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from simvp_unet.data.generate import GenerateConfig, generate


def main() -> None:
    """Run the measurement and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=60, help="videos per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print("| workers | videos | seconds | videos/s | load before |")
    print("|---|---|---|---|---|")
    for workers in args.workers:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as root:
            # labeled videos: every file a real run writes (frames, mask, meta)
            config = GenerateConfig(train=args.videos, val=0, unlabeled=0, hidden=0, seed=123)
            summary = generate(root, config, workers=workers, progress=False)
        print(f"| {workers} | {summary['written']} | {summary['seconds']} | "
              f"{summary['videos_per_s']} | {load:.2f} |")


if __name__ == "__main__":
    main()
