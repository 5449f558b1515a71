"""Compute threads: how many, and how they wait, so that a busy machine costs its share only.

    threads.prepare()     # before torch loads: how long waiting OpenMP threads spin
    import torch
    threads.apply(None)   # after: the thread count (--threads, else SIMVP_UNET_THREADS, else chosen)

With as many OpenMP threads as cores, a thread that shares its core with another process is late
at every barrier, and by default the threads that wait for it spin on the cores the others need:
one busy core made training several times slower, not twice. Starting with as many threads as
there are cores that other processes leave free, and spinning briefly before sleeping, keeps a
busy machine's cost near its share while a quiet one keeps nearly all of its speed; waiting
passively costs a quiet machine much more (benchmarks/results/threads.md). Nothing here imports
torch at module level: the spinning must be in the environment before the OpenMP runtime starts.
"""

from __future__ import annotations

import os
import time

from .errors import ConfigError

ENV_THREADS = "SIMVP_UNET_THREADS"  # a number, or "auto"


# How long an OpenMP thread of GNU's runtime (torch's on Linux) spins before it sleeps: short
# enough that threads waiting for one that shares its core with another process give the core
# back, long enough that a quiet machine keeps nearly all of the spinning's speed.
SPIN_COUNT = "10000"


def prepare() -> None:
    """Shorten the spinning of waiting OpenMP threads unless the user chose a waiting policy;
    call before torch is imported (the runtime reads it once, when it starts)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)


def _cpu_times() -> dict[int, tuple[int, int]]:
    """Core number -> (busy, total) jiffies since boot, from /proc/stat (Linux)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *fields = line.split()
                values = [int(v) for v in fields]
                idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
                out[int(name[3:])] = (sum(values) - idle, sum(values))
    return out


def free_cores(*, seconds: float = 0.2, busy_share: float = 0.5) -> int | None:
    """How many of this process's cores other processes leave mostly idle, over `seconds`; None
    where it cannot be measured (not Linux)."""
    try:
        allowed = os.sched_getaffinity(0)
        first = _cpu_times()
        time.sleep(seconds)
        second = _cpu_times()
    except (OSError, AttributeError, ValueError, IndexError):
        return None
    free = 0
    for core in allowed & first.keys() & second.keys():
        (busy0, total0), (busy1, total1) = first[core], second[core]
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < busy_share:
            free += 1
    return free


def choose(threads: int | str | None = None) -> int | None:
    """The thread count to use: `threads` (a number or "auto"), else SIMVP_UNET_THREADS, else
    None (keep torch's: OMP_NUM_THREADS, or one per core) when the user set OMP_NUM_THREADS,
    else "auto": the cores other processes leave free (at least 1)."""
    chosen = threads if threads is not None else os.environ.get(ENV_THREADS)
    if chosen is None and "OMP_NUM_THREADS" in os.environ:
        return None
    if chosen is None or str(chosen) == "auto":
        free = free_cores()
        return None if free is None else max(1, free)
    try:
        count = int(chosen)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"threads must be a number >= 1 or auto, got {chosen!r} (--threads or {ENV_THREADS})")
    return count


def apply(threads: int | str | None = None) -> int:
    """Set torch's compute threads (see `choose`); returns the count in use."""
    import torch

    count = choose(threads)
    if count is not None:
        torch.set_num_threads(count)
    return torch.get_num_threads()
