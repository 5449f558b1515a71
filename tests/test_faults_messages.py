"""Fault messages: failures that torch, numpy and safetensors word for themselves end as the same
one line as any other user error (`errors.explain`, `errors.short_reason`).

Errors raised in DataLoader worker processes, torch's shared-memory failures, torch's refusals
to unpickle (in the installed torch's own words, made by loading crafted files with
weights_only=True, and in older torch's), truncated checkpoints, and full disks under the
safetensors and numpy writers. One tiny segmenter run (a few seconds).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from faultlib import UNSAFE, one_error, tree
from safetensors import SafetensorError
from torch.utils.data import DataLoader, Dataset

from simvp_unet import errors
from simvp_unet.cli import main
from simvp_unet.data import layout
from simvp_unet.errors import ConfigError, DataError, OutputError, explain, short_reason
from simvp_unet.runs import read_checkpoint

# What a message about a file must never say: how to load it unsafely anyway.








@pytest.fixture(scope="module")
def segmenter_run(tiny_args, tiny_data, tmp_path_factory) -> Path:
    """A tiny trained segmenter run (its checkpoints are real ones to damage)."""
    run = tmp_path_factory.mktemp("messages") / "segmenter"
    assert main(["train", "segmenter", "--data", str(tiny_data), "--out", str(run), "--workers", "0",
                 *tiny_args("segmenter")]) == 0
    return run


# ---------------------------------------------------------------------------- DataLoader workers


class Failing(Dataset):
    """A dataset whose every item raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise self.error


def raised_by_loader(error: BaseException | Dataset, workers: int) -> BaseException:
    """The exception a real DataLoader with `workers` worker processes raises for `error` (or
    for a dataset that raises)."""
    dataset = error if isinstance(error, Dataset) else Failing(error)
    batches = iter(DataLoader(dataset, batch_size=1, num_workers=workers))
    try:
        next(batches)
    except Exception as exc:  # noqa: BLE001 - whatever torch raised is what is tested
        return exc.with_traceback(None)  # no frame keeps the loader: its workers stop now
    finally:
        del batches
    raise AssertionError("the loader raised nothing")


@pytest.mark.parametrize("error", [
    DataError("x.npy: bad"),
    ConfigError("lr must be positive, got -1"),
    OutputError("cannot write out/x.png: no space left on the device; free some space or write elsewhere"),
    FileNotFoundError(errno.ENOENT, "No such file or directory", "data/train/video_3/mask.npy"),
    PermissionError(errno.EACCES, "Permission denied", "data/it's here/0.png"),
    OSError(errno.EIO, "Input/output error"),
], ids=["DataError", "ConfigError", "OutputError", "FileNotFoundError", "PermissionError", "OSError"])
def test_a_worker_error_reads_as_without_workers(error):
    in_worker = raised_by_loader(error, workers=1)
    assert str(in_worker).startswith(f"Caught {type(error).__name__} in DataLoader worker process 0.")
    assert explain(in_worker) == explain(raised_by_loader(error, workers=0)) == explain(error)
    message, code = explain(in_worker)
    assert code == 2 and "\n" not in message and "Traceback" not in message


def test_a_chained_worker_error_reads_as_its_last_exception():
    """`raise DataError(...) from exc` in a worker: the traceback holds both; the raised one counts."""

    class Chained(Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int):
            try:
                raise DataError("inner.npy: not this one")
            except DataError as exc:
                raise DataError("outer.npy: this one") from exc

    raised = raised_by_loader(Chained(), workers=1)
    assert isinstance(raised, DataError) and "inner.npy" in str(raised)  # torch's message: both tracebacks
    assert explain(raised) == ("outer.npy: this one", 2)


def test_a_worker_bug_still_shows_its_traceback():
    """An error that is no user's fault stays unexplained (the CLI shows the traceback)."""
    for error in (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), KeyError("frames"),
                  TypeError("unsupported operand")):
        assert explain(raised_by_loader(error, workers=1)) is None


