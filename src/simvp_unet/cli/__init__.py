"""The `simvp-unet` command line.

    simvp-unet data generate --out data/demo --preset demo
    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg
    simvp-unet evaluate --data data/demo --segmenter runs/seg --predictor runs/pred --out eval
    simvp-unet demo

Each command group lives in its own module and registers its sub-parsers here. Every failure
a user can cause or fix ends here as one line and an exit code (`errors.explain`): 2 for an
error, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import explain


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


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command with its --help)."""
    from . import data, demo, evaluate, train

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
    for module in (data, train, evaluate, demo):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run the command, turn user-facing failures into one line and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..hardware import keep_freed_memory

    keep_freed_memory()  # large activations reused, not zero-filled again (hardware.py)
    try:
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
