"""Threads under load: how fast training and inference run, idle and with one core busy.

    python benchmarks/threads.py              # writes benchmarks/results/threads.md
    python benchmarks/threads.py --quick      # a smoke test of the script (seconds)

A user's machine always has something else running. With as many OpenMP threads as cores, a
thread that shares its core with another process is late at every barrier, and the threads
that wait for it spin (OpenMP's default waiting policy) on the cores the others need. Each
setting runs in a child process (the OpenMP runtime reads its environment when torch loads),
alternating settings within a repeat so that drifts of the machine fall on all alike; "busy"
starts one process that keeps one core busy (a Python loop) for the duration of the child.

Workloads: a training step of the `cpu` segmenter (width-8 U-Net with the split head, 32 crops
of 48 x 48, Adam) and an inference call of the paper's SimVP (64/512/4/8, one clip of 11 x 3 x
160 x 240), both float32.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from provenance import provenance, write_sections

RESULTS = Path(__file__).parent / "results"
# name -> (environment of the child, what `simvp-unet` passes to set_threads: None = as set)
SETTINGS = {
    "2 threads, default waiting": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads, passive waiting": {"OMP_WAIT_POLICY": "PASSIVE"},
    "2 threads, spin 10k": {"GOMP_SPINCOUNT": "10000"},
    "2 threads, spin 1k": {"GOMP_SPINCOUNT": "1000"},
    "simvp-unet default": {"SIMVP_UNET_THREADS_FROM_PACKAGE": "1"},
}

CHILD = r"""
import json, os, sys, time
if os.environ.get("SIMVP_UNET_THREADS_FROM_PACKAGE"):
    from simvp_unet import threads
    threads.prepare()
import torch
import torch.nn.functional as F
if os.environ.get("SIMVP_UNET_THREADS_FROM_PACKAGE"):
    threads.apply()
from simvp_unet.models import SimVP, SimVPConfig, UNet, UNetConfig

workload, steps = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
if workload == "segmenter":
    model = UNet(UNetConfig(base_channels=8, head="split", object_factors=[3, 2, 8], object_stages=3))
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    x, y = torch.rand(32, 3, 48, 48), torch.randint(0, 49, (32, 48, 48))
    def step():
        loss = F.nll_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
else:
    model = SimVP(SimVPConfig()).eval()
    x = torch.rand(1, 11, 3, 160, 240)
    def step():
        with torch.inference_mode():
            model(x)
step()  # warm-up: allocations, oneDNN's kernels
start = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"threads": torch.get_num_threads(), "per_second": steps / (time.perf_counter() - start)}))
"""


def _spin(stop: multiprocessing.Event) -> None:
    while not stop.is_set():
        pass


def run_child(env: dict[str, str], workload: str, steps: int, busy: bool) -> dict:
    """One measurement in a fresh process, with one core kept busy if `busy`."""
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True) if busy else None
    if spinner:
        spinner.start()
        time.sleep(0.5)
    try:
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SIMVP_UNET_THREADS")}
        out = subprocess.run([sys.executable, "-c", CHILD, workload, str(steps)], env={**clean, **env},
                             capture_output=True, text=True, check=True)
    finally:
        if spinner:
            stop.set()
            spinner.join()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python benchmarks/threads.py --repeats 3")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per setting and load (median)")
    parser.add_argument("--quick", action="store_true", help="few steps, one repeat, nothing written")
    parser.add_argument("--workload", choices=("segmenter", "simvp"), action="append",
                        help="workloads to run (default both)")
    parser.add_argument("--setting", choices=list(SETTINGS), action="append", help="settings to run (default all)")
    args = parser.parse_args()
    workloads = {"segmenter": ("training step, `cpu` segmenter", 3 if args.quick else 40),
                 "simvp": ("inference, paper SimVP", 1 if args.quick else 3)}
    workloads = {k: v for k, v in workloads.items() if k in (args.workload or workloads)}
    settings = {k: v for k, v in SETTINGS.items() if k in (args.setting or SETTINGS)}
    repeats = 1 if args.quick else args.repeats
    command = " ".join(["python benchmarks/threads.py", *sys.argv[1:]])
    sections = {}
    for workload, (what, steps) in workloads.items():
        rows = []
        for busy in (False, True):
            runs: dict[str, list[float]] = {name: [] for name in settings}
            threads: dict[str, int] = {}
            for _ in range(repeats):
                for name, env in settings.items():
                    result = run_child(env, workload, steps, busy)
                    runs[name].append(result["per_second"])
                    threads[name] = result["threads"]
            best = max(statistics.median(v) for v in runs.values())
            for name, values in runs.items():
                speed = statistics.median(values)
                rows.append(f"| {'one core busy' if busy else 'idle'} | {name} | {threads[name]} | "
                            f"{speed:.3g} | {best / speed:.2f} |")
                print(f"{what}: {rows[-1]}", flush=True)
        sections[f"## {what} ({', '.join(settings)})"] = [
            "", *provenance(command), "",
            f"Median of {repeats} runs per setting, settings alternating; per second: steps (training) "
            "or calls (inference); slower: the best setting's speed at the same load divided by this "
            "one's (1.00 = the best).", "",
            "| load | setting | threads | per second | slower than the best |",
            "|---|---|---:|---:|---:|", *rows]
    if args.quick:
        return
    header = ["# Threads under load", "",
              "Written by `benchmarks/threads.py` (its docstring says what runs); each section states its "
              "command, commit, machine and date."]
    write_sections(RESULTS / "threads.md", header, sections)
    print(f"written to {RESULTS / 'threads.md'}")

if __name__ == "__main__":
    main()
