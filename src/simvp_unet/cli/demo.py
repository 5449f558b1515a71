"""`simvp-unet demo`: the whole method end to end on freshly generated data (`simvp_unet.demo`)."""

from __future__ import annotations

import argparse

from .. import demo
from ..io import check_output_dir
from . import add_threads_option, at_least


def _demo_command(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    demo.run_demo(args.out, fast=args.fast, data_workers=args.workers)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `demo` to the main parser."""
    p = commands.add_parser(
        "demo", help="Generate data, train a model of every kind, evaluate every pipeline.",
        description=demo.__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  simvp-unet demo --out demo")
    p.add_argument("--out", default="demo", help="output folder (default: ./demo)")
    p.add_argument("--fast", action="store_true", help="tiny data and models: an end-to-end smoke test")
    p.add_argument("--workers", type=at_least(1), default=2, help="processes rendering videos (default: 2)")
    add_threads_option(p)
    p.set_defaults(handler=_demo_command)
