"""`simvp-unet data ...`: generate, check, describe, show and pack datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import preset_names, resolve
from ..errors import ConfigError, DataError
from ..io import check_output_dir, check_output_file
from . import at_least


def _dataset_root(root: Path) -> Path:
    """A dataset folder that exists (one line otherwise, before any work)."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file, not a dataset folder (give the folder holding train/, val/, ...)")
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    return root


def _generate(args: argparse.Namespace) -> int:
    from ..data.generate import GenerateConfig, generate, parse_shard

    overrides = [f"{split}={getattr(args, split)}" for split in ("train", "val", "unlabeled", "hidden")
                 if getattr(args, split) is not None]
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    config = resolve(GenerateConfig, "data", args.preset, [*overrides, *args.overrides])
    shard = parse_shard(args.shard)
    check_output_dir(args.out)
    summary = generate(args.out, config, workers=args.workers, shard=shard,
                       progress=not args.quiet, preset=args.preset)
    print(f"generated {summary['written']} videos in {summary['seconds']} s "
          f"({summary['videos_per_s']} videos/s), {summary['skipped']} already done -> {args.out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..data.inspect import check

    problems = check(args.root, progress=not args.quiet)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.root}")
        return 1
    print(f"ok: {args.root}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from ..data.inspect import format_stats, stats

    _dataset_root(args.root)
    print(format_stats(stats(args.root, splits=args.split, limit=args.limit)))
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..data.inspect import show_sheet, show_video

    if args.sheet and args.video is not None:
        raise ConfigError("data show takes --video I or --sheet, not both")
    if args.video is None and not args.sheet:
        raise ConfigError("data show needs --video I or --sheet")
    _dataset_root(args.root)
    check_output_file(args.out, suffixes=(".png",) if args.sheet else (".png", ".gif"))
    if args.sheet:
        path = show_sheet(args.root, args.out, split=args.split, count=args.count)
    else:
        path = show_video(args.root, args.video, args.out)
    print(f"wrote {path}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from ..data.pack import PACKED, pack

    check_output_dir(_dataset_root(args.root) / PACKED)
    for info in pack(args.root, args.split, progress=not args.quiet):
        kept = ", already up to date" if info.get("kept") else ""
        print(f"packed {info['split']}: {len(info['indices'])} videos ({', '.join(info['arrays'])}){kept}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `data generate|check|stats|show|pack` to the main parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    data = commands.add_parser("data", help="generate, check, describe, show and pack datasets",
                               description="Dataset tools (the real task's layout).",
                               epilog="example: simvp-unet data generate --out data/demo --preset demo",
                               formatter_class=fmt)
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True

    gen = sub.add_parser(
        "generate", help="render a CLEVRER-like dataset with PyBullet",
        description="Render CLEVRER-like videos into train/, val/, unlabeled/, hidden/ and "
                    "hidden_answers/ (resumable: finished videos are skipped).\n"
                    f"Presets: {', '.join(preset_names('data'))}.\n"
                    "Settings: the defaults, then the preset, then --train/--val/--unlabeled/--hidden/"
                    "--seed and --set key=value\n(dotted keys for the world and the task shape: "
                    "docs/data.md), e.g.\n"
                    "  --set world.objects=[4,8] --set world.fov=40\n"
                    "  --set shape.frames=32 --set shape.target=29\n"
                    "  --set shape.height=128 --set shape.width=192",
        epilog="examples:\n  simvp-unet data generate --out data/demo --preset demo --workers 2\n"
               "  simvp-unet data generate --out data/dense --preset dense --set world.speed=[3,6]",
        formatter_class=fmt)
    gen.add_argument("--out", required=True, type=Path, help="dataset root to create or complete")
    gen.add_argument("--preset", default="tiny",
                     help=f"split sizes and world: {', '.join(preset_names('data'))} or a YAML file "
                          "(default tiny)")
    for split in ("train", "val", "unlabeled", "hidden"):
        gen.add_argument(f"--{split}", type=at_least(0), metavar="N", help=f"number of {split} videos")
    gen.add_argument("--seed", type=at_least(0), help="base seed (default from the preset)")
    gen.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one setting, e.g. world.objects=[4,8] or shape.frames=32 (repeatable)")
    gen.add_argument("--workers", type=at_least(1), default=1, help="worker processes (default 1)")
    gen.add_argument("--shard", metavar="K/N", help="only every N-th video, starting at K")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(handler=_generate)

    chk = sub.add_parser("check", help="validate every file of a dataset",
                         description="Read every frame and mask; print each problem with its file; "
                                     "exit 1 if there is any.",
                         epilog="example: simvp-unet data check data/demo", formatter_class=fmt)
    chk.add_argument("root", type=Path, help="dataset root")
    chk.add_argument("--quiet", action="store_true", help="no progress bar")
    chk.set_defaults(handler=_check)

    sts = sub.add_parser("stats", help="objects, classes and motion statistics",
                         description="Objects per video, their size in pixels, class frequencies, how "
                                     "far moving objects travel (pixels over the video), collisions, "
                                     "objects entering after the input frames (from meta.json of "
                                     "generated data, else from masks).",
                         epilog="example: simvp-unet data stats data/demo --split train val",
                         formatter_class=fmt)
    sts.add_argument("root", type=Path, help="dataset root")
    sts.add_argument("--split", nargs="+", default=None, help="splits (default: all present)")
    sts.add_argument("--limit", type=at_least(1), default=None, help="at most N videos per split")
    sts.set_defaults(handler=_stats)

    shw = sub.add_parser("show", help="picture of a video or a contact sheet",
                         description="Frames with the mask overlaid and object names (PNG or GIF), "
                                     "or a contact sheet of several videos.",
                         epilog="examples:\n  simvp-unet data show data/demo --video 3 --out v3.gif\n"
                                "  simvp-unet data show data/demo --sheet --out sheet.png",
                         formatter_class=fmt)
    shw.add_argument("root", type=Path, help="dataset root")
    shw.add_argument("--video", type=at_least(0), help="video index (any split)")
    shw.add_argument("--sheet", action="store_true", help="contact sheet of several videos")
    shw.add_argument("--split", default="train", help="split of the sheet (default train)")
    shw.add_argument("--count", type=at_least(1), default=8, help="videos on the sheet (default 8)")
    shw.add_argument("--out", required=True, type=Path, help="output .png or .gif")
    shw.set_defaults(handler=_show)

    pck = sub.add_parser("pack", help="pack splits into memory-mapped arrays for fast loading",
                         description="Write <root>/packed/<split>.*.npy; the datasets use them "
                                     "automatically while they match the video folders.",
                         epilog="example: simvp-unet data pack data/demo", formatter_class=fmt)
    pck.add_argument("root", type=Path, help="dataset root")
    pck.add_argument("--split", nargs="+", default=None, help="splits (default: all present)")
    pck.add_argument("--quiet", action="store_true", help="no progress bar")
    pck.set_defaults(handler=_pack)
