"""Fault injection in the data tools: frames in any PNG mode, caches that a rewrite keeping size
and modification time does not fool, damaged and unwritable track caches, two generations into
one folder, a full disk while generating, and a dataset without objects. Each user-caused
failure ends in one line naming the file or folder, exit code 2, nothing half-written.

Tiny data only (a copy of the session's tiny dataset per test; a few one-video generations).
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from faultlib import one_error
from PIL import Image

from simvp_unet.cli import main
from simvp_unet.data import layout
from simvp_unet.errors import DataError, OutputError

ONE_VIDEO = ["--quiet", "--train", "1", "--val", "0", "--unlabeled", "0", "--hidden", "0"]






def _rewrite_keeping_size_and_mtime(path: Path, content: bytes) -> None:
    """Write other bytes of the same length into `path` and put its times back (os.utime)."""
    stat = path.stat()
    assert len(content) == stat.st_size and content != path.read_bytes()
    path.write_bytes(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def _mask_bytes(mask: np.ndarray) -> bytes:
    with tempfile.TemporaryFile() as f:
        np.save(f, mask, allow_pickle=False)
        f.seek(0)
        return f.read()


# ---------------------------------------------------------------------------- 1. PNG modes


def _as_mode(rgb: np.ndarray, mode: str) -> tuple[Image.Image, np.ndarray]:
    """A PIL image of frame `rgb` in `mode` and the RGB frame it stands for."""
    if mode == "I;16":  # 16-bit grayscale: gray * 257 plus noise in the low byte
        gray = rgb.mean(-1).astype(np.uint16)
        noise = np.random.default_rng(0).integers(0, 256, gray.shape, dtype=np.uint16)
        return Image.fromarray(gray * 256 + noise), np.repeat(gray.astype(np.uint8)[..., None], 3, -1)
    image = Image.fromarray(rgb).convert(mode)
    return image, np.asarray(image.convert("RGBA").convert("RGB"))


@pytest.mark.parametrize("mode", ["I;16", "L", "LA", "P", "RGBA", "1"])
def test_frames_in_any_png_mode_are_read_as_rgb(data, capsys, mode):
    from simvp_unet.data.datasets import VideoDataset

    path = data / "train" / "video_0" / layout.frame_name(3)
    image, want = _as_mode(layout.read_frame(path), mode)
    image.save(path)
    with Image.open(path) as saved:
        assert saved.mode == mode  # a real file of that mode
    got = layout.read_frame(path)
    assert got.dtype == np.uint8 and got.shape == (layout.COMPETITION.height, layout.COMPETITION.width, 3)
    assert np.array_equal(got, want)
    if mode == "I;16":
        assert (got == 255).mean() < 0.5  # scaled, not clipped to solid white
    assert main(["data", "check", str(data), "--quiet"]) == 0
    assert main(["data", "pack", str(data), "--split", "train", "--quiet"]) == 0
    packed = VideoDataset(data, "train")
    assert packed.packed is not None
    assert np.array_equal(packed[0]["frames"][3].numpy().transpose(1, 2, 0), want)


@pytest.mark.parametrize("mode", ["F", "CMYK", "I"])
def test_a_frame_of_an_unsupported_mode_is_refused(data, capsys, mode):
    """Files a PNG frame cannot be: floating point, CMYK, 32-bit integers beyond 16 bits."""
    path = data / "train" / "video_1" / layout.frame_name(5)
    rgb = layout.read_frame(path)
    if mode == "CMYK":
        Image.fromarray(rgb).convert("CMYK").save(path, format="JPEG")
    else:
        Image.fromarray(np.full(rgb.shape[:2], 70000, np.float32 if mode == "F" else np.int32)).save(
            path, format="TIFF")
    says = "values 0..65535" if mode == "I" else f"image mode {mode}, which is not supported"
    with pytest.raises(DataError, match=says) as exc:
        layout.read_frame(path)
    assert str(path) in str(exc.value)
    assert main(["data", "check", str(data), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"frame {path}" in out and says in out
    assert main(["data", "pack", str(data), "--split", "train", "--quiet"]) == 2
    err = one_error(capsys)
    assert str(path) in err and says in err
    assert not list((data / "packed").glob("train.*"))


# ---------------------------------------------------------------------------- 2. caches that see rewrites


def test_tracks_cache_sees_a_rewrite_keeping_size_and_mtime(data):
    from simvp_unet.objects.cache import cache_path, split_tracks

    before = split_tracks(data, "train", progress=False)
    assert before["classes"][0].any() and cache_path(data, "train").is_file()
    path = data / "train" / "video_0" / layout.MASK_FILE
    _rewrite_keeping_size_and_mtime(path, _mask_bytes(np.zeros((layout.COMPETITION.frames, layout.COMPETITION.height, layout.COMPETITION.width),
                                                                np.uint8)))
    after = split_tracks(data, "train", progress=False)
    assert not after["classes"][0].any()  # rebuilt from the new mask: no objects in video 0
    assert np.array_equal(after["classes"][1:], before["classes"][1:])
    again = split_tracks(data, "train", progress=False)  # and cached again
    assert all(np.array_equal(again[k], after[k]) for k in after)


def test_pack_is_not_used_after_a_rewrite_keeping_size_and_mtime(data, capsys):
    from simvp_unet.data.datasets import VideoDataset
    from simvp_unet.data.pack import open_packed

    assert main(["data", "pack", str(data), "--split", "train", "--quiet"]) == 0
    assert open_packed(data, "train") is not None
    path = data / "train" / "video_0" / layout.MASK_FILE
    new = layout.read_mask(path.parent, layout.COMPETITION)[::-1].copy()  # the frames in reverse order
    _rewrite_keeping_size_and_mtime(path, _mask_bytes(new))
    assert open_packed(data, "train") is None
    clips = VideoDataset(data, "train", masks="true")
    assert clips.packed is None and np.array_equal(clips[0]["masks"].numpy(), new)
    capsys.readouterr()
    assert main(["data", "pack", str(data), "--split", "train"]) == 0  # packed anew, not kept
    assert "already up to date" not in capsys.readouterr().out
    assert np.array_equal(VideoDataset(data, "train", masks="true")[0]["masks"].numpy(), new)


def test_a_copied_dataset_keeps_its_caches_after_a_hash(data, tmp_path, capsys, monkeypatch):
    """A copy has new inodes and status-change times: the bytes are hashed once, not rebuilt."""
    import simvp_unet.objects.cache as cache
    from simvp_unet.data.pack import open_packed

    assert main(["data", "pack", str(data), "--split", "train", "--quiet"]) == 0
    tracks = cache.split_tracks(data, "train", progress=False)
    copy = Path(shutil.copytree(data, tmp_path / "copy"))
    assert open_packed(copy, "train") is None  # stale until `data pack` hashes the files
    capsys.readouterr()
    assert main(["data", "pack", str(copy), "--split", "train", "--quiet"]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert open_packed(copy, "train") is not None

    def rebuilt(*args, **kwargs):
        raise AssertionError("tracks extracted again")

    monkeypatch.setattr(cache, "extract_tracks", rebuilt)
    for _ in range(2):  # hashed and stamped once, then trusted
        kept = cache.split_tracks(copy, "train", progress=False)
        assert all(np.array_equal(kept[k], tracks[k]) for k in tracks)


# ---------------------------------------------------------------------------- 3. unreadable track caches


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/simvp_unet_pwned",))


def _damage_cache(path: Path, how: str) -> None:
    """Damage the tracks cache `path` (its fingerprint kept where it stays readable)."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"not a cache " * 100)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "malicious pickle":
        path.write_bytes(pickle.dumps(_Exploit()))
    elif how == "a .npy file":
        np.save(open(path, "wb"), np.zeros(3))
    else:
        with np.load(path, allow_pickle=False) as cached:
            arrays = {k: cached[k] for k in cached.files}
        if how == "a field missing":
            del arrays["present"]
        elif how == "wrong shape":
            arrays["center"] = arrays["center"][:, :, :5]
        elif how == "other videos":
            arrays["index"] = arrays["index"] + 100
        elif how == "pickled objects":
            arrays["classes"] = np.array([_Exploit()] * len(arrays["classes"]), dtype=object)
        with open(path, "wb") as f:
            np.savez(f, **arrays)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "malicious pickle", "a .npy file",
                                 "a field missing", "wrong shape", "other videos", "pickled objects"])
