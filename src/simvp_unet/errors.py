"""Errors that the CLI reports as one clear line (no traceback), and the one place that turns
any user-facing failure into that line and an exit code (`explain`).

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
}


def os_reason(exc: OSError) -> str:
    """The reason of an OS error in words, with what to do."""
    return _OS_REASONS.get(exc.errno, (exc.strerror or str(exc) or type(exc).__name__).lower())


def output_error(path: object, exc: BaseException) -> OutputError:
    """An `OutputError` for a failed write of `path` (an OSError, or torch's stream-writer error)."""
    if isinstance(exc, OSError):
        reason = os_reason(exc)
    else:  # torch.save reports a failed write as "[enforce fail at inline_container.cc] ... file write failed"
        reason = "the write failed (is the disk full?); free some space or write elsewhere"
    return OutputError(f"cannot write {path}: {reason}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Advice found in torch's and numpy's messages that amounts to "execute this untrusted file".
_UNSAFE_ADVICE = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|add_safe_globals|safe_globals",
                            re.IGNORECASE)
_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def short_reason(exc: BaseException) -> str:
    """One safe line about why a file could not be loaded: no ANSI codes, no advice to load
    untrusted code, never empty."""
    text = _ANSI.sub("", str(exc))
    found = _GLOBAL.search(text)
    if found:  # torch refused a pickled Python object: say what it was, not how to force it
        return f"it holds a Python object ({found.group(1)}) that is not loaded, for safety"
    if any(sign in text for sign in ("Unpickler error", "invalid load key", "PytorchStreamReader", "truncated",
                                     "zip archive")):
        return "its contents are unreadable: damaged, truncated or not this kind of file"
    if "containing pickled data" in text or "contains pickled" in text:  # numpy: not an array header
        return "not an array file: damaged, or pickled Python data, which is not loaded, for safety"
    if _UNSAFE_ADVICE.search(text) or "pickle" in text.lower():
        return "it holds pickled Python objects, which are not loaded, for safety"
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if len(line) > 160:
        line = line[:157] + "..."
    return f"{type(exc).__name__}: {line}" if line else "the file is empty or truncated"


def explain(exc: BaseException) -> tuple[str, int] | None:
    """(one line, exit code) for a failure the user should see without a traceback; None for a bug."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, SimvpUnetError):
        return str(exc), EXIT_ERROR
    if isinstance(exc, OSError):  # raised outside our writers (a library's own file): name its path
        path = exc.filename if exc.filename is not None else "a file"
        return f"{path}: {os_reason(exc)}", EXIT_ERROR
    return None
