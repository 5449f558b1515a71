"""Errors that the CLI reports as one clear line (no traceback), and the one place that turns
any user-facing failure into that line and an exit code (`explain`).

`explain` also reads the failures that reach the command in other words: an exception of a
DataLoader worker process (torch re-raises it with the worker's traceback as its message: it is
told as the worker's own exception) and torch's failures to share batches through /dev/shm.

Exit codes: 2 for a failure the user can fix (bad input, unusable output, full disk),
130 for Ctrl-C (as a shell reports SIGINT); `data check` uses 1 for "problems found".
"""

from __future__ import annotations

import errno
import re

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class SimvpUnetError(Exception):
    """Base class of errors caused by the user's input: files, shapes, config values."""


class DataError(SimvpUnetError, ValueError):
    """A dataset file is missing, corrupt or has the wrong shape or values. Names the file."""


class ConfigError(SimvpUnetError, ValueError):
    """A config value, preset or command-line option is unknown or out of range."""


class OutputError(SimvpUnetError, OSError):
    """An output cannot be written (permission, full disk, a file where a folder is needed...).
    Names the path and what to do."""


class TrainingDiverged(SimvpUnetError, RuntimeError):
    """The training loss became NaN or infinite; says which setting to change."""


# What to do about an OS error, by errno. The path is named by the caller.
_OS_REASONS = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EACCES: "permission denied; choose a location you can write or change its permissions",
    errno.EPERM: "operation not permitted; choose a location you can write",
    errno.EROFS: "read-only file system; write elsewhere",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EISDIR: "this is a folder; give a file name",
    errno.EEXIST: "already exists",
    errno.ENOENT: "not found",
    errno.ENAMETOOLONG: "name too long",
    errno.EFBIG: "file too large for the file-size limit (ulimit -f) or the file system; raise the limit or "
                 "write elsewhere",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or use fewer --workers",
    errno.ENFILE: "too many open files in the system; close some programs or use fewer --workers",
}
# numpy's message for a write cut short (a full disk, the file-size limit), with no errno.
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def os_reason(exc: OSError) -> str:
    """The reason of an OS error in words, with what to do."""
    if exc.errno is None and _SHORT_WRITE.match(str(exc)):  # numpy's tofile on a full disk
        return "the write was cut short (is the disk full?); free some space or write elsewhere"
    return _OS_REASONS.get(exc.errno, (exc.strerror or str(exc) or type(exc).__name__).lower())


