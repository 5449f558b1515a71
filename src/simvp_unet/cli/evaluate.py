"""Commands that use trained runs: evaluate, predict, score, export, label.

    simvp-unet evaluate --data data/demo --segmenter runs/seg --predictor runs/pred \\
        --forecaster runs/fc --out eval
    simvp-unet predict --data data/demo --segmenter runs/seg --forecaster runs/fc --out submission.pt
    simvp-unet score submission.pt --data data/demo
    simvp-unet export runs/seg --format onnx
    simvp-unet label --data data/demo --segmenter runs/seg

The work is done by plain functions (`evaluate`, `predict`, `score`, `label`, `export`) that
the demo calls in-process; the handlers only parse arguments and load runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from .. import pipelines
from ..classes import NUM_CLASSES
from ..data import layout
from ..data.datasets import VideoDataset
from ..errors import ConfigError, DataError
from ..io import atomic_path, write_json, write_text
from ..metrics import MaskScore, named_per_class, skill
from ..pipelines import Batch, Models
from ..report import VideoPictures, results_table, save_video_pictures

# Dtypes accepted in a submission (integer class ids); predict writes uint8.
SUBMISSION_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
FRAME22 = layout.FRAMES - 1


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _loader(dataset: Any, batch_size: int, limit: int | None = None) -> DataLoader:
    if batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    if limit is not None:
        if limit <= 0:
            raise ConfigError(f"--limit must be positive, got {limit}")
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    # PNG decoding is cheap next to the models: no worker processes to compete for the CPU
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def load_models(segmenter: str | Path, predictor: str | Path | None = None,
                forecaster: str | Path | None = None, *, which: str = "best",
                device: torch.device | str = "cpu") -> Models:
    """Load the given run folders (`simvp_unet.train.load_run`, models folded for inference)
    onto `device`."""
    from ..train import load_run

    def load(run: str | Path | None) -> Any:
        return None if run is None else load_run(run, which=which, device=device, fold=True)

    return Models(segmenter=load(segmenter), predictor=load(predictor), forecaster=load(forecaster))


# ---------------------------------------------------------------------------- evaluate


def _pictures(batch: Batch, item: dict, answers: dict[str, torch.Tensor], n: int) -> list[VideoPictures]:
    """Picture material of the first `n` videos of a batch, on the CPU."""

    def cpu(x: torch.Tensor | None, k: int) -> np.ndarray | None:
        return None if x is None else x[k].cpu().numpy()

    return [VideoPictures(
        index=int(item["index"][k]), frames=item["frames"][k].numpy(), masks=item["masks"][k].numpy(),
        answers={row: mask[k].cpu().numpy() for row, mask in answers.items()},
        predicted_frames=cpu(batch.computed("predicted_frames"), k),
        input_masks=cpu(batch.computed("input_masks"), k), forecast=cpu(batch.computed("forecast"), k),
    ) for k in range(min(n, len(item["index"])))]


def evaluate(data: str | Path, split: str, models: Models, out: str | Path, *, batch_size: int = 4,
             limit: int | None = None, pictures: int = 4, runs: dict[str, str] | None = None,
             device: torch.device | str | None = None, progress: bool = True) -> dict[str, Any]:
    """Score every row the models allow on a labeled split; write results and pictures to `out`.

    Args:
        data: dataset root.
        split: a labeled split (val, train).
        models: the trained models (at least a segmenter).
        out: folder for `results.json`, `results.md` and `pictures/`.
        batch_size: videos per step.
        limit: score only the first `limit` videos (by index).
        pictures: draw this many videos.
        runs: run folders, recorded in results.json.
        device: where inference runs (default: the GPU when there is one).
        progress: show a progress bar.

    Returns:
        The content of results.json.
    """
    if split not in layout.LABELED_SPLITS:
        raise ConfigError(f"evaluation needs a labeled split ({', '.join(layout.LABELED_SPLITS)}), "
                          f"got {split!r}")
    device = torch.device(device) if device is not None else default_device()
    out = Path(out)
    loader = _loader(VideoDataset(data, split, masks="true"), batch_size, limit)
    rows = pipelines.available(models, with_frame22=True)
    scores = {row: MaskScore(device=device) for row in rows}
    drawn: list[VideoPictures] = []
    videos = 0
    with torch.inference_mode(), tqdm(total=len(loader.dataset), desc="evaluate", unit="video",
                                      disable=not progress, file=sys.stderr) as bar:
        for item in loader:
            frames = item["frames"].to(device)
            batch = Batch(models, frames[:, : layout.INPUT_FRAMES], frames[:, FRAME22])
            target = item["masks"][:, FRAME22].to(device)
            answers = {row: pipelines.run(row, batch) for row in rows}
            for row, mask in answers.items():
                scores[row].update(mask, target)
            if len(drawn) < pictures:
                drawn += _pictures(batch, item, answers, pictures - len(drawn))
            videos += len(target)
            bar.update(len(target))

    jaccard = {row: scores[row].jaccard() for row in rows}
    results = {
        "jaccard": jaccard,
        "skill": {row: skill(j, jaccard["copy-last"], jaccard["oracle"]) for row, j in jaccard.items()},
        "per_class_iou": {row: named_per_class(scores[row].per_class_iou()) for row in rows},
        "videos": videos,
        "split": split,
        "data": str(data),
        "runs": dict(runs or {}),
    }
    for video in drawn:
        save_video_pictures(out / "pictures", video)
    write_json(out / "results.json", results)
    write_text(out / "results.md", results_table(results))
    return results


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segmenter", required=True, metavar="RUN",
                        help="run folder of `simvp-unet train segmenter`")
    parser.add_argument("--predictor", metavar="RUN", help="run folder of `simvp-unet train predictor`")
    parser.add_argument("--forecaster", metavar="RUN", help="run folder of `simvp-unet train forecaster`")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint of each run (default: best)")
    parser.add_argument("--batch-size", type=int, default=4, help="videos per step (default: 4)")


def _runs(args: argparse.Namespace) -> dict[str, str]:
    return {k: str(getattr(args, k)) for k in ("segmenter", "predictor", "forecaster")
            if getattr(args, k) is not None}


def _evaluate_command(args: argparse.Namespace) -> int:
    device = default_device()
    models = load_models(args.segmenter, args.predictor, args.forecaster, which=args.checkpoint,
                         device=device)
    results = evaluate(args.data, args.split, models, args.out, batch_size=args.batch_size,
                       limit=args.limit, pictures=args.pictures, runs=_runs(args), device=device)
    print(results_table(results))
    out = Path(args.out)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}")
    if args.pictures:
        print(f"pictures: {out / 'pictures'}")
    return 0


# ---------------------------------------------------------------------------- predict, score


def default_pipeline(models: Models) -> str:
    """The best row the models allow: masks with a forecaster, else frames, else copy-last."""
    if models.forecaster is not None:
        return "masks"
    return "frames" if models.predictor is not None else "copy-last"


def predict(data: str | Path, models: Models, out: str | Path, *, pipeline: str | None = None,
            batch_size: int = 4, device: torch.device | str | None = None,
            progress: bool = True) -> torch.Tensor:
    """Masks of frame 22 for every hidden video, saved as a uint8 tensor (N, 160, 240).

    Rows are ordered by ascending video index. Returns the tensor that was saved.
    """
    name = pipeline or default_pipeline(models)
    if "frame22" in pipelines.needs(name):
        raise ConfigError(f"pipeline {name!r} needs the true frame 22; the hidden set has frames 1..11")
    missing = [n for n in pipelines.needs(name) if getattr(models, n) is None]
    if missing:
        raise ConfigError(f"pipeline {name!r} needs a {missing[0]} run (--{missing[0]} RUN)")
    device = torch.device(device) if device is not None else default_device()
    dataset = VideoDataset(data, "hidden", frames=range(layout.INPUT_FRAMES))
    indices, answers = [], []
    with torch.inference_mode(), tqdm(total=len(dataset), desc=f"predict ({name})", unit="video",
                                      disable=not progress, file=sys.stderr) as bar:
        for item in _loader(dataset, batch_size):
            mask = pipelines.run(name, Batch(models, item["frames"].to(device)))
            answers.append(mask.to(torch.uint8).cpu())
            indices += [int(i) for i in item["index"]]
            bar.update(len(mask))
    order = np.argsort(indices, kind="stable")
    submission = torch.cat(answers)[torch.from_numpy(order)].contiguous()
    with atomic_path(out) as tmp:
        torch.save(submission, tmp)
    return submission


def _predict_command(args: argparse.Namespace) -> int:
    device = default_device()
    models = load_models(args.segmenter, args.predictor, args.forecaster, which=args.checkpoint,
                         device=device)
    name = args.pipeline or default_pipeline(models)
    submission = predict(args.data, models, args.out, pipeline=name, batch_size=args.batch_size,
                         device=device)
    print(f"wrote {args.out}: {len(submission)} masks of frame 22, torch.uint8 "
          f"{tuple(submission.shape)}, pipeline {name}, ordered by ascending video index")
    return 0


def check_submission(obj: Any, path: str | Path, videos: int) -> torch.Tensor:
    """Validate a loaded submission: an integer tensor (videos, 160, 240) of ids 0..48."""
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"submission {path} holds a {type(obj).__name__}, expected a torch tensor")
    if obj.dtype not in SUBMISSION_DTYPES:
        raise DataError(f"submission {path} has dtype {obj.dtype}, expected integer class ids "
                        "(torch.uint8 or torch.int64)")
    if obj.ndim != 3 or tuple(obj.shape[1:]) != (layout.HEIGHT, layout.WIDTH):
        raise DataError(f"submission {path} has shape {tuple(obj.shape)}, expected "
                        f"(N, {layout.HEIGHT}, {layout.WIDTH})")
    if len(obj) != videos:
        raise DataError(f"submission {path} has {len(obj)} masks, the hidden set has {videos} videos")
    if obj.numel() and (int(obj.min()) < 0 or int(obj.max()) >= NUM_CLASSES):
        raise DataError(f"submission {path} holds class ids {int(obj.min())}..{int(obj.max())}, "
                        f"expected 0..{NUM_CLASSES - 1}")
    return obj


def score(submission: str | Path, data: str | Path) -> dict[str, Any]:
    """Score a submission file against `<data>/hidden_answers/` with the task's metric."""
    path = Path(submission)
    if not path.is_file():
        raise DataError(f"submission not found: {path}")
    hidden = layout.list_videos(data, "hidden")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a tensor file"
        raise DataError(f"submission {path} is not a file written by torch.save of a tensor: "
                        f"{str(exc).splitlines()[0]}") from None
    masks = check_submission(obj, path, len(hidden))
    answers_root = Path(data) / layout.ANSWERS
    if not answers_root.is_dir():
        raise DataError(f"no answers to score against: {answers_root} not found "
                        "(only generated datasets have them)")
    result = MaskScore()
    for row, (index, _) in enumerate(hidden):
        answer = layout.read_mask(answers_root / layout.video_name(index))[FRAME22]
        result.update(masks[row : row + 1], torch.from_numpy(answer)[None])
    return {"jaccard": result.jaccard(), "videos": len(hidden)}


