"""Speed of the models: parameters, MACs, training and inference samples/s per precision setting.

    python benchmarks/models.py            # the paper config and CPU sizes, about 3 minutes on 2 cores
    python benchmarks/models.py --quick    # tiny sizes, a smoke test of the script (seconds)

Prints a markdown table and writes it to benchmarks/results/models.md (not with --quick). Settings: float32 or bf16 autocast, contiguous or channels_last
memory format, on the CPU (with 2 threads unless --threads) and on CUDA when present. A training
step is forward, loss, backward and an Adam step; inference runs under torch.inference_mode.
The "x public" columns divide by the speed of the public reference code measured on a 2-core
machine of this kind (float32, 2 threads; see docs/reference.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from simvp_unet.io import write_text
from simvp_unet.models import SimVP, SimVPConfig, UNet, UNetConfig

RESULTS = Path(__file__).parent / "results"


@dataclass
class Case:
    """One model at one input size, with the public code's speed where it is known."""

    name: str
    build: object  # () -> nn.Module
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    batch: int
    target: str  # "frames" (MSE) or "classes" (cross-entropy over dim 1)
    public_train: float | None = None  # samples/s of the public code, float32, 2 threads
    public_infer: float | None = None


def simvp(frames, channels, spatial, temporal, nt, translator="incep", **kw):
    return lambda: SimVP(
        SimVPConfig(
            in_frames=frames,
            out_frames=frames,
            in_channels=channels,
            out_channels=channels,
            spatial_channels=spatial,
            temporal_channels=temporal,
            temporal_blocks=nt,
            translator=translator,
            **kw,
        )
    )


def cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("SimVP incep 8/16/4/2", simvp(3, 3, 8, 16, 2), (3, 3, 16, 24), 2, "frames"),
            Case("SimVP gsta 8/16/4/2", simvp(3, 3, 8, 16, 2, "gsta"), (3, 3, 16, 24), 2, "frames"),
            Case("U-Net base 4", lambda: UNet(UNetConfig(base_channels=4)), (3, 32, 48), 2, "classes"),
        ]
    return [
        Case("SimVP incep 64/512/4/8 (paper)", simvp(11, 3, 64, 512, 8),
             (11, 3, 160, 240), 1, "frames", 0.12, 0.5),
        Case("SimVP incep 16/256/4/4", simvp(11, 3, 16, 256, 4),
             (11, 3, 80, 120), 4, "frames", 5.1, 17.0),
        Case("SimVP gsta 16/256/4/4", simvp(11, 3, 16, 256, 4, "gsta"),
             (11, 3, 80, 120), 4, "frames"),
        Case("U-Net base 64 (paper)", lambda: UNet(UNetConfig()), (3, 160, 240), 1, "classes"),
        Case("U-Net base 16", lambda: UNet(UNetConfig(base_channels=16)), (3, 160, 240), 4, "classes"),
    ]  # fmt: skip


def count_macs(case: Case) -> float:
    """Multiply-accumulates of one forward pass of one sample, counted on the meta device."""
    with torch.device("meta"):
        model = case.build()
        x = torch.empty(1, *case.input_shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def timed(step, device: torch.device, min_seconds: float, max_iters: int) -> float:
    """Fastest seconds per call of `step` after one warm-up call, over timed calls made until
    `min_seconds` have passed or `max_iters` calls were made. The minimum, not the mean: on a
    machine shared with other jobs, the fastest call is the one least slowed by them."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    sync()
    times, start = [], time.perf_counter()
    while True:
        begin = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - begin)
        if time.perf_counter() - start >= min_seconds or len(times) >= max_iters:
            return min(times)


def measure(case: Case, device: torch.device, bf16: bool, channels_last: bool, args) -> tuple[float, float]:
    """Training and inference samples/s of `case` in one setting."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = case.build().to(device).to(memory_format=fmt)
    x = torch.rand(case.batch, *case.input_shape, device=device)
    if x.dim() == 4:
        x = x.contiguous(memory_format=fmt)
    if case.target == "frames":
        target = torch.rand_like(x)
        loss_fn = torch.nn.functional.mse_loss
    else:
        target = torch.randint(0, 49, (case.batch, *case.input_shape[-2:]), device=device)
        loss_fn = torch.nn.functional.cross_entropy
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(x).float(), target)
        loss.backward()
        optimizer.step()

    def infer_step():
        with torch.inference_mode(), autocast:
            model(x)

    model.train()
    train = timed(train_step, device, args.min_seconds, args.max_iters)
    model.eval()
    infer = timed(infer_step, device, args.min_seconds, args.max_iters)
    return case.batch / train, case.batch / infer


def ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if reference else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Measure parameters, MACs and samples/s of SimVP and U-Net.",
        epilog="example: python benchmarks/models.py --quick",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one timed step each")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--min-seconds", type=float, default=None, help="time each measure this long")
    parser.add_argument("--max-iters", type=int, default=None, help="at most this many timed steps")
    args = parser.parse_args()
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (0.0 if args.quick else 1.5)
    args.max_iters = args.max_iters if args.max_iters is not None else (1 if args.quick else 3)
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels

    load_before = os.getloadavg()[0]
    header = (
        "| model | input (1 sample) | batch | params | GMACs/sample | device | setting "
        "| train samples/s | infer samples/s | train x public | infer x public |"
    )
    lines = [header, "|" + "---|" * 11]
    print(header, flush=True)
    print(lines[1], flush=True)
    for case in cases(args.quick):
        with torch.device("meta"):
            params = sum(p.numel() for p in case.build().parameters())
        macs = count_macs(case)
        for device in devices:
            for bf16 in (False, True):
                for channels_last in (False, True):
                    train, infer = measure(case, device, bf16, channels_last, args)
                    setting = ("bf16" if bf16 else "fp32") + (" channels_last" if channels_last else "")
                    line = (
                        f"| {case.name} | {'x'.join(map(str, case.input_shape))} | {case.batch} "
                        f"| {params:,} | {macs / 1e9:.3g} | {device.type} | {setting} "
                        f"| {train:.3g} | {infer:.3g} | {ratio(train, case.public_train)} "
                        f"| {ratio(infer, case.public_infer)} |"
                    )
                    lines.append(line)
                    print(line, flush=True)

    cpu = platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    report = "\n".join(
        [
            "# Model speed",
            "",
            f"`python benchmarks/models.py{' --quick' if args.quick else ''}`: torch {torch.__version__}, "
            f"{args.threads} CPU threads ({cpu}){gpu}. One warm-up step, then "
            f"timed steps for at least {args.min_seconds} s or {args.max_iters} steps; the fastest "
            "step counts. "
            "Training step = forward + loss + backward + Adam. The public code's speed "
            "(float32, 2 threads, same kind of machine) is from docs/reference.md. "
            f"Load average (1 min) {load_before:.1f} before and {os.getloadavg()[0]:.1f} after "
            "the run (above the thread count: other jobs shared the CPU).",
            "",
            *lines,
            "",
        ]
    )
    if args.quick:
        return  # a smoke test: the numbers of tiny models are not worth keeping
    write_text(RESULTS / "models.md", report)
    print(f"\nwritten to {RESULTS / 'models.md'}")


if __name__ == "__main__":
    main()
