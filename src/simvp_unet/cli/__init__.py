"""The `simvp-unet` command line.

    simvp-unet data generate --out data/demo --preset demo
    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg
    simvp-unet evaluate --data data/demo --segmenter runs/seg --predictor runs/pred --out eval
    simvp-unet demo

Each command group lives in its own module (data, train, evaluate, predict and score, export,
label, demo, in the order of `--help`) and registers its sub-parsers here; the modules only parse and dispatch to the
library. Every failure
a user can cause or fix ends here as one line and an exit code (`errors.explain`): 2 for an
error, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .. import threads
from ..errors import explain

if TYPE_CHECKING:
    from ..pipelines import Models


def at_least(minimum: int):
    """An argparse type: an integer >= `minimum` (a bad value is argparse's usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def command_parser(commands: argparse._SubParsersAction, name: str, summary: str, example: str,
                   description: str) -> argparse.ArgumentParser:
    """A sub-command's parser whose --help gives the summary, the description and an example."""
    return commands.add_parser(name, help=summary, description=f"{summary}\n\n{description}",
                               epilog=f"example:\n  {example}",
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def thread_count(text: str) -> int | str:
    """An argparse type: a number of threads >= 1, or "auto"."""
    return text if text == "auto" else at_least(1)(text)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """--threads N|auto: compute threads of this process (default: SIMVP_UNET_THREADS, else
    OMP_NUM_THREADS if set, else auto: the cores other processes leave free)."""
    parser.add_argument("--threads", type=thread_count, default=None, metavar="N|auto",
                        help="compute threads (default auto: the cores that other processes leave free; "
                             "SIMVP_UNET_THREADS or OMP_NUM_THREADS set it too)")


def add_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    """--checkpoint best|last: which checkpoint of each run folder to load."""
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint of each run (default: best)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--segmenter RUN (required), then an optional --<kind> RUN per other kind of run, --checkpoint,
    --batch-size and --threads."""
    from ..kinds import KINDS

    for kind in KINDS:
        parser.add_argument(f"--{kind}", required=kind == "segmenter", metavar="RUN",
                            help=f"run folder of `simvp-unet train {kind}`")
    add_checkpoint_option(parser)
    parser.add_argument("--batch-size", type=at_least(1), default=4, help="videos per step (default: 4)")
    add_threads_option(parser)


def given_runs(args: argparse.Namespace) -> dict[str, str]:
    """The run folders given with `add_run_options`, by kind."""
    from ..kinds import KINDS

    return {kind: str(getattr(args, kind)) for kind in KINDS if getattr(args, kind, None) is not None}


def load_models(args: argparse.Namespace) -> Models:
    """The runs given with `add_run_options`, loaded onto the default device."""
    from ..inference import default_device
    from ..pipelines import Models

    return Models.load(given_runs(args), which=args.checkpoint, device=default_device())


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command with its --help)."""
    from . import data, demo, evaluate, export, label, predict, train

    parser = argparse.ArgumentParser(
        prog="simvp-unet",
        description="Forecast the semantic segmentation of frame 22 from frames 1..11.",
        epilog="example: simvp-unet demo --out demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"simvp-unet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in (data, train, evaluate, predict, export, label, demo):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run the command, turn user-facing failures into one line and an exit code."""
    threads.prepare()  # before torch loads (build_parser imports it): how long OpenMP's threads spin
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..hardware import keep_freed_memory

    keep_freed_memory()  # large activations reused, not zero-filled again (hardware.py)
    try:
        if hasattr(args, "threads"):  # a command that computes: choose its threads
            threads.apply(args.threads)
        result = args.handler(args)
    except (Exception, KeyboardInterrupt) as exc:
        explained = explain(exc)
        if explained is None:
            raise  # a bug: the traceback is what a bug report needs
        message, code = explained
        print(f"simvp-unet: {'error: ' if code != 130 else ''}{message}", file=sys.stderr)
        return code
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