def _score_command(args: argparse.Namespace) -> int:
    result = score(args.submission, args.data)
    print(f"Jaccard {result['jaccard']:.4f} on {result['videos']} hidden videos ({args.submission})")
    return 0


# ---------------------------------------------------------------------------- label


def label(data: str | Path, segmenter: Any, *, splits: tuple[str, ...] = ("unlabeled",),
          batch_size: int = 2, device: torch.device | str | None = None,
          progress: bool = True) -> dict[str, dict[str, int]]:
    """Write `mask_pred.npy` (uint8 (22, 160, 240)) beside every video of `splits` that lacks one.

    Resumable: videos that already have `mask_pred.npy` are skipped. `mask.npy` is never
    read or written. Returns {split: {"written": n, "skipped": n}}.
    """
    device = torch.device(device) if device is not None else default_device()
    report = {}
    for split in splits:
        if split == "hidden":
            raise ConfigError("label needs 22-frame videos; the hidden split has 11 frames")
        dataset = VideoDataset(data, split)
        todo = [n for n, (_, folder) in enumerate(dataset.videos)
                if not (folder / layout.PRED_MASK_FILE).is_file()]
        folders = dict(dataset.videos)
        with torch.inference_mode(), tqdm(total=len(todo), desc=f"label {split}", unit="video",
                                          disable=not progress, file=sys.stderr) as bar:
            for item in _loader(Subset(dataset, todo), batch_size):
                frames = item["frames"].to(device)
                flat = pipelines.segment(segmenter, rearrange(frames, "b t c h w -> (b t) c h w"))
                masks = rearrange(flat, "(b t) h w -> b t h w", b=len(frames))
                for index, mask in zip(item["index"].tolist(), masks.cpu().numpy(), strict=True):
                    layout.write_mask(folders[index] / layout.PRED_MASK_FILE, mask)
                bar.update(len(frames))
        report[split] = {"written": len(todo), "skipped": len(dataset) - len(todo)}
    return report


