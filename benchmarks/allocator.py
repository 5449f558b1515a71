"""The allocator setting of `simvp-unet` (hardware.keep_freed_memory) against glibc's default.

    python benchmarks/allocator.py [--case paper] [--isa avx2] [--rounds 3]

The setting is global to a process, so each measurement runs in a fresh child process, the two
settings alternating (default, kept, default, kept, ...); each child times eager and folded
inference (after one warm-up call), with --train also float32 training steps with plain and
fused Adam, alternating (after one warm-up step each), and the report gives the medians over the
rounds, as ratios to the eager model (or training with plain Adam) with glibc's default. Prints the CPU's features and the torch build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(case_name: str, keep: bool, repeats: int, train: bool) -> dict[str, float]:
    """One process's timings (seconds per call, median of `repeats`)."""
    import torch

    from simvp_unet.hardware import keep_freed_memory
    from simvp_unet.models.fold import fold_for_inference

    sys.path.insert(0, str(HERE))
    from models import CASES

    applied = keep_freed_memory() if keep else False
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    case = CASES[case_name]
    model = case.build().eval()
    fast = fold_for_inference(model)
    x = torch.rand(case.batch, *case.input_shape)
    times: dict[str, list[float]] = {"eager": [], "folded": []}
    with torch.inference_mode():
        model(x)
        fast(x)
        for _ in range(repeats):
            for name, net in (("eager", model), ("folded", fast)):
                start = time.perf_counter()
                net(x)
                times[name].append(time.perf_counter() - start)
    if train:  # training steps as `simvp-unet train` takes them (float32), with plain and fused Adam
        model.train()
        target = torch.rand_like(model(x).detach())
        optimizers = {"train, Adam": torch.optim.Adam(model.parameters(), lr=1e-4),
                      "train, fused Adam": torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)}
        for name in optimizers:
            times[name] = []
        for i in range(repeats + 1):
            for name, optimizer in optimizers.items():
                start = time.perf_counter()
                loss = torch.nn.functional.mse_loss(model(x), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if i:  # the first step of each warms up
                    times[name].append(time.perf_counter() - start)
    return {"applied": applied, **{k: statistics.median(v) for k, v in times.items()}}


def main() -> None:
    """Alternate child processes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="paper", help="a case of benchmarks/models.py")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native",
                        help="avx2: limit torch and oneDNN to AVX2 (what an AVX2 CPU sees)")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per setting")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per child and model")
    parser.add_argument("--train", action="store_true", help="also time training steps (slow for the paper case)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.case, args.child == "keep", args.repeats, args.train)))
        return
    env = dict(os.environ)
    if args.isa == "avx2":
        env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    results: dict[str, list[dict]] = {"default": [], "keep": []}
    for _ in range(args.rounds):
        for setting in results:
            command = [sys.executable, __file__, "--case", args.case, "--repeats", str(args.repeats),
                       "--child", setting] + (["--train"] if args.train else [])
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            results[setting].append(json.loads(out.stdout.strip().splitlines()[-1]))
    probe = subprocess.run([sys.executable, "-c", "from simvp_unet.hardware import cpu_features; "
                            "print(cpu_features().summary())"], env=env, check=True, capture_output=True, text=True)
    base = {model: statistics.median(r[model] for r in results["default"]) for model in ("eager", "train, Adam")
            if model in results["default"][0]}
    print(f"CPU: {probe.stdout.strip()}; {os.environ.get('THREADS', '2')} threads")
    print(f"case {args.case}, {args.rounds} child processes per setting, medians; kept applied: "
          f"{all(r['applied'] for r in results['keep'])}")
    print("| allocator | what | seconds per call | x eager (inference) or training with Adam, default allocator |")
    print("|---|---|---:|---:|")
    for setting, rows in results.items():
        for model in ("eager", "folded", "train, Adam", "train, fused Adam"):
            if model not in rows[0]:
                continue
            seconds = statistics.median(r[model] for r in rows)
            reference = base["train, Adam" if model.startswith("train") else "eager"]
            print(f"| {setting} | {model} | {seconds:.3f} | {reference / seconds:.2f}x |")


if __name__ == "__main__":
    main()
