"""`simvp-unet export`: a run's network as safetensors or ONNX (`simvp_unet.runs.export`).

    simvp-unet export runs/seg --format onnx --out seg.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..io import check_output_file
from ..runs import export
from . import add_checkpoint_option, command_parser


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


def register(commands: argparse._SubParsersAction) -> None:
    """Add `export` to the main parser."""
    p = command_parser(commands, "export", "Export a run's model as safetensors or ONNX.",
                       "simvp-unet export runs/seg --format onnx --out seg.onnx",
                       "safetensors: the weights and the model config; onnx: the graph at the run's\n"
                       "working resolution (batch size dynamic).")
    p.add_argument("run", help="run folder")
    p.add_argument("--format", required=True, choices=("safetensors", "onnx"), help="file format")
    p.add_argument("--out", help="output file (default: RUN/model.<format>)")
    add_checkpoint_option(p)
    p.set_defaults(handler=_export_command)