def _label_command(args: argparse.Namespace) -> int:
    device = default_device()
    models = load_models(args.segmenter, which=args.checkpoint, device=device)
    report = label(args.data, models.segmenter, splits=tuple(args.splits),
                   batch_size=args.batch_size, device=device)
    for split, counts in report.items():
        print(f"{split}: wrote {counts['written']} mask_pred.npy, skipped {counts['skipped']} "
              "already labeled")
    return 0


# ---------------------------------------------------------------------------- export


def export(run: str | Path, fmt: str, out: str | Path | None = None, *, which: str = "best") -> Path:
    """Export a run's model as safetensors (weights + config) or ONNX (graph at working size)."""
    from ..models import export as exporters
    from ..train import load_run

    if fmt not in ("safetensors", "onnx"):
        raise ConfigError(f"--format must be safetensors or onnx, got {fmt!r}")
    module = load_run(run, which=which)
    out = Path(out) if out is not None else Path(run) / f"model.{fmt}"
    if fmt == "safetensors":
        exporters.export_safetensors(module.model, module.config.model, out)
    else:
        exporters.export_onnx(module.model, example_input(module), out)
    return out


def example_input(module: Any) -> torch.Tensor:
    """A zero input of batch 1 at the run's working resolution, in the model's input format."""
    from ..models.unet import UNetConfig

    h, w = tuple(module.config.resolution)
    config = module.config.model
    if isinstance(config, UNetConfig):
        return torch.zeros(1, config.in_channels, h, w)  # one RGB frame
    if config.input_classes > 0:
        return torch.zeros(1, config.in_frames, h, w, dtype=torch.long)  # class ids per pixel
    return torch.zeros(1, config.in_frames, config.in_channels, h, w)


