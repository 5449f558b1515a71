"""Generate a CLEVRER-like dataset in the real task's layout with PyBullet.

    simvp-unet data generate --out data/demo --preset demo --workers 2
    simvp-unet data generate --out data/dense --preset dense --set shape.frames=32 --set shape.target=29

What is generated is a `GenerateConfig`: split sizes and seed, the world (`world:`, a
`scenes.WorldConfig`: objects, motion, camera, physics) and the task shape (`shape:`, a
`layout.TaskShape`: frames per video, input frames, the scored frame, image size).

Video indices continue across splits in the order train, val, unlabeled, hidden. A video's
content depends only on (seed, split, index) and the settings, not on workers or shards, and
the same settings write the same bytes. Each video is written into a temporary folder and renamed
when complete, so a rerun skips finished videos and an interrupted run leaves no partial one.
Hidden videos keep the input frames (0..10 in the competition's shape); their other frames
(11..21), mask.npy and meta.json (which tells the future) go to hidden_answers/.

One writer per video: a run holds a lock on the folder (`.generate.K-N.lock`, its pid inside,
removed when it ends) and a second run into the same folder fails at once with that pid,
unless the two take disjoint shards (`--shard 0/2` and `--shard 1/2` may run side by side).
Its temporary files (the meshes PyBullet loads) are kept in the output folder too, so that a
full disk is reported on the output.
"""

from __future__ import annotations

import ctypes
import errno
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, OutputError, output_error
from ..io import write_json
from . import layout, manifest, meshes, scenes
from .layout import TaskShape
from .scenes import WorldConfig

try:
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None

GENERATOR_VERSION = 1
_TMP_PREFIX = ".tmp_"
_REGISTRY = ".generate.lock"  # held for the moment a run checks the others and takes its own lock
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # a file system without flock
_LOCK_RE = re.compile(r"^\.generate\.(\d+)-(\d+)\.lock$")  # a run's lock: .generate.K-N.lock


