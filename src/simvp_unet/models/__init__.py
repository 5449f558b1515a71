"""The networks: `SimVP` (frames or masks -> future frames or class logits) and `UNet` (segmenter).

Each is built from a typed dataclass config (`SimVPConfig`, `UNetConfig`); `export` writes ONNX
and safetensors files.
"""

from .simvp import SimVP, SimVPConfig
from .unet import UNet, UNetConfig

__all__ = ["SimVP", "SimVPConfig", "UNet", "UNetConfig"]
