"""`simvp-unet label`: pseudo-label videos with a segmenter (`simvp_unet.label`).

    simvp-unet label --data data/demo --segmenter runs/seg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io import check_output_dir
from ..label import label
from . import add_checkpoint_option, add_threads_option, at_least, command_parser, load_models


def _label_command(args: argparse.Namespace) -> int:
    for split in args.splits:  # pseudo-labels are written beside the frames
        if (Path(args.data) / split).is_dir():
            check_output_dir(Path(args.data) / split)
    segmenter = load_models(args).segmenter
    report = label(args.data, segmenter, splits=tuple(args.splits), batch_size=args.batch_size)
    for split, counts in report.items():
        print(f"{split}: wrote {counts['written']} mask_pred.npy, skipped {counts['skipped']} "
              "already labeled")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `label` to the main parser."""
    p = command_parser(commands, "label", "Pseudo-label videos with the segmenter (writes mask_pred.npy).",
                       "simvp-unet label --data data/demo --segmenter runs/seg",
                       "Segments every frame of each video and writes video_<i>/mask_pred.npy (uint8\n"
                       "(22, 160, 240)) atomically; videos that have one are skipped, so an interrupted\n"
                       "run resumes. mask.npy is never touched.")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--splits", nargs="+", default=["unlabeled"],
                   help="splits to label (default: unlabeled)")
    p.add_argument("--segmenter", required=True, metavar="RUN", help="segmenter run folder")
    add_checkpoint_option(p)
    p.add_argument("--batch-size", type=at_least(1), default=2, help="videos per step (default: 2)")
    add_threads_option(p)
    p.set_defaults(handler=_label_command)