@dataclass
class GenerateConfig:
    """What to generate: split sizes, seed, world and task shape (presets:
    `presets/data_<name>.yaml`; `--set world.objects=[4,8]`, `--set shape.frames=32`).

    Args:
        train: labeled training videos.
        val: labeled validation videos.
        unlabeled: videos without masks.
        hidden: test videos (the input frames; the rest goes to hidden_answers/).
        seed: base seed; a video's random generator is seeded with (seed, split, index).
        world: objects, motion, camera and physics (`scenes.WorldConfig`; the defaults are
            the CLEVRER-like world).
        shape: frames per video, input frames, the scored frame and image size
            (`layout.TaskShape`; default the competition's).
    """

    train: int = 4
    val: int = 2
    unlabeled: int = 4
    hidden: int = 2
    seed: int = 0
    world: WorldConfig = field(default_factory=WorldConfig)
    shape: TaskShape = field(default_factory=TaskShape)

    def __post_init__(self) -> None:
        for split in layout.SPLITS:
            if getattr(self, split) < 0:
                raise ConfigError(f"{split} must be >= 0, got {getattr(self, split)}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    def ranges(self) -> dict[str, range]:
        """Video index range of each split (indices continue across splits)."""
        ranges, start = {}, 0
        for split in layout.SPLITS:
            count = getattr(self, split)
            ranges[split] = range(start, start + count)
            start += count
        return ranges


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of one video: a function of (seed, split, index) only."""
    return np.random.default_rng([seed, layout.SPLITS.index(split), index])


# -- writing one video (runs in worker processes) -------------------------------------------------

_WORLD = None


@contextmanager
def _quiet_c_output() -> Iterator[None]:
    """Silence C-level prints while PyBullet starts (its build time on stderr, argv on stdout).
    Python exceptions still propagate."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in saved:
            os.dup2(devnull, fd)
        yield
    finally:
        try:  # C's stdout buffer still holds the text when stdout is not a terminal
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _init_worker(mesh_dir: str, world: WorldConfig, shape: TaskShape) -> None:
    """Build this process's `World` (its PyBullet client renders every video the process writes)."""
    global _WORLD
    with _quiet_c_output():
        from .world import World  # pybullet only where videos are rendered

        if _WORLD is not None:
            _WORLD.client.disconnect()
        _WORLD = World(meshes.write_meshes(mesh_dir), world=world, shape=shape)


def _write_folder(tmp: Path, frames: np.ndarray, ts: range, masks: np.ndarray | None,
                  meta: dict | None, shape: TaskShape) -> None:
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for t in ts:
            layout.write_frame(tmp / layout.frame_name(t), frames[t], atomic=False)
        if masks is not None:
            layout.write_mask(tmp / layout.MASK_FILE, masks, shape, atomic=False)
        if meta is not None:
            write_json(tmp / layout.META_FILE, meta)
    except OSError as exc:  # the video folder, not the file inside the temporary one
        raise output_error(tmp.parent / tmp.name.removeprefix(_TMP_PREFIX), exc) from None


def _render_video(job: tuple[str, str, int, int]) -> tuple[str, int]:
    """Render and write one video; returns (split, index)."""
    root, split, index, seed = job
    root = Path(root)
    world, shape = _WORLD.config, _WORLD.task_shape
    plan = scenes.sample_scene(video_rng(seed, split, index), world, shape)
    frames, masks, meta = _WORLD.run(plan)
    meta = {"version": GENERATOR_VERSION, "seed": seed, "split": split, "index": index,
            "fps": world.fps, **meta}
    name = layout.video_name(index)
    final = root / split / name
    if split == "hidden":
        answers = root / layout.ANSWERS / name
        tmp_answers = root / layout.ANSWERS / (_TMP_PREFIX + name)
        _write_folder(tmp_answers, frames, range(shape.input_frames, shape.frames), masks, meta, shape)
        tmp = root / split / (_TMP_PREFIX + name)
        _write_folder(tmp, frames, shape.split_frames(split), None, None, shape)
        for old in (final, answers):  # a half-finished earlier attempt
            if old.exists():
                shutil.rmtree(old)
        tmp_answers.rename(answers)
        tmp.rename(final)  # last: the video counts as done only when both folders are in place
    else:
        tmp = root / split / (_TMP_PREFIX + name)
        labeled = split in layout.LABELED_SPLITS
        _write_folder(tmp, frames, shape.split_frames(split), masks if labeled else None, meta, shape)
        tmp.rename(final)
    return split, index


# -- the driver ------------------------------------------------------------------------------------


def parse_shard(text: str | None) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard takes K/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ConfigError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def plan_jobs(root: Path, config: GenerateConfig, shard: tuple[int, int]) -> tuple[list, int]:
    """Jobs still to do for this shard (stale temporary folders of its videos removed), and
    the number of its videos already finished."""
    k, n = shard
    jobs, done = [], 0
    for split, indices in config.ranges().items():
        for index in indices:
            if index % n != k:
                continue
            name = layout.video_name(index)
            for folder in (root / split, root / layout.ANSWERS):
                stale = folder / (_TMP_PREFIX + name)
                if stale.exists():
                    shutil.rmtree(stale)
            finished = (root / split / name).is_dir()
            if split == "hidden":
                finished = finished and (root / layout.ANSWERS / name).is_dir()
            if finished:
                done += 1
            else:
                jobs.append((str(root), split, index, config.seed))
    return jobs, done


def _locked(path: Path, *, wait: bool) -> int | None:
    """A descriptor of `path` (created if missing) holding an exclusive lock on it; None when
    another process holds it and not `wait`. A file removed or replaced while waiting for it
    (its holder removes it when done) is opened again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(path: Path) -> str | None:
    """The pid written in the lock file `path` if a process holds it; None if none does (the
    file, left by a run that was killed, is removed)."""
    try:
        fd = os.open(path, os.O_RDWR)  # an exclusive lock on NFS needs a file open for writing
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        path.unlink(missing_ok=True)
        return None
    finally:
        os.close(fd)


def _register(root: Path, mine: Path, shard: tuple[int, int]) -> int:
    """Check the runs writing `root` and take this run's lock file `mine`, both while holding
    the registry; the descriptor that holds `mine`. `OutputError` when a run shares videos
    with this one."""
    k, n = shard
    registry = _locked(root / _REGISTRY, wait=True)
    try:
        for other in sorted(root.iterdir()):
            match = _LOCK_RE.match(other.name)
            if match is None:
                continue
            other_k, other_n = int(match.group(1)), int(match.group(2))
            pid = _holder(other)
            if pid is not None and (k - other_k) % math.gcd(n, other_n) == 0:
                sharded = f" with --shard {other_k}/{other_n}" if other_n > 1 else ""
                raise OutputError(f"{root} is being written by another `simvp-unet data generate` (pid {pid}"
                                  f"{sharded}); wait for it or choose another --out")
        fd = _locked(mine, wait=False)
        if fd is None:  # not expected: runs take their lock while holding the registry
            raise OutputError(f"{root} is being written by another `simvp-unet data generate`; wait for it or "
                              "choose another --out")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            mine.unlink(missing_ok=True)
            os.close(fd)
            raise
        return fd
    finally:
        (root / _REGISTRY).unlink(missing_ok=True)
        os.close(registry)


@contextmanager
def _writer_lock(root: Path, shard: tuple[int, int]) -> Iterator[None]:
    """Hold `root` for this run's videos: `OutputError` at once when another run is writing
    any of them (the same folder, and a shard that shares videos with this one). On a file
    system without locks the run goes unguarded."""
    mine = root / ".generate.{}-{}.lock".format(*shard)
    fd = None
    if fcntl is not None:
        try:
            fd = _register(root, mine, shard)
        except OutputError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise output_error(root, exc) from None
    try:
        yield
    finally:
        if fd is not None:
            mine.unlink(missing_ok=True)
            os.close(fd)


def _run_jobs(jobs: list, workers: int, mesh_dir: str, config: GenerateConfig) -> Iterator[tuple[str, int]]:
    if workers <= 1:
        _init_worker(mesh_dir, config.world, config.shape)
        yield from map(_render_video, jobs)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(mesh_dir, config.world, config.shape)) as pool:
        yield from pool.imap_unordered(_render_video, jobs, chunksize=2)


def generate(root: str | Path, config: GenerateConfig, *, workers: int = 1,
             shard: tuple[int, int] = (0, 1), progress: bool = True, preset: str | None = None) -> dict:
    """Generate (or finish) the dataset under `root`; returns a summary dict
    (videos written, skipped, seconds, videos per second).

    Refuses (`ConfigError`) a folder generated with other settings (seed, split sizes, world,
    task shape: see `manifest`);
    `preset` is only recorded in `dataset.json`.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(root, exc) from None
    with _writer_lock(root, shard):
        manifest.claim(root, manifest.describe(config, GENERATOR_VERSION, preset), config.ranges())
        for split in (*layout.SPLITS, layout.ANSWERS):
            (root / split).mkdir(parents=True, exist_ok=True)
        jobs, done = plan_jobs(root, config, shard)
        start = time.perf_counter()
        mesh_dir = root / ".meshes.{}-{}".format(*shard)  # this run's own (under its lock)
        try:
            try:
                shutil.rmtree(mesh_dir, ignore_errors=True)  # left by a run that was killed
                mesh_dir.mkdir()
                meshes.write_meshes(mesh_dir)
            except OSError as exc:
                raise output_error(root, exc) from None
            bar = tqdm(total=len(jobs), desc="generate", unit="video", disable=not progress)
            for _ in _run_jobs(jobs, min(workers, max(len(jobs), 1)), str(mesh_dir), config):
                bar.update()
            bar.close()
        finally:
            shutil.rmtree(mesh_dir, ignore_errors=True)
    seconds = time.perf_counter() - start
    return {"written": len(jobs), "skipped": done, "seconds": round(seconds, 2),
            "videos_per_s": round(len(jobs) / seconds, 2) if jobs and seconds > 0 else 0.0}
