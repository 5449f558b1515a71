"""The machine in hand: CPU features, whether bf16 is native, the memory format that is faster,
and whether folding a model for inference pays.

    from simvp_unet.hardware import channels_last, cpu_features, folding_helps, has_native_bf16
    print(cpu_features().summary())       # "Intel(R) Xeon(R) ...: AVX2 yes, AVX-512 no, ..."
    has_native_bf16("cpu")                # False on an AVX2 CPU: bf16 is emulated there
    channels_last(model, "train", "cpu")  # the memory format to train `model` with here
    folding_helps(model, "cuda")          # whether the folded network serves faster there

bf16 is only worth it where the hardware computes it: a CUDA GPU that supports it, or a CPU with
AVX512-BF16 or AMX. On an AVX2 CPU, bf16 autocast emulates every bf16 operation, and a training
step takes many times as long as in float32 (benchmarks/results/models_avx2.md).

Torch and oneDNN can be told to use fewer instructions than the CPU has (ATEN_CPU_CAPABILITY=avx2,
ONEDNN_MAX_CPU_ISA=AVX2; benchmarks/models.py --isa avx2 does this to measure what an AVX2 CPU
sees); the answers here follow those limits, not only the CPU's flags.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

# oneDNN's instruction-set names, lowest first, as ONEDNN_MAX_CPU_ISA takes them; bf16 is
# computed natively from AVX512_CORE_BF16 on.
_ONEDNN_ISAS = ["SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16",
                "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16",
                "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "DEFAULT", "ALL"]


@dataclass(frozen=True)
class CPUFeatures:
    """What the CPU offers and what torch may use of it.

    Args:
        name: the CPU's model name.
        avx2, avx512, avx512_bf16, amx: the CPU has AVX2, AVX-512 (F), AVX512-BF16, AMX-BF16.
        torch_isa: the instruction set of torch's own kernels (`get_cpu_capability()`: "AVX2",
            "AVX512", "DEFAULT", ...); ATEN_CPU_CAPABILITY lowers it.
        onednn_isa: ONEDNN_MAX_CPU_ISA when set (the convolutions' limit), else "ALL".
        torch_version: torch's version and whether it has oneDNN.
    """

    name: str
    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx: bool
    torch_isa: str
    onednn_isa: str
    torch_version: str

    @property
    def native_bf16(self) -> bool:
        """bf16 maths is computed by the hardware, and torch and oneDNN may use it."""
        allowed = _ONEDNN_ISAS.index(self.onednn_isa) >= _ONEDNN_ISAS.index("AVX512_CORE_BF16")
        return (self.avx512_bf16 or self.amx) and allowed and self.torch_isa.startswith("AVX512")

    @property
    def avx512_in_use(self) -> bool:
        """torch's kernels and oneDNN's may use AVX-512 here."""
        allowed = _ONEDNN_ISAS.index(self.onednn_isa) >= _ONEDNN_ISAS.index("AVX512_CORE")
        return self.avx512 and allowed and self.torch_isa.startswith("AVX512")

    def summary(self) -> str:
        """One line for benchmark reports."""

        def yes(flag: bool) -> str:
            return "yes" if flag else "no"

        return (f"{self.name}: AVX2 {yes(self.avx2)}, AVX-512 {yes(self.avx512)}, "
                f"AVX512-BF16 {yes(self.avx512_bf16)}, AMX {yes(self.amx)}; torch {self.torch_version} "
                f"kernels {self.torch_isa}, oneDNN limit {self.onednn_isa}; "
                f"native bf16 {yes(self.native_bf16)}")


def _cpuinfo() -> tuple[str, set[str]]:
    """Model name and flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    name, flags = platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name == platform.machine():
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return name, flags


@functools.cache
def cpu_features() -> CPUFeatures:
    """The CPU's features and torch's limits (read once per process)."""
    name, flags = _cpuinfo()
    onednn = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL")
    onednn = onednn.upper() if onednn.upper() in _ONEDNN_ISAS else "ALL"
    mkldnn = "with oneDNN" if torch.backends.mkldnn.is_available() else "without oneDNN"
    return CPUFeatures(
        name=name,
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        avx512_bf16="avx512_bf16" in flags,
        amx="amx_bf16" in flags,
        torch_isa=torch.backends.cpu.get_cpu_capability(),
        onednn_isa=onednn,
        torch_version=f"{torch.__version__} {mkldnn}",
    )


def has_native_bf16(device_type: str = "auto") -> bool:
    """True when bf16 maths is native on `device_type` ("cpu", "cuda"/"gpu", or "auto" = the GPU
    when there is one): a CUDA GPU that supports bf16, or a CPU with AVX512-BF16 or AMX that
    torch and oneDNN may use. Elsewhere bf16 is emulated, and slower than float32."""
    if device_type in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if device_type not in ("auto", "cpu"):
        return False
    return cpu_features().native_bf16


# ---------------------------------------------------------------------------------------------
# Memory format


def channels_last(model: nn.Module, direction: Literal["train", "infer"],
                  device_type: str = "cpu", *, bf16: bool | None = None) -> bool:
    """Whether `model` runs faster in channels_last than in the default memory format, for
    training or inference on `device_type`; the numbers are the same either way. `bf16`: whether
    it runs under bf16 autocast (None: where `device_type` computes bf16 natively, as served
    modules do; a trainer passes its precision).

    Measured in benchmarks/models.py (results/models_native.md and models_avx2.md): inference is
    faster in channels_last for every model, with AVX2 and with AVX-512 (oneDNN's channels_last
    kernels need no reorder of the activations; the folded models are channels_last anyway),
    and so is training with AVX-512. With AVX2 only, oneDNN's channels_last backward kernels
    are slower: training in channels_last is faster for the small Inception SimVP and the U-Net
    of width 16 and more, and slower for the paper-size Inception SimVP (hid_T 512), the gSTA
    SimVP and the narrower U-Nets (measured with torch and oneDNN limited to AVX2, 2 threads:
    results/models_avx2.md). On a GPU: see `_simvp_in_gpu_bf16`.
    """
    from .models.simvp import SimVP
    from .models.unet import UNet

    if device_type != "cpu":
        return not _simvp_in_gpu_bf16(model, device_type, bf16)
    if direction == "infer":
        return True
    if cpu_features().avx512_in_use:
        return True
    if isinstance(model, SimVP):
        return model.config.translator == "incep" and model.config.temporal_channels < 512
    if isinstance(model, UNet):
        return model.config.base_channels >= 16
    return True


def folding_helps(model: nn.Module, device_type: str = "cpu", *, bf16: bool | None = None) -> bool:
    """Whether `models.fold.fold_for_inference` makes `model` faster on `device_type` (`bf16` as
    in `channels_last`): everywhere (results/models_avx2.md, models_native.md, the GPU tables)
    except for a SimVP under bf16 autocast on a GPU (`_simvp_in_gpu_bf16`), and except on a CPU
    whose torch lacks the private oneDNN operators the folded convolutions call there
    (`models.fold.private_ops_available`): the CPU gain was measured with them, so without them
    the model serves as it was trained (the same outputs either way)."""
    if device_type == "cpu":
        from .models.fold import private_ops_available

        if not private_ops_available():
            return False
    return not _simvp_in_gpu_bf16(model, device_type, bf16)


def _simvp_in_gpu_bf16(model: nn.Module, device_type: str, bf16: bool | None) -> bool:
    """A SimVP under bf16 autocast on a GPU, which runs faster as it is: neither channels_last
    nor folded. Measured on GPUs at batch 4 (results/models_cuda_h200.md,
    models_cuda_h100_80gb_hbm3.md): in float32, channels_last and folding make the paper SimVP
    faster to train and to serve; under bf16 autocast it trains and serves fastest as it is,
    while the paper U-Net still gains from both."""
    from .models.simvp import SimVP

    if device_type == "cpu" or not isinstance(model, SimVP):
        return False
    return has_native_bf16(device_type) if bf16 is None else bf16


# ---------------------------------------------------------------------------------------------
# Memory allocator

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.lru_cache(maxsize=1)
def keep_freed_memory(*, mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 31) -> bool:
    """Let glibc's malloc keep large freed blocks for reuse (once per process; True if applied).

    By default glibc serves every block over 32 MiB with a fresh mmap and gives it back to the
    system when freed, so each large activation (a SimVP decoder's is 108 MB at 11 x 64 x 160 x
    240) is zero-filled page by page again by the kernel. Raising the mmap and trim thresholds
    keeps them in the heap, which made the paper SimVP's float32 training steps and inference
    (eager and folded) faster on 2 cores limited to AVX2 (benchmarks/allocator.py:
    benchmarks/results/allocator.md); the numbers are the same. The cost is a process that keeps its
    peak memory until it exits. A no-op where the C library is not glibc, or with the environment
    variable SIMVP_UNET_DEFAULT_MALLOC set.
    """
    if platform.system() != "Linux" or os.environ.get("SIMVP_UNET_DEFAULT_MALLOC"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, ...)
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
