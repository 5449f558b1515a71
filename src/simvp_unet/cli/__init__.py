"""The `simvp-unet` command line.

    simvp-unet data generate --out data/demo --preset demo
    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg
    simvp-unet evaluate --data data/demo --segmenter runs/seg --predictor runs/pred --out eval
    simvp-unet demo

Each command group lives in its own module and registers its sub-parsers here.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import SimvpUnetError


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
    """Entry point: parse, run the command, turn user errors into one line and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except SimvpUnetError as exc:
        print(f"simvp-unet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simvp-unet: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
