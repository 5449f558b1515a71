"""The object path: masks -> tracks -> dynamics -> rendered masks (the `objects` rows).
Forecasts objects rather than pixels: their motion on the ground plane, then their shapes painted.

    tracks = extract_tracks(masks)                  # (B, 11, H, W) class ids -> objects
    centers = net(tracks.classes, tracks.present, tracks.center)   # a DynamicsNet: (B, K, 11, 2)
    mask22 = render(tracks, centers[:, :, -1], net.plane, camera=net.floor.camera())

`tracks.py` finds the objects and measures them, `ground.py` estimates the floor from the
objects' sizes, `motion.py` holds the constant-velocity forecast, `physics.py` the fitted
simulation of friction and collisions, `dynamics.py` the dynamics network (the simulator plus an
interaction network's corrections), `render.py` paints the forecast, `serve.py` serves a dynamics
run, `cache.py` stores the tracks of a dataset for training. `camera.py` fits a pinhole camera
(focal length, height, pitch, the shapes' sizes) to the tracks' boxes and `silhouette.py` draws
the objects as 3D shapes with it: `render.py` draws so the objects that travelled from where
they were last seen whole, and the `shapes@true` row of evaluate every object. `placing.py`
fits places and turns to masks with those silhouettes: every sighting of frames 1..11 (the
served forecast reads those centers), a cube's turn from its template, and the objects the
`shapes@true` row draws.
"""

from .dynamics import DynamicsNet, DynamicsNetConfig
from .render import render
from .tracks import Tracks, extract_tracks

__all__ = ["DynamicsNet", "DynamicsNetConfig", "Tracks", "extract_tracks", "render"]