def test_a_corrupt_mask_with_loader_workers_gives_one_line(data, tiny_args, tmp_path, capsys, monkeypatch):
    """End to end: `train segmenter --workers 1` on a dataset with a corrupt mask.npy, with the
    check before training switched off so that the mask is first read in a loader worker."""
    monkeypatch.setattr("simvp_unet.train.runner.check_readable", lambda *datasets, **kwargs: None)
    mask = data / "train" / "video_0" / layout.MASK_FILE
    mask.write_bytes(b"\x00" * 99)
    assert main(["train", "segmenter", "--data", str(data), "--out", str(tmp_path / "run"), "--workers", "1",
                 *tiny_args("segmenter")]) == 2
    err = one_error(capsys)
    assert str(mask) in err and "Caught" not in err and "worker process" not in err


# ---------------------------------------------------------------------------- worker shared memory

# torch's own messages (torch 2.13: MapAllocator.cpp, torch/utils/data/dataloader.py,
# torch/csrc/DataLoader.cpp, multiprocessing's reduction), and what each line must tell.
SHM_FULL = ("--workers 0", "/dev/shm")
FILE_SIZE = ("--workers 0", "/dev/shm", "ulimit -f")
OPEN_FILES = ("--workers 0", "ulimit -n")
SHARED_MEMORY_FAILURES = {
    "resize": (RuntimeError("unable to resize file </torch_16430_2141837178_0> to the right size: "
                            "File too large (27)"), FILE_SIZE),
    "write": (RuntimeError("unable to write to file </torch_16430_2141837178_1>: No space left on device (28)"),
              SHM_FULL),
    "allocate": (RuntimeError("unable to allocate shared memory(shm) for file </torch_3141_59_26>: "
                              "No space left on device (28)"), SHM_FULL),
    "bus error": (RuntimeError("DataLoader worker (pid 4242) is killed by signal: Bus error. It is possible that "
                               "dataloader's workers are out of shared memory. Please try to raise your shared "
                               "memory limit."), SHM_FULL),
    "shm file": (OSError(errno.ENOSPC, "No space left on device", "/dev/shm/torch_77_88_9"), SHM_FULL),
    "open shm": (RuntimeError("unable to open shared memory object </torch_16797_709525566_83> in read-write "
                              "mode: Too many open files (24)"), OPEN_FILES),
    "ancdata": (RuntimeError("received 0 items of ancdata"), OPEN_FILES),
    "EMFILE": (OSError(errno.EMFILE, "Too many open files"), ("ulimit -n", "--workers")),
    "fd margin": (RuntimeError("Too many open files. Communication with the workers is no longer possible. Please "
                               "increase the limit using `ulimit -n` in the shell or change the sharing strategy by "
                               "calling `torch.multiprocessing.set_sharing_strategy('file_system')` at the beginning "
                               "of your code"), OPEN_FILES),
}


@pytest.mark.parametrize("failure", list(SHARED_MEMORY_FAILURES))
@pytest.mark.parametrize("where", ["main process", "worker"])
def test_shared_memory_failures_say_what_to_do(failure, where):
    error, says = SHARED_MEMORY_FAILURES[failure]
    raised = error if where == "main process" else raised_by_loader(error, workers=1)
    explained = explain(raised)
    assert explained is not None, raised
    message, code = explained
    assert code == 2 and "\n" not in message and "Caught" not in message
    assert all(part in message for part in says), message


