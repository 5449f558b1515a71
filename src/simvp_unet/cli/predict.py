"""`simvp-unet predict` and `score`: the hidden set's masks of frame 22 as a submission file,
and its score against a generated dataset's answers (`simvp_unet.submission`); or forecasts
for a folder of your own videos (`simvp_unet.videos`).

    simvp-unet predict --data data/demo --segmenter runs/seg --dynamics runs/dyn --out submission.pt
    simvp-unet predict --videos my_videos --segmenter runs/seg --dynamics runs/dyn --out forecasts
    simvp-unet score submission.pt --data data/demo
"""

from __future__ import annotations

import argparse

from ..data.layout import TaskShape
from ..errors import ConfigError
from ..io import check_output_dir, check_output_file
from ..pipelines import PIPELINES, SUBMISSION_PREFERENCE, default_row
from ..submission import predict, score
from ..videos import forecast_folder, video_folders
from . import add_run_options, command_parser, load_models


def _predict_command(args: argparse.Namespace) -> int:
    if (args.data is None) == (args.videos is None):
        raise ConfigError("predict takes --data DATA (the hidden split, a submission file) or --videos DIR "
                          "(a folder of your own videos, a folder of forecasts), one of them")
    if args.videos is not None:
        video_folders(args.videos)  # before loading any model
        check_output_dir(args.out)
        models = load_models(args)
        result = forecast_folder(args.videos, models, args.out, row=args.pipeline)
        shape = TaskShape.from_dict(result["shape"])
        print(f"wrote {args.out}: the forecast mask of frame {shape.target + 1} of {result['videos']} videos "
              f"(.png in the class palette, .npy, a picture each), pipeline {result['row']}")
        return 0
    check_output_file(args.out)  # before minutes of work
    models = load_models(args)
    name = args.pipeline or default_row(models)
    submission = predict(args.data, models, args.out, pipeline=name, batch_size=args.batch_size)
    print(f"wrote {args.out}: {len(submission)} masks of the scored frame, torch.uint8 "
          f"{tuple(submission.shape)}, pipeline {name}, ordered by ascending video index")
    return 0


def _score_command(args: argparse.Namespace) -> int:
    result = score(args.submission, args.data)
    print(f"Jaccard {result['jaccard']:.4f} on {result['videos']} hidden videos ({args.submission})")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `predict` and `score` to the main parser."""
    p = command_parser(commands, "predict", "Write the hidden set's masks of frame 22 (a submission), "
                       "or forecasts of your own videos.",
                       "simvp-unet predict --data data/demo --segmenter runs/seg --dynamics runs/dyn "
                       "--out submission.pt\n  simvp-unet predict --videos my_videos --segmenter runs/seg "
                       "--dynamics runs/dyn --out forecasts",
                       "--data: saves a torch.uint8 tensor (N, H, W) ((N, 160, 240) for the real task)\n"
                       "with torch.save, rows ordered by ascending video index of DATA/hidden.\n"
                       "--videos: DIR holds one folder of PNG frames per video (image_0.png.. or any\n"
                       "names, in natural order); the first input frames of each go in, and OUT gets\n"
                       "<video>.png (the mask in the class palette), <video>.npy and <video>_picture.png.\n"
                       "Default pipeline: the first of\n"
                       f"{', '.join(SUBMISSION_PREFERENCE)} that the given runs allow.")
    p.add_argument("--data", help="dataset root (reads DATA/hidden)")
    p.add_argument("--videos", metavar="DIR", help="a folder of video folders of PNG frames (instead of --data)")
    p.add_argument("--out", required=True, help="submission file (.pt) with --data; output folder with --videos")
    p.add_argument("--pipeline", choices=[n for n, row in PIPELINES.items() if not row.reads_frame22],
                   help="pipeline to use (default: the best the given runs allow)")
    add_run_options(p)
    p.set_defaults(handler=_predict_command)

    p = command_parser(commands, "score", "Score a submission against a generated dataset's hidden answers.",
                       "simvp-unet score submission.pt --data data/demo",
                       "Checks the tensor (integer dtype, shape (N, H, W), one mask per hidden video,\n"
                       "ids 0..48) and prints the task's Jaccard against DATA/hidden_answers/.")
    p.add_argument("submission", help="file written by `simvp-unet predict` (torch.save of a tensor)")
    p.add_argument("--data", required=True, help="dataset root with hidden/ and hidden_answers/")
    p.set_defaults(handler=_score_command)
