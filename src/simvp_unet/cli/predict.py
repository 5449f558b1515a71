"""`simvp-unet predict` and `score`: the hidden set's masks of frame 22 as a submission file,
and its score against a generated dataset's answers (`simvp_unet.submission`).

    simvp-unet predict --data data/demo --segmenter runs/seg --dynamics runs/dyn --out submission.pt
    simvp-unet score submission.pt --data data/demo
"""

from __future__ import annotations

import argparse

from ..io import check_output_file
from ..pipelines import PIPELINES, SUBMISSION_PREFERENCE, default_row
from ..submission import predict, score
from . import add_run_options, command_parser, load_models


def _predict_command(args: argparse.Namespace) -> int:
    check_output_file(args.out)  # before minutes of work
    models = load_models(args)
    name = args.pipeline or default_row(models)
    submission = predict(args.data, models, args.out, pipeline=name, batch_size=args.batch_size)
    print(f"wrote {args.out}: {len(submission)} masks of frame 22, torch.uint8 "
          f"{tuple(submission.shape)}, pipeline {name}, ordered by ascending video index")
    return 0


def _score_command(args: argparse.Namespace) -> int:
    result = score(args.submission, args.data)
    print(f"Jaccard {result['jaccard']:.4f} on {result['videos']} hidden videos ({args.submission})")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `predict` and `score` to the main parser."""
    p = command_parser(commands, "predict", "Write the hidden set's masks of frame 22 (a submission).",
                       "simvp-unet predict --data data/demo --segmenter runs/seg --dynamics runs/dyn "
                       "--out submission.pt",
                       "Saves a torch.uint8 tensor (N, 160, 240) with torch.save, rows ordered by\n"
                       "ascending video index of DATA/hidden. Default pipeline: the first of\n"
                       f"{', '.join(SUBMISSION_PREFERENCE)} that the given runs allow.")
    p.add_argument("--data", required=True, help="dataset root (reads DATA/hidden)")
    p.add_argument("--out", required=True, help="submission file (.pt)")
    p.add_argument("--pipeline", choices=[n for n, row in PIPELINES.items() if not row.reads_frame22],
                   help="pipeline to use (default: the best the given runs allow)")
    add_run_options(p)
    p.set_defaults(handler=_predict_command)

    p = command_parser(commands, "score", "Score a submission against a generated dataset's hidden answers.",
                       "simvp-unet score submission.pt --data data/demo",
                       "Checks the tensor (integer dtype, shape (N, 160, 240), one mask per hidden video,\n"
                       "ids 0..48) and prints the task's Jaccard against DATA/hidden_answers/.")
    p.add_argument("submission", help="file written by `simvp-unet predict` (torch.save of a tensor)")
    p.add_argument("--data", required=True, help="dataset root with hidden/ and hidden_answers/")
    p.set_defaults(handler=_score_command)
