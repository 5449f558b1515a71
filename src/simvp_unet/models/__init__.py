"""The networks: `SimVP` (past frames or masks -> the future ones) and `UNet` (frame -> mask), each
built from a dataclass config; `fold` serves them faster, `export` writes them to files."""

from .simvp import SimVP, SimVPConfig
from .unet import UNet, UNetConfig

__all__ = ["SimVP", "SimVPConfig", "UNet", "UNetConfig"]