def test_an_unreadable_tracks_cache_is_rebuilt(data, how):
    from simvp_unet.objects.cache import cache_path, split_tracks

    good = split_tracks(data, "train", progress=False)
    path = cache_path(data, "train")
    _damage_cache(path, how)
    for _ in range(2):  # rebuilt, then read
        arrays = split_tracks(data, "train", progress=False)
        assert set(arrays) == set(good) and all(np.array_equal(arrays[k], good[k]) for k in good)
    with np.load(path, allow_pickle=False) as cached:
        assert np.array_equal(cached["center"], good["center"])
    assert not Path("/tmp/simvp_unet_pwned").exists()


# ---------------------------------------------------------------------------- 4. where the tracks are kept


def test_tracks_of_a_read_only_dataset(data, tmp_path, capsys, monkeypatch):
    from simvp_unet.objects.cache import cache_path, split_tracks

    assert cache_path(data, "val", tmp_path / "t") == tmp_path / "t" / "val.npz"
    assert cache_path(data, "val") == data / "tracks" / "val.npz"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with monkeypatch.context() as m:  # DATA/tracks cannot be written: computed in memory, one note
        m.setattr(tempfile, "mkstemp", read_only)
        arrays = split_tracks(data, "val", progress=False)
        with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'elsewhere' / 'val.npz'}: read-only"):
            split_tracks(data, "val", cache_dir=tmp_path / "elsewhere", progress=False)  # a given folder must work
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: ") and str(data / "tracks" / "val.npz") in err[0], err
    assert "read-only" in err[0] and "tracks_dir" in err[0]
    assert len(arrays["index"]) == 2 and not cache_path(data, "val").exists()

    folder = tmp_path / "tracks_elsewhere"
    moved = split_tracks(data, "val", cache_dir=folder, progress=False)
    assert (folder / "val.npz").is_file() and not cache_path(data, "val").exists()
    assert all(np.array_equal(moved[k], arrays[k]) for k in arrays)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OutputError, match=str(tmp_path / "a_file")):
        split_tracks(data, "val", cache_dir=tmp_path / "a_file", progress=False)


