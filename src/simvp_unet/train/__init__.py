"""Training: one LightningModule per kind of run, wrapping the served module of its kind.
Serving a run needs none of this (`simvp_unet.runs.load_run`).

    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg
    summary = train("segmenter", "data/demo", "runs/seg", preset="cpu")
"""

from .runner import Runtime, train

__all__ = ["Runtime", "train"]
