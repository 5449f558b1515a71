"""`simvp-unet train KIND`: train one model of a kind of `kinds.KINDS` into a run folder.

    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg
    simvp-unet train segmenter --data data/demo --out runs/seg --resume
    simvp-unet train predictor --data data/demo --preset paper --out runs/pred --devices 2 --precision bf16-mixed
"""

from __future__ import annotations

import argparse

from ..config import preset_names
from ..io import check_output_dir
from ..kinds import KINDS
from . import add_threads_option, at_least

EPILOG = """\
The run folder receives config.yaml (resolved settings), checkpoints/last.ckpt and best.ckpt,
logs/ (CSV) and pictures/ (predictions vs truth after every validation).
Settings: dataclass defaults, then the preset, then --set key=value (dotted keys for the model,
e.g. --set model.temporal_channels=256 --set resolution=[40,60] --set epochs=3).

example:
  simvp-unet train {kind} --data data/demo --preset cpu --out runs/{kind}
  simvp-unet train {kind} --data data/demo --out runs/{kind} --resume
"""


def _add_kind(commands: argparse._SubParsersAction, kind: str) -> None:
    presets = ", ".join(preset_names(kind)) or "none shipped"
    parser = commands.add_parser(
        kind, help=KINDS[kind].title, description=KINDS[kind].summary,
        epilog=EPILOG.format(kind=kind), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset root (train/, val/, ...)")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder to create (or resume)")
    parser.add_argument("--preset", metavar="NAME", default=None,
                        help=f"shipped preset ({presets}) or a YAML file; default cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue RUN from checkpoints/last.ckpt with its saved config")
    parser.add_argument("--init", metavar="RUN", default=None,
                        help="start from the best weights of another run of this kind (fine-tuning); "
                             "same as --set init_from=RUN")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, ... (default auto)")
    parser.add_argument("--devices", default="auto",
                        help="devices per node (default auto); N > 1 trains with DDP")
    parser.add_argument("--num-nodes", type=at_least(1), default=1, help="machines (DDP; default 1)")
    parser.add_argument("--precision", default=None,
                        choices=["auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"],
                        help="numeric precision (default: the preset's `precision`; auto = bf16-mixed "
                             "where the GPU or CPU computes bf16 natively, else 32-true)")
    parser.add_argument("--workers", type=at_least(0), default=2, help="data-loading processes per device (default 2)")
    add_threads_option(parser)
    parser.set_defaults(handler=_run, kind=kind)


def _run(args: argparse.Namespace) -> int:
    """Train and print a final line with the best score and the checkpoint paths."""
    from ..train import Runtime, train

    check_output_dir(args.out)
    runtime = Runtime(accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
                      precision=args.precision, workers=args.workers)
    summary = train(args.kind, args.data, args.out, preset=args.preset, overrides=args.overrides,
                    resume=args.resume, init=args.init, runtime=runtime)
    if not summary["rank_zero"]:
        return 0  # the other processes of a multi-process run stay quiet
    score = summary["best_score"]
    score_text = "n/a (no validation ran)" if score is None else f"{score:.4f}"
    print(f"{args.kind}: best {summary['monitor']} {score_text}; {summary['global_step']} steps in "
          f"{summary['seconds']:.0f} s; best: {summary['best']}; last: {summary['last']}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `train KIND`, one sub-command per kind of run, to the main parser."""
    parser = commands.add_parser(
        "train", help=f"train one model: {', '.join(KINDS)}",
        description="Train one model into a run folder (Lightning: progress bar, checkpoints, "
                    "resume, multi-GPU/multi-node DDP, bf16).",
        epilog="example: simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    for kind in KINDS:
        _add_kind(kinds, kind)