# ---------------------------------------------------------------------------- 5. two writers


_HOLD = """
import sys
from pathlib import Path
from simvp_unet.data.generate import _writer_lock
with _writer_lock(Path(sys.argv[1]), (int(sys.argv[2]), int(sys.argv[3]))):
    print("held", flush=True)
    sys.stdin.read()
"""


def _holder(out: Path, k: int = 0, n: int = 1) -> subprocess.Popen:
    """Another process holding the generation lock of `out` for shard k/n (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out), str(k), str(n)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_generate_into_one_folder_fails_at_once(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    proc = _holder(out)
    try:
        assert main(["data", "generate", "--out", str(out), *ONE_VIDEO]) == 2
        err = one_error(capsys)
        assert (f"{out} is being written by another `simvp-unet data generate` (pid {proc.pid}); wait for it or "
                "choose another --out") in err
        assert sorted(p.name for p in out.iterdir()) == [".generate.0-1.lock"]  # nothing else written
    finally:
        proc.kill()  # killed: its lock file stays, its lock goes
        proc.wait()
    assert main(["data", "generate", "--out", str(out), *ONE_VIDEO]) == 0
    assert [i for i, _ in layout.list_videos(out, "train")] == [0]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no lock, no meshes left


def test_disjoint_shards_may_run_side_by_side(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    two = ["--quiet", "--train", "2", "--val", "0", "--unlabeled", "0", "--hidden", "0"]
    proc = _holder(out, 0, 2)
    try:
        for shard in ("0/2", "2/4", "0/1"):  # they share videos with 0/2
            assert main(["data", "generate", "--out", str(out), *two, "--shard", shard]) == 2
            assert f"(pid {proc.pid} with --shard 0/2)" in one_error(capsys)
        assert main(["data", "generate", "--out", str(out), *two, "--shard", "1/2"]) == 0
        assert [i for i, _ in layout.list_videos(out, "train")] == [1]
    finally:
        proc.stdin.close()  # ends normally: removes its lock file
        proc.wait()
    assert not (out / ".generate.0-2.lock").exists()


def test_a_file_system_without_locks_generates_unguarded(tmp_path, capsys, monkeypatch):
    import simvp_unet.data.generate as gen

    def no_locks(*args, **kwargs):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(gen.fcntl, "flock", no_locks)
    out = tmp_path / "d"
    assert main(["data", "generate", "--out", str(out), *ONE_VIDEO]) == 0
    assert [i for i, _ in layout.list_videos(out, "train")] == [0]


# ---------------------------------------------------------------------------- 6. a full disk while generating


def test_full_disk_while_writing_the_meshes_names_the_output(tmp_path, capsys, monkeypatch):
    write_text = Path.write_text

    def full_for_meshes(self, *args, **kwargs):
        if self.suffix == ".obj":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_for_meshes)
    out = tmp_path / "d"
    assert main(["data", "generate", "--out", str(out), *ONE_VIDEO]) == 2
    err = one_error(capsys)
    assert f"cannot write {out}: no space left on the device; free some space or write elsewhere" in err
    assert layout.list_videos(out, "train") == []
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no lock, no meshes left


# ---------------------------------------------------------------------------- 7. no objects


def test_a_dataset_without_objects_is_named_by_check_and_stats(data, capsys):
    assert main(["data", "stats", str(data)]) == 0
    assert "no objects" not in capsys.readouterr().out
    for split in ("train", "val", layout.ANSWERS):
        for _, folder in layout.list_videos(data, split):
            np.save(folder / layout.MASK_FILE, np.zeros((layout.COMPETITION.frames, layout.COMPETITION.height, layout.COMPETITION.width), np.uint8))
    for meta in data.rglob(layout.META_FILE):  # masks only, as in the real task's data
        meta.unlink()
    assert main(["data", "check", str(data), "--quiet"]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "no objects" in line]
    assert lines == [f"no objects in {data}: every train/video_*/mask.npy, val/video_*/mask.npy, "
                     "hidden_answers/video_*/mask.npy is background only (class 0); nothing to segment or "
                     "forecast (were the masks saved wrong?)"]
    assert main(["data", "stats", str(data), "--split", "train", "val", "unlabeled"]) == 0
    out = capsys.readouterr().out
    assert out.count("no objects: the masks (or meta.json) of its") == 2, out  # train and val, not unlabeled
    assert "train: 4 videos (4 with masks or meta.json)" in out
