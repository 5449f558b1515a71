"""Training: one LightningModule per thing trained, run folders, `load_run`.

    simvp-unet train segmenter --data data/demo --preset cpu --out runs/seg
    module = load_run("runs/seg"); masks = module.segment(images)
"""

from .runner import MODULES, Runtime, load_run, train

__all__ = ["MODULES", "Runtime", "load_run", "train"]
