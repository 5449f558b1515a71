"""Commands that use trained runs: evaluate, predict, score, export, label (parsers and handlers).

    simvp-unet evaluate --data data/demo --segmenter runs/seg --predictor runs/pred \\
        --forecaster runs/fc --out eval
    simvp-unet predict --data data/demo --segmenter runs/seg --forecaster runs/fc --out submission.pt
    simvp-unet score submission.pt --data data/demo
    simvp-unet export runs/seg --format onnx
    simvp-unet label --data data/demo --segmenter runs/seg

The work is done by the library: `simvp_unet.evaluate`, `simvp_unet.submission`,
`simvp_unet.label` and `simvp_unet.inference.export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import pipelines
from ..errors import ConfigError
from ..evaluate import evaluate
from ..inference import default_device, export
from ..io import check_output_dir, check_output_file
from ..label import label
from ..pipelines import Models
from ..report import results_table
from ..submission import predict, score
from . import at_least

# ---------------------------------------------------------------------------- handlers


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """--segmenter (required), then one optional --<kind> RUN per other kind of run."""
    for kind in pipelines.MODEL_KINDS:
        parser.add_argument(f"--{kind}", required=kind == "segmenter", metavar="RUN",
                            help=f"run folder of `simvp-unet train {kind}`")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint of each run (default: best)")
    parser.add_argument("--batch-size", type=at_least(1), default=4, help="videos per step (default: 4)")


def _runs(args: argparse.Namespace) -> dict[str, str]:
    """The run folders given, by kind."""
    return {kind: str(getattr(args, kind)) for kind in pipelines.MODEL_KINDS
            if getattr(args, kind) is not None}


def _models(args: argparse.Namespace) -> Models:
    return Models.load(_runs(args), which=args.checkpoint, device=default_device())


def _evaluate_command(args: argparse.Namespace) -> int:
    check_output_dir(args.out)  # before minutes of work
    results = evaluate(args.data, args.split, _models(args), args.out, batch_size=args.batch_size,
                       limit=args.limit, pictures=args.pictures, runs=_runs(args),
                       input_masks=args.input_masks)
    print(results_table(results))
    out = Path(args.out)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}")
    if args.pictures:
        print(f"pictures: {out / 'pictures'}")
    return 0


def _predict_command(args: argparse.Namespace) -> int:
    check_output_file(args.out)  # before minutes of work
    models = _models(args)
    name = args.pipeline or pipelines.default_row(models)
    submission = predict(args.data, models, args.out, pipeline=name, batch_size=args.batch_size)
    print(f"wrote {args.out}: {len(submission)} masks of frame 22, torch.uint8 "
          f"{tuple(submission.shape)}, pipeline {name}, ordered by ascending video index")
    return 0


def _score_command(args: argparse.Namespace) -> int:
    result = score(args.submission, args.data)
    print(f"Jaccard {result['jaccard']:.4f} on {result['videos']} hidden videos ({args.submission})")
    return 0


def _label_command(args: argparse.Namespace) -> int:
    for split in args.splits:  # pseudo-labels are written beside the frames
        if (Path(args.data) / split).is_dir():
            check_output_dir(Path(args.data) / split)
    models = Models.load({"segmenter": args.segmenter}, which=args.checkpoint, device=default_device())
    report = label(args.data, models.segmenter, splits=tuple(args.splits), batch_size=args.batch_size)
    for split, counts in report.items():
        print(f"{split}: wrote {counts['written']} mask_pred.npy, skipped {counts['skipped']} "
              "already labeled")
    return 0


def _rows_help() -> str:
    """The rows of the results table and the runs each needs, one line each."""
    return "\n".join(f"  {row.name:<13} {row.description} (needs {', '.join(row.needs)})"
                     for row in pipelines.PIPELINES.values())


def _export_command(args: argparse.Namespace) -> int:
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401 - only to say what to install before any work
        except ImportError:
            raise ConfigError("--format onnx needs the onnx package: pip install 'simvp-unet[onnx]' "
                              "(or pip install onnx)") from None
    check_output_file(args.out if args.out is not None else Path(args.run) / f"model.{args.format}")
    out = export(args.run, args.format, args.out, which=args.checkpoint)
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------------- parsers


def _parser(commands: argparse._SubParsersAction, name: str, summary: str, example: str,
            description: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=f"{summary}\n\n{description}",
                               epilog=f"example:\n  {example}",
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def register(commands: argparse._SubParsersAction) -> None:
    """Add evaluate, predict, score, export and label to the main parser."""
    p = _parser(commands, "evaluate", "Score every pipeline on a labeled split.",
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
    _add_run_options(p)
    p.set_defaults(handler=_evaluate_command)

    p = _parser(commands, "predict", "Write the hidden set's masks of frame 22 (a submission).",
                "simvp-unet predict --data data/demo --segmenter runs/seg --dynamics runs/dyn "
                "--out submission.pt",
                "Saves a torch.uint8 tensor (N, 160, 240) with torch.save, rows ordered by\n"
                "ascending video index of DATA/hidden. Default pipeline: the first of\n"
                f"{', '.join(pipelines.SUBMISSION_PREFERENCE)} that the given runs allow.")
    p.add_argument("--data", required=True, help="dataset root (reads DATA/hidden)")
    p.add_argument("--out", required=True, help="submission file (.pt)")
    p.add_argument("--pipeline", choices=[n for n, row in pipelines.PIPELINES.items() if not row.reads_frame22],
                   help="pipeline to use (default: the best the given runs allow)")
    _add_run_options(p)
    p.set_defaults(handler=_predict_command)

    p = _parser(commands, "score", "Score a submission against a generated dataset's hidden answers.",
                "simvp-unet score submission.pt --data data/demo",
                "Checks the tensor (integer dtype, shape (N, 160, 240), one mask per hidden video,\n"
                "ids 0..48) and prints the task's Jaccard against DATA/hidden_answers/.")
    p.add_argument("submission", help="file written by `simvp-unet predict` (torch.save of a tensor)")
    p.add_argument("--data", required=True, help="dataset root with hidden/ and hidden_answers/")
    p.set_defaults(handler=_score_command)

    p = _parser(commands, "export", "Export a run's model as safetensors or ONNX.",
                "simvp-unet export runs/seg --format onnx --out seg.onnx",
                "safetensors: the weights and the model config; onnx: the graph at the run's\n"
                "working resolution (batch size dynamic).")
    p.add_argument("run", help="run folder")
    p.add_argument("--format", required=True, choices=("safetensors", "onnx"), help="file format")
    p.add_argument("--out", help="output file (default: RUN/model.<format>)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint (default: best)")
    p.set_defaults(handler=_export_command)

    p = _parser(commands, "label", "Pseudo-label videos with the segmenter (writes mask_pred.npy).",
                "simvp-unet label --data data/demo --segmenter runs/seg",
                "Segments every frame of each video and writes video_<i>/mask_pred.npy (uint8\n"
                "(22, 160, 240)) atomically; videos that have one are skipped, so an interrupted\n"
                "run resumes. mask.npy is never touched.")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--splits", nargs="+", default=["unlabeled"],
                   help="splits to label (default: unlabeled)")
    p.add_argument("--segmenter", required=True, metavar="RUN", help="segmenter run folder")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint (default: best)")
    p.add_argument("--batch-size", type=at_least(1), default=2, help="videos per step (default: 2)")
    p.set_defaults(handler=_label_command)