def _export_command(args: argparse.Namespace) -> int:
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
                "--forecaster runs/fc --out eval",
                "Rows: copy-last and oracle (segmenter only), frames (with --predictor), masks and\n"
                "its post-processed variants (with --forecaster). Writes OUT/results.json,\n"
                "OUT/results.md (printed) and OUT/pictures/ (PNG and GIF per drawn video).")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--split", default="val", help="labeled split to score (default: val)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, help="score only the first N videos")
    p.add_argument("--pictures", type=int, default=4, help="videos to draw (default: 4)")
    _add_run_options(p)
    p.set_defaults(handler=_evaluate_command)

    p = _parser(commands, "predict", "Write the hidden set's masks of frame 22 (a submission).",
                "simvp-unet predict --data data/demo --segmenter runs/seg --forecaster runs/fc "
                "--out submission.pt",
                "Saves a torch.uint8 tensor (N, 160, 240) with torch.save, rows ordered by\n"
                "ascending video index of DATA/hidden. Default pipeline: masks with --forecaster,\n"
                "else frames with --predictor, else copy-last.")
    p.add_argument("--data", required=True, help="dataset root (reads DATA/hidden)")
    p.add_argument("--out", required=True, help="submission file (.pt)")
    p.add_argument("--pipeline", choices=[n for n in pipelines.PIPELINES if n != "oracle"],
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
    p.add_argument("--batch-size", type=int, default=2, help="videos per step (default: 2)")
    p.set_defaults(handler=_label_command)
