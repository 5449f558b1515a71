"""`simvp-unet evaluate`: score every pipeline on a labeled split (`simvp_unet.evaluate`).

    simvp-unet evaluate --data data/demo --segmenter runs/seg --predictor runs/pred \\
        --forecaster runs/fc --dynamics runs/dyn --out eval
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluate import evaluate
from ..io import check_output_dir
from ..pipelines import PIPELINES
from ..report import results_table
from . import add_run_options, at_least, command_parser, given_runs, load_models


def _evaluate_command(args: argparse.Namespace) -> int:
    check_output_dir(args.out)  # before minutes of work
    results = evaluate(args.data, args.split, load_models(args), args.out, batch_size=args.batch_size,
                       limit=args.limit, pictures=args.pictures, runs=given_runs(args),
                       input_masks=args.input_masks)
    print(results_table(results))
    out = Path(args.out)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}")
    if args.pictures:
        print(f"pictures: {out / 'pictures'}")
    return 0


def _rows_help() -> str:
    """The rows of the results table and the runs each needs, one line each."""
    return "\n".join(f"  {row.name:<13} {row.description} (needs {', '.join(row.needs)})"
                     for row in PIPELINES.values())


def register(commands: argparse._SubParsersAction) -> None:
    """Add `evaluate` to the main parser."""
    p = command_parser(commands, "evaluate", "Score every pipeline on a labeled split.",
                       "simvp-unet evaluate --data data/demo --segmenter runs/seg --predictor runs/pred "
                       "--forecaster runs/fc --dynamics runs/dyn --out eval",
                       "Scores every row whose runs are given:\n" + _rows_help() + "\n"
                       "Writes OUT/results.json, OUT/results.md (printed; with a breakdown by videos with\n"
                       "and without a collision or an entering object after frame 11 when meta.json is\n"
                       "there) and OUT/pictures/ (PNG and GIF per drawn video; tracks over frame 11).")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--split", default="val", help="labeled split to score (default: val)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=at_least(1), help="score only the first N videos")
    p.add_argument("--pictures", type=at_least(0), default=4, help="videos to draw (default: 4)")
    p.add_argument("--input-masks", choices=("segmented", "true"), default="segmented",
                   help="masks of frames 1..11 the forecasting rows start from: the segmenter's "
                        "(default) or the true ones (forecasting error without segmentation error)")
    add_run_options(p)
    p.set_defaults(handler=_evaluate_command)
