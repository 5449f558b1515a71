"""Forecast objects, not pixels: masks -> tracks -> motion -> rendered masks.

    tracks = extract_tracks(masks)                  # (B, 11, H, W) class ids -> objects
    centers = forecaster(tracks.classes, tracks.present, tracks.center)   # (B, K, 11, 2)
    mask22 = render(tracks, centers[:, :, -1], forecaster.plane)

`tracks.py` finds the objects and measures them, `ground.py` estimates the floor from the
objects' sizes, `motion.py` holds the constant-velocity forecast, `physics.py` the fitted
simulation of friction and collisions, `dynamics.py` the learned model (the simulator plus an
interaction network's corrections), `render.py` paints the forecast, `cache.py` stores the tracks of a
dataset for training.
"""

from .dynamics import MotionConfig, MotionForecaster
from .render import render
from .tracks import Tracks, extract_tracks

__all__ = ["MotionConfig", "MotionForecaster", "Tracks", "extract_tracks", "render"]
