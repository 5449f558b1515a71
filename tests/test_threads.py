"""Compute threads: the count chosen from --threads, the environment, or the free cores."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from simvp_unet import threads
from simvp_unet.errors import ConfigError


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("OMP_NUM_THREADS", threads.ENV_THREADS):
        monkeypatch.delenv(key, raising=False)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def test_an_explicit_count_wins(clean_env):
    clean_env.setenv(threads.ENV_THREADS, "2")
    clean_env.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose(1) == 1
    assert threads.choose(None) == 2
    assert threads.apply(1) == 1 and torch.get_num_threads() == 1
    for bad in (0, "abc"):
        with pytest.raises(ConfigError, match="threads must be a number >= 1 or auto"):
            threads.choose(bad)


def test_omp_num_threads_is_respected_and_auto_takes_the_free_cores(clean_env):
    clean_env.setattr(threads, "free_cores", lambda: 1)
    assert threads.choose() == 1  # one core left free by other processes
    clean_env.setattr(threads, "free_cores", lambda: 0)
    assert threads.choose("auto") == 1  # never fewer than one
    clean_env.setattr(threads, "free_cores", lambda: None)
    assert threads.choose() is None  # not measurable: torch's own count
    clean_env.setenv("OMP_NUM_THREADS", "3")
    clean_env.setattr(threads, "free_cores", lambda: 1)
    assert threads.choose() is None  # the user's OMP_NUM_THREADS stands


def test_free_cores_sees_a_busy_core():
    """A process spinning on one core leaves one core fewer free (Linux, 2 cores or more)."""
    cores = threads.free_cores(seconds=0.05)
    if cores is None or len(__import__("os").sched_getaffinity(0)) < 2:
        pytest.skip("free cores are measured on Linux with 2 or more cores")
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        busy = [threads.free_cores(seconds=0.3) for _ in range(3)]
    finally:
        spinner.kill()
    assert min(busy) < len(__import__("os").sched_getaffinity(0))


def test_the_cli_sets_the_spinning_before_torch_and_the_count_from_threads(tmp_path):
    code = ("import os, sys\n"
            "os.environ.pop('OMP_WAIT_POLICY', None)\n"
            "os.environ.pop('GOMP_SPINCOUNT', None)\n"
            "from simvp_unet.cli import main\n"
            "assert 'torch' not in sys.modules  # so the policy can still reach OpenMP\n"
            f"code = main(['train', 'segmenter', '--data', '{tmp_path / 'none'}', '--out', '{tmp_path / 'run'}',"
            " '--threads', '1'])\n"
            "import torch\n"
            "print(os.environ['GOMP_SPINCOUNT'], code, torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [threads.SPIN_COUNT, "2", "1"]  # a missing data folder: one line, exit 2
    assert "data folder not found" in out.stderr