def output_error(path: object, exc: BaseException) -> OutputError:
    """An `OutputError` for a failed write of `path` (an OSError, or torch's stream-writer error)."""
    if isinstance(exc, OSError):
        reason = os_reason(exc)
    else:  # torch.save reports a failed write as "[enforce fail at inline_container.cc] ... file write failed"
        reason = "the write failed (is the disk full?); free some space or write elsewhere"
    return OutputError(f"cannot write {path}: {reason}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Advice found in torch's and numpy's messages that amounts to "execute this untrusted file", in
# every wording: torch < 2.4 "`weights_only` set to `False`", 2.4+ "add_safe_globals([...])",
# 2.6+ "In PyTorch 2.6, we changed the default value of the `weights_only` argument ...", numpy
# "allow_pickle=True".
_UNSAFE_ADVICE = re.compile(r"weights_only|allow_pickle|safe_globals|arbitrary code", re.IGNORECASE)
# The sentences around that advice in torch's messages, dropped with it.
_ASIDES = re.compile(r"Re-running|trusted source|trust the source|file an issue|Check the documentation|"
                     r"two options|Alternatively", re.IGNORECASE)
# The Python object torch refused to unpickle, in each wording since torch 1.13.
_REFUSED = (
    re.compile(r"Unsupported global: GLOBAL ([\w.]+)"),  # 2.4+: not on the allowlist
    re.compile(r"unsupported GLOBAL ([\w.]+) whose module"),  # 2.5+: a blocked module (os, posix, subprocess...)
    re.compile(r"Unsupported class ([\w.]+)"),  # 1.13 .. 2.3
    re.compile(r"unrecognized function <(?:built-in )?(?:function|method) ([\w.]+)"),
    re.compile(r"allowlisted via `add_safe_globals`,? but got <class '([\w.]+)'>"),
)
# Signs of a file that is damaged, truncated or of another kind, in torch's and pickle's words.
_UNREADABLE = ("Unpickler error", "invalid load key", "PytorchStreamReader", "truncated", "zip archive",
               "magic number", "mmap length is greater than file size")
UNREADABLE = "its contents are unreadable: it is damaged or truncated, or not this kind of file"


def _without_advice(text: str) -> str:
    """The sentences of `text` that give no advice about loading untrusted code, on one line."""
    sentences = re.split(r"(?<=[.:])\s+|\s*\n\s*|\t", text)
    return " ".join(s.strip() for s in sentences
                    if s.strip() and not _UNSAFE_ADVICE.search(s) and not _ASIDES.search(s))


def short_reason(exc: BaseException) -> str:
    """One safe line about why a file could not be loaded: no ANSI codes, no advice to load
    untrusted code, never empty."""
    text = _ANSI.sub("", str(exc))
    for pattern in _REFUSED:
        found = pattern.search(text)
        if found:  # torch refused a pickled Python object: say what it was, not how to force it
            return f"it holds a Python object ({found.group(1)}) that is not loaded, for safety"
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL:  # torch seeking before the start of a cut zip
        return UNREADABLE
    if any(sign in text for sign in _UNREADABLE):
        return UNREADABLE
    if ("containing pickled data" in text or "contains pickled" in text  # numpy: not an array header
            or "Python objects in dtype" in text):  # numpy: an object array asked for as a memory map
        return "not an array file: damaged, or pickled Python data, which is not loaded, for safety"
    if _UNSAFE_ADVICE.search(text) or "pickle" in text.lower():
        kept = _without_advice(text).removeprefix("Weights only load failed.").strip()
        kept = kept if len(kept) <= 120 else kept[:117] + "..."
        return "it holds pickled Python objects, which are not loaded, for safety" + (f" ({kept})" if kept else "")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if len(line) > 160:
        line = line[:157] + "..."
    return f"{type(exc).__name__}: {line}" if line else "the file is empty or truncated"


# torch re-raises the exception of a DataLoader worker process (or of its pin-memory thread) in
# the main process as the same type, its message the worker's whole traceback
# (torch._utils.ExceptionWrapper.reraise): "Caught DataError in DataLoader worker process 0.\n
# Original Traceback (most recent call last):\n ... \nsimvp_unet.errors.DataError: <message>".
# A type that cannot be built from one message comes back as a RuntimeError.
_WORKER_ERROR = re.compile(r"\ACaught (\w+) [^\n]*\.\nOriginal ")
_ERRNO_MESSAGE = re.compile(r"\A\[Errno (\d+)\] ([^\n]*?)(?:: (['\"])(.*?)\3(?: -> .*)?)?\Z")


def _original_message(text: str, name: str) -> str | None:
    """The message of the exception `name` at the end of a formatted traceback (after its
    "module.Name: " header line), or None where there is no such line."""
    lines = text.rstrip("\n").split("\n")
    header = re.compile(rf"(?:[\w.]+\.)?{re.escape(name)}(?:: |\Z)")
    for i in range(len(lines) - 1, 0, -1):  # the last header: a chained traceback ends with the raised one
        found = header.match(lines[i])
        if found:
            return "\n".join([lines[i][found.end():], *lines[i + 1:]]).strip()
    return None


def unwrap_worker_error(exc: BaseException) -> BaseException:
    """The exception raised in a DataLoader worker, as if it had been raised here: the same type
    with its own message (an OSError with its errno and file name); `exc` itself when it is
    not a worker's exception or its message cannot be recovered."""
    found = _WORKER_ERROR.match(str(exc)) if isinstance(exc, Exception) else None
    if not found:
        return exc
    message = _original_message(str(exc), found.group(1))
    if message is None:
        return exc
    errno_message = _ERRNO_MESSAGE.match(message) if isinstance(exc, OSError) else None
    try:
        if errno_message:
            number, strerror, _, filename = errno_message.groups()
            args = (int(number), strerror) + ((filename,) if filename is not None else ())
            original = type(exc)(*args)
        else:
            original = type(exc)(message)
    except Exception:  # noqa: BLE001 - a type built otherwise: keep torch's exception
        return exc
    if str(original) != message and not errno_message:  # a type that formats its message itself
        return exc
    return original


# torch's failures to pass a batch from a worker through shared memory (/dev/shm): it is full or
# limited (MapAllocator: "unable to resize file </torch_...> to the right size: File too large
# (27)", "unable to write to file </torch_...>: No space left on device (28)"; a worker killed by
# SIGBUS), or too many files are open (the file descriptors that carry the batches; an OSError
# EMFILE, which may come from elsewhere too, is told as any other OSError).
_SHM_FULL = re.compile(r"unable to (?:resize|stretch|write to) file <|unable to allocate shared memory|"
                       r"killed by signal: Bus error|out of shared memory")
_TOO_MANY_FILES = re.compile(r"Too many open files|received 0 items of ancdata")


def _shared_memory_failure(exc: BaseException) -> str | None:
    """One line for torch's failure to share a batch between DataLoader processes; None for
    any other error."""
    if not isinstance(exc, (RuntimeError, OSError)):
        return None
    text = str(exc)
    if isinstance(exc, RuntimeError) and _TOO_MANY_FILES.search(text):
        return ("data-loading workers ran out of open files (too many open files); run with --workers 0, or raise "
                "the limit (ulimit -n)")
    in_shm = isinstance(exc, OSError) and str(exc.filename or "").startswith("/dev/shm/")
    if in_shm or _SHM_FULL.search(text) or ("No space left on device" in text and "/torch_" in text):
        if in_shm:
            why = os_reason(exc).split(";")[0]
        elif "Bus error" in text:
            why = "a worker was killed by a bus error: it is full"
        else:  # MapAllocator's "...: <strerror> (<errno>)"
            found = re.search(r":\s*([^:\n]+?)(?:\s*\(\d+\))?\s*\Z", text.strip())
            why = found.group(1).lower() if found else "it is full"
        fix = "raise the file-size limit (ulimit -f)" if "too large" in why else \
            "free space in /dev/shm or give it more (docker run --shm-size)"
        return (f"data-loading workers could not share a batch through shared memory (/dev/shm: {why}); "
                f"run with --workers 0, or {fix}")
    return None


def explain(exc: BaseException) -> tuple[str, int] | None:
    """(one line, exit code) for a failure the user should see without a traceback; None for a bug.

    An exception raised in a DataLoader worker is explained as the worker's own exception
    (`unwrap_worker_error`), so that `--workers 2` and `--workers 0` give the same line."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    exc = unwrap_worker_error(exc)
    if isinstance(exc, SimvpUnetError):
        return str(exc), EXIT_ERROR
    shared = _shared_memory_failure(exc)
    if shared is not None:
        return shared, EXIT_ERROR
    if isinstance(exc, OSError):  # raised outside our writers (a library's own file): name its path
        return (f"{exc.filename}: " if exc.filename is not None else "") + os_reason(exc), EXIT_ERROR
    return None
