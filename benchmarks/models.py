"""Speed of the models per setting, as ratios to the float32 eager baseline of the same run.

    python benchmarks/models.py                  # this CPU as it is (cases: see --case)
    python benchmarks/models.py --isa avx2       # what a CPU with AVX2 and no AVX-512 sees
    python benchmarks/models.py --case paper     # one case (the paper's SimVP: slow, few repeats)
    python benchmarks/models.py --quick          # tiny sizes, a smoke test of the script (seconds)
    python benchmarks/models.py --device cuda --batch 4   # a CUDA GPU (results/models_cuda_<gpu>.md)

Every setting of a case is timed in one loop: each repeat runs every setting once, so that the
load of other jobs on a shared machine falls on all of them alike, and the median over the
repeats counts. Ratios divide the baseline's median by the setting's: the baseline is float32,
the default memory format and eager PyTorch, with torch.optim.Adam as Lightning created it
before (a for-loop over the parameters on a CPU). A training step is forward, loss, backward
and an Adam step; inference runs under torch.inference_mode. "max |diff|" is the largest
difference of the setting's outputs from the baseline's on the same input.

--isa avx2 runs the benchmark in a new process with ATEN_CPU_CAPABILITY=avx2 (torch's own
kernels), ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN's convolutions) and MKL_ENABLE_INSTRUCTIONS=AVX2, and
checks that torch took the limit. ONNX Runtime has no such limit (it picks AVX-512 kernels
where the CPU has them), so it is measured only without --isa.

--device cuda times the models on the GPU (each call synchronised), in float32 (cuDNN's default
TF32 convolutions), bf16 autocast and channels_last, with --batch for a GPU-sized batch.

Results go to benchmarks/results/models_<isa>.md (models_cuda_<gpu>.md on a GPU, named after
the device, e.g. models_cuda_h100_80gb_hbm3.md), one section per case (a run of some cases keeps
the other sections of the file), with the CPU's features and the load average.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

import torch  # noqa: E402 - after AVX2_ENV, which must be set before torch starts (see main)
import torch.nn.functional as F  # noqa: E402
from provenance import commit, provenance, write_sections  # noqa: E402
from torch import nn  # noqa: E402

from simvp_unet.hardware import channels_last, cpu_features, has_native_bf16  # noqa: E402
from simvp_unet.models import SimVP, SimVPConfig, UNet, UNetConfig  # noqa: E402
from simvp_unet.models.fold import fold_for_inference  # noqa: E402

RESULTS = Path(__file__).parent / "results"


@dataclass
class Case:
    """One model at one input size."""

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    batch: int
    target: str  # "frames" (MSE), "classes" (cross-entropy over dim 1), "class-ids" (SimVP on ids)
    repeats: int = 5


def simvp(spatial, temporal, nt, translator="incep", **kw) -> Callable[[], nn.Module]:
    return lambda: SimVP(SimVPConfig(spatial_channels=spatial, temporal_channels=temporal,
                                     temporal_blocks=nt, translator=translator, **kw))


def forecaster_cpu() -> nn.Module:
    """The forecaster of the cpu preset: gSTA 16/128/2/4, class ids in, 49 logits out."""
    return SimVP(SimVPConfig(input_classes=49, out_channels=49, spatial_channels=16,
                             temporal_channels=128, spatial_blocks=2, temporal_blocks=4,
                             translator="gsta", extra_downsample=True, copy_prior=4.0))


CASES = {
    "paper": Case("SimVP incep 64/512/4/8 (paper)", simvp(64, 512, 8), (11, 3, 160, 240), 1,
                  "frames", repeats=3),
    "incep16": Case("SimVP incep 16/256/4/4", simvp(16, 256, 4), (11, 3, 80, 120), 4, "frames"),
    "forecaster": Case("SimVP gSTA 16/128/2/4, class ids (forecaster, cpu preset)", forecaster_cpu,
                       (11, 80, 120), 4, "class-ids"),
    "unet16": Case("U-Net base 16 (segmenter, cpu preset before issue 10)",
                   lambda: UNet(UNetConfig(base_channels=16)), (3, 80, 120), 16, "classes"),
    "unet8": Case("U-Net base 8, split head (segmenter, cpu preset: 96x96 crops)",
                  lambda: UNet(UNetConfig(base_channels=8, head="split", object_factors=[3, 2, 8],
                                          object_stages=3)), (3, 96, 96), 16, "classes"),
    "unet64": Case("U-Net base 64 (paper)", lambda: UNet(UNetConfig()), (3, 160, 240), 1, "classes",
                   repeats=3),
}
QUICK = {
    "incep": Case("SimVP incep 8/16/4/2", simvp(8, 16, 2, in_frames=3, out_frames=3), (3, 3, 16, 24),
                  2, "frames", repeats=1),
    "gsta": Case("SimVP gSTA 8/16/4/2, class ids",
                 lambda: SimVP(SimVPConfig(in_frames=3, out_frames=3, input_classes=5, out_channels=5,
                                           spatial_channels=8, temporal_channels=16, temporal_blocks=2,
                                           translator="gsta")), (3, 16, 24), 2, "class-ids", repeats=1),
    "unet": Case("U-Net base 4", lambda: UNet(UNetConfig(base_channels=4)), (3, 32, 48), 2, "classes",
                 repeats=1),
}


# ---------------------------------------------------------------------------------------------
# Timing


def interleaved(steps: dict[str, Callable[[], object]], repeats: int,
                device: str = "cpu") -> dict[str, float]:
    """Median seconds per call of every step, after one warm-up call each; every repeat calls
    every step once, in turn (on a GPU each call is waited for)."""
    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def example(case: Case, model: nn.Module, batch: int, device: str = "cpu",
            ) -> tuple[torch.Tensor, torch.Tensor, Callable]:
    """Input, target and loss function of a case, on `device`."""
    torch.manual_seed(0)
    shape = (batch, *case.input_shape)
    if case.target == "class-ids":
        x = torch.randint(0, model.config.input_classes, shape)
        target = torch.randint(0, model.config.out_channels, shape)

        def loss(y, t):
            return F.cross_entropy(y.flatten(0, 1).float(), t.flatten(0, 1))

        return x.to(device), target.to(device), loss
    x = torch.rand(shape)
    if case.target == "frames":
        return x.to(device), torch.rand_like(x).to(device), lambda y, t: F.mse_loss(y.float(), t)
    return x.to(device), torch.randint(0, 49, (batch, *case.input_shape[-2:])).to(device), \
        lambda y, t: F.cross_entropy(y.float(), t)


# ---------------------------------------------------------------------------------------------
# Settings


def train_steps(case: Case, model: nn.Module, args) -> dict[str, Callable[[], object]]:
    """A training step per setting, each on its own copy of `model`."""
    x, target, loss_fn = example(case, model, args.batch or case.batch, args.device)

    def make(memory_format=torch.contiguous_format, bf16=False, compiled=False, **adam):
        net = copy.deepcopy(model).train().to(memory_format=memory_format)
        forward = torch.compile(net) if compiled else net
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, **adam)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(forward(x), target)
            loss.backward()
            optimizer.step()

        return step

    cl = torch.channels_last
    if args.device == "cuda":
        return {"fp32 (baseline)": make(), "fp32 channels_last": make(cl),
                "bf16 autocast": make(bf16=True), "bf16 autocast, fused Adam": make(bf16=True, fused=True),
                "bf16 autocast channels_last, fused Adam": make(cl, bf16=True, fused=True)}
    steps = {
        "fp32 (baseline)": make(),
        "fp32, fused Adam": make(fused=True),
        "fp32 channels_last, fused Adam": make(cl, fused=True),
    }
    if args.bf16 == "always" or (args.bf16 == "auto" and has_native_bf16("cpu")):
        steps["bf16 autocast channels_last, fused Adam"] = make(cl, bf16=True, fused=True)
    if args.compile:
        chosen = cl if channels_last(model, "train", "cpu") else torch.contiguous_format
        steps["fp32 torch.compile, fused Adam"] = make(chosen, fused=True, compiled=True)
    return steps


def onnx_runner(model: nn.Module, x: torch.Tensor, threads: int) -> Callable[[], torch.Tensor]:
    """An ONNX Runtime session of `model` (exported at x's shape), as a function of nothing."""
    import onnxruntime as ort

    from simvp_unet.models.export import export_onnx

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    export_onnx(model, x, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()}
    return lambda: torch.from_numpy(session.run(None, feed)[0])


def infer_steps(case: Case, model: nn.Module, args) -> tuple[dict[str, Callable], dict[str, float]]:
    """An inference call per setting, and each setting's largest difference from the baseline."""
    x, _, _ = example(case, model, args.batch or case.batch, args.device)
    model = model.eval()
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    folded = fold_for_inference(model)

    def run(net, bf16=False):
        def call():
            with torch.inference_mode(), torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
                return net(x)

        return call

    steps = {
        "fp32 (baseline)": run(model),
        "fp32 channels_last": run(cl_model),
        "fp32 folded (models/fold.py)": run(folded),
    }
    if args.device == "cuda":
        steps |= {"bf16 autocast": run(model, bf16=True), "bf16 autocast channels_last": run(cl_model, bf16=True),
                  "bf16 autocast folded": run(folded, bf16=True)}
    elif not args.isa_limited and not args.no_onnx:
        steps["fp32 ONNX Runtime"] = onnx_runner(model, x, args.threads)
    if args.device == "cpu" and (args.bf16 == "always" or (args.bf16 == "auto" and has_native_bf16("cpu"))):
        steps["bf16 autocast channels_last"] = run(cl_model, bf16=True)
        steps["bf16 autocast folded"] = run(folded, bf16=True)
    if args.compile:
        import torch._inductor.config as inductor

        inductor.freezing = True  # weights as constants: folded and prepacked by inductor
        compiled = torch.compile(copy.deepcopy(cl_model))
        start = time.perf_counter()
        run(compiled)()
        args.notes.append(f"{case.name}: torch.compile (freezing) of inference took "
                          f"{time.perf_counter() - start:.0f} s to compile")
        steps["fp32 torch.compile (freezing)"] = run(compiled)
    reference = steps["fp32 (baseline)"]().float()
    diffs = {name: float((step().float() - reference).abs().max()) for name, step in steps.items()}
    return steps, diffs


# ---------------------------------------------------------------------------------------------
# Report


def measure(case: Case, args) -> list[str]:
    """Table rows of one case."""
    load = os.getloadavg()[0]
    with torch.device("meta"):
        params = sum(p.numel() for p in case.build().parameters())
    torch.manual_seed(0)
    model = case.build().to(args.device)
    repeats = 1 if args.quick else args.repeats or case.repeats
    rows = []
    if not args.infer_only:
        pick = "channels_last" if channels_last(model, "train", args.device) else "default format"
        train = interleaved(train_steps(case, model, args), repeats, args.device)
        base = train["fp32 (baseline)"]
        rows += [f"| train | {name} | {t:.3g} | {base / t:.2f}x | |" for name, t in train.items()]
        args.notes.append(f"{case.name}: hardware.channels_last picks the {pick} for training here")
    steps, diffs = infer_steps(case, model, args)
    infer = interleaved(steps, repeats, args.device)
    base = infer["fp32 (baseline)"]
    rows += [f"| infer | {name} | {t:.3g} | {base / t:.2f}x | {diffs[name]:.1e} |"
             for name, t in infer.items()]
    shape = "x".join(map(str, case.input_shape))
    head = [f"## {case.name}", "", f"Commit {commit()}, {time.strftime('%Y-%m-%d', time.gmtime())} UTC. "
            f"Input {shape} per sample, batch {args.batch or case.batch}, {params:,} parameters; median of "
            f"{repeats} interleaved repeats. Load average (1 min) {load:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end ({time.strftime('%Y-%m-%d %H:%M')}).",
            "", "| direction | setting | seconds per batch | x baseline | max abs diff |",
            "|---|---|---:|---:|---:|"]
    return head + rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Measure training and inference speed of SimVP and U-Net per setting, "
                    "as ratios to the float32 eager baseline.",
        epilog="example: python benchmarks/models.py --isa avx2 --case incep16")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native",
                        help="native: this CPU as it is; avx2: limit torch and oneDNN to AVX2")
    parser.add_argument("--case", action="append", choices=list(CASES), help="cases to run (default all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (a smoke test)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per setting (default per case)")
    parser.add_argument("--compile", action="store_true", help="add torch.compile settings (slow)")
    parser.add_argument("--infer-only", action="store_true", help="skip training")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (default) or cuda: time the models on the GPU")
    parser.add_argument("--batch", type=int, default=None, help="batch size of every case (default per case)")
    parser.add_argument("--bf16", choices=("auto", "always", "never"), default="auto",
                        help="bf16 settings: auto = only where bf16 is native (emulated bf16 "
                             "takes minutes a step for the paper's SimVP)")
    args = parser.parse_args()
    if args.isa == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        # the limits are read when torch starts: run again in a process that has them
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})
    args.isa_limited = args.isa == "avx2"
    if args.device == "cuda" and (args.isa_limited or not torch.cuda.is_available()):
        raise SystemExit("--device cuda needs a CUDA GPU, and no --isa")
    if args.isa_limited and torch.backends.cpu.get_cpu_capability() != "AVX2":
        raise SystemExit(f"--isa avx2: torch uses {torch.backends.cpu.get_cpu_capability()}, not AVX2")
    args.notes = []
    torch.set_num_threads(args.threads)

    features = cpu_features()
    load = os.getloadavg()[0]
    command = " ".join(["python benchmarks/models.py", *sys.argv[1:]])
    if args.device == "cuda":
        header = ["# Model speed on a GPU", "", *provenance(command), "",
                  f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
                  f"cuDNN {torch.backends.cudnn.version()}; float32 convolutions in TF32 "
                  f"(torch's default: allow_tf32={torch.backends.cudnn.allow_tf32}). "
                  f"Host CPU: {features.summary()}."]
    else:
        header = ["# Model speed", "", *provenance(command), "",
                  f"{args.threads} threads; a run of some cases keeps the other cases' sections, each "
                  "with its own commit and date."]
    print("\n".join(header), flush=True)
    print(f"load average (1 min) at the start: {load:.1f}", flush=True)
    cases = QUICK if args.quick else {k: CASES[k] for k in (args.case or CASES)}
    sections = {}
    for case in cases.values():
        lines = measure(case, args)
        sections[lines[0]] = lines[1:]
        print("\n".join(lines), flush=True)
    for note in args.notes:
        print(f"- {note}")
    if args.quick:
        return  # a smoke test: the numbers of tiny models are not worth keeping
    if args.device == "cuda":  # one file per GPU model: "NVIDIA H100 80GB HBM3" -> models_cuda_h100_80gb_hbm3.md
        name = torch.cuda.get_device_name().removeprefix("NVIDIA ").lower()
        gpu = "_".join("".join(c if c.isalnum() else " " for c in name).split())
        path = RESULTS / f"models_cuda_{gpu}.md"
    else:
        path = RESULTS / f"models_{args.isa}.md"
    write_sections(path, header, sections)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
