"""simvp-unet: forecast the semantic segmentation of a future video frame.

Given frames 1..11 of a video, predict the 49-class mask of frame 22.
Start with `simvp-unet --help` or `simvp-unet demo`.
"""

__version__ = "0.1.0"