def test_a_file_size_limit_under_two_workers_gives_one_line(tmp_path):
    """The real failure: two workers pass 16 MiB batches through /dev/shm under `ulimit -f 1024`."""
    script = textwrap.dedent("""
        import resource, torch
        from torch.utils.data import DataLoader, Dataset
        from simvp_unet.errors import explain

        class Frames(Dataset):
            def __len__(self):
                return 8

            def __getitem__(self, index):
                return torch.zeros(4, 1024, 1024)

        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            for batch in DataLoader(Frames(), batch_size=2, num_workers=2):
                pass
        except Exception as exc:
            print("RAISED", str(exc).strip().splitlines()[-1])
            print("EXPLAINED", explain(exc))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    if "RAISED" not in out:
        pytest.skip(f"the file-size limit did not stop the workers here: {result.stdout}{result.stderr}")
    assert "unable to resize file </torch_" in out["RAISED"]  # torch's own words, from the worker
    assert "--workers 0" in out["EXPLAINED"] and "ulimit -f" in out["EXPLAINED"] and ", 2)" in out["EXPLAINED"]


# ---------------------------------------------------------------------------- refused pickles


class Custom:
    """A class of this module: not on torch's allowlist."""


class Exploit:
    """A pickle that would run a command if unpickled by plain pickle."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/simvp_unet_pwned",))


def _torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


CUSTOM = f"{Custom.__module__}.{Custom.__qualname__}"
SYSTEM = f"{os.system.__module__}.system"  # posix.system
# Crafted files, and the global torch refuses in each (None: torch names none).
CRAFTED = {
    "class, pickle protocol 2": (lambda: pickle.dumps(Custom(), protocol=2), CUSTOM),
    "class, pickle protocol 5": (lambda: pickle.dumps(Custom(), protocol=5), None),
    "os.system, protocol 0": (lambda: pickle.dumps(Exploit(), protocol=0), SYSTEM),
    "os.system, protocol 2": (lambda: pickle.dumps(Exploit(), protocol=2), SYSTEM),
    "os.system, protocol 5": (lambda: pickle.dumps(Exploit(), protocol=5), None),
    "os.system in torch.save": (lambda: _torch_saved(Exploit()), SYSTEM),
    "class in torch.save": (lambda: _torch_saved({"config": Custom()}), CUSTOM),
    "numpy array in torch.save": (lambda: _torch_saved(np.zeros(3)), "numpy"),
}


def check_safe(reason: str) -> None:
    assert reason and "\n" not in reason and len(reason) < 240, reason
    assert not any(bad in reason.lower() for bad in UNSAFE), reason


@pytest.mark.parametrize("crafted", list(CRAFTED))
def test_refused_pickles_name_the_global_and_no_advice(crafted, tmp_path):
    make, refused = CRAFTED[crafted]
    path = tmp_path / "crafted.pt"
    path.write_bytes(make())
    with pytest.raises(Exception) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about pickle protocols it did not write
        torch.load(path, map_location="cpu", weights_only=True)
    reason = short_reason(caught.value)
    check_safe(reason)
    if refused is not None:
        assert refused in reason and "not loaded, for safety" in reason, reason
    assert not Path("/tmp/simvp_unet_pwned").exists()


# The same refusals in the words of older torch (1.13 .. 2.5) and of numpy.
OLDER = [
    ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but "
     "it can result in arbitrary code execution.Do it only if you get the file from a trusted source. "
     "WeightsUnpickler error: Unsupported class TTS.tts.configs.xtts_config.XttsConfig",
     "TTS.tts.configs.xtts_config.XttsConfig"),
    ("Weights only load failed. This file can still be loaded, to do so you have two options \n\t(1) Re-running "
     "`torch.load` with `weights_only` set to `False` will likely succeed, but it can result in arbitrary code "
     "execution. Do it only if you got the file from a trusted source.\n\t(2) Alternatively, to load with "
     "`weights_only=True` please check the recommended steps in the following error message.\n\tWeightsUnpickler "
     "error: Unsupported global: GLOBAL argparse.Namespace was not an allowed global by default. Please use "
     "`torch.serialization.add_safe_globals([Namespace])` to allowlist this global if you trust this class/function.",
     "argparse.Namespace"),
    ("Weights only load failed. Trying to call reduce for unrecognized function <built-in function system> which "
     "belongs to <module 'posix' (built-in)>\n Re-running `torch.load` with `weights_only` set to `False` will likely "
     "succeed, but it can result in arbitrary code execution.", "system"),
    (f"Weights only load failed. ``torch.nested`` and ``torch._dynamo`` must be imported to load nested jagged "
     f"tensors (NJTs)\n {torch.serialization.UNSAFE_MESSAGE}\n", "torch.nested"),
    ("Object arrays cannot be loaded when allow_pickle=False", None),
]


@pytest.mark.parametrize(("message", "names"), OLDER)
def test_older_wordings_give_no_advice(message, names):
    import _pickle

    for error in (_pickle.UnpicklingError(message), RuntimeError(message), ValueError(message)):
        reason = short_reason(error)
        check_safe(reason)
        if names is not None:
            assert names in reason, reason


# ---------------------------------------------------------------------------- truncated checkpoints


@pytest.mark.parametrize("keep", ["half", "5000 bytes", "10 bytes", "2 bytes"])
def test_a_truncated_checkpoint_is_said_damaged_or_truncated(segmenter_run, tmp_path, capsys, keep):
    """Cut to under 64 KiB, torch's zip reader seeks before the start: OSError [Errno 22]."""
    run = Path(shutil.copytree(segmenter_run, tmp_path / "run"))
    best = run / "checkpoints" / "best.ckpt"
    content = best.read_bytes()
    best.write_bytes(content[: len(content) // 2 if keep == "half" else int(keep.split()[0])])
    with pytest.raises(DataError) as caught:
        read_checkpoint(best)
    assert str(best) in str(caught.value) and "damaged or truncated" in str(caught.value)
    check_safe(str(caught.value))
    out = tmp_path / "m.safetensors"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 2
    err = one_error(capsys)
    assert str(best) in err and "damaged or truncated" in err and "Errno" not in err
    assert not out.exists()


def test_einval_from_a_cut_zip_is_damage():
    assert "damaged or truncated" in short_reason(OSError(errno.EINVAL, "Invalid argument"))


# ---------------------------------------------------------------------------- full disks


@pytest.mark.parametrize(("message", "says"), [
    ("Error while serializing: I/O error: No space left on device (os error 28)", "no space left"),
    ("Error while serializing: I/O error: File too large (os error 27)", "file too large"),
    ('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })',
     "no space left"),
])
def test_export_safetensors_on_a_full_disk(segmenter_run, tmp_path, capsys, monkeypatch, message, says):
    import simvp_unet.models.export as exporters

    out = tmp_path / "m.safetensors"
    out.write_bytes(b"the previous export")

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise SafetensorError(message)

    monkeypatch.setattr(exporters, "save_file", full)
    assert main(["export", str(segmenter_run), "--format", "safetensors", "--out", str(out)]) == 2
    err = one_error(capsys)
    assert f"cannot write {out}:" in err and says in err and ("free some space" in err or "ulimit -f" in err)
    assert "SafetensorError" not in err and "os error" not in err
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary left


def test_other_safetensors_errors_are_not_disguised(tmp_path, monkeypatch):
    import simvp_unet.models.export as exporters
    from simvp_unet.models.unet import UNet, UNetConfig

    def refuse(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: a tensor is not contiguous")

    monkeypatch.setattr(exporters, "save_file", refuse)
    net = UNet(UNetConfig(base_channels=4, depth=2))
    with pytest.raises(SafetensorError, match="not contiguous"):
        exporters.export_safetensors(net, net.config, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("error", "says"), [
    (OSError("844800 requested and 511872 written"), "cut short"),  # numpy's tofile: no errno
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "no space left"),
])
def test_label_on_a_full_disk(data, segmenter_run, capsys, monkeypatch, error, says):
    before = tree(data)

    def full(file, arr, *args, **kwargs):
        Path(file).write_bytes(b"\x93NUMPY half")
        raise error

    monkeypatch.setattr(np, "save", full)
    assert main(["label", "--data", str(data), "--segmenter", str(segmenter_run)]) == 2
    err = one_error(capsys)
    assert "cannot write " in err and str(data) in err and layout.PRED_MASK_FILE in err
    assert says in err and "free some space or write elsewhere" in err and "requested" not in err
    assert tree(data) == before  # no half-written mask_pred.npy, no temporary


def test_a_short_write_names_what_to_do():
    reason = errors.os_reason(OSError("844800 requested and 511872 written"))
    assert "disk full" in reason and "free some space" in reason


def test_numpy_memory_map_refusals_read_as_damaged_or_pickled(tmp_path):
    """The masks are opened as memory maps: numpy's own words for an object array and a cut file
    become the safe one-line reasons."""
    import numpy as np

    np.save(tmp_path / "objects.npy", np.empty(3, dtype=object), allow_pickle=True)
    np.save(tmp_path / "cut.npy", np.zeros((22, 16, 24), np.uint8))
    with open(tmp_path / "cut.npy", "r+b") as f:
        f.truncate(200)
    reasons = {}
    for name in ("objects.npy", "cut.npy"):
        with pytest.raises((ValueError, OSError)) as info:
            np.load(tmp_path / name, allow_pickle=False, mmap_mode="r")
        reasons[name] = short_reason(info.value)
    assert "pickled Python data, which is not loaded" in reasons["objects.npy"]
    assert "damaged or truncated" in reasons["cut.npy"]
