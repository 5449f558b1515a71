"""Training: one LightningModule per thing trained, wrapping the served module of its kind.

    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg
    summary = train("segmenter", "data/demo", "runs/seg", preset="cpu")

Serving a run needs none of this: `simvp_unet.inference.load_run` (re-exported here).
"""

from ..inference import load_run
from .runner import MODULES, Runtime, train

__all__ = ["MODULES", "Runtime", "load_run", "train"]
