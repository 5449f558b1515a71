"""Atomic file writing: outputs appear whole or not at all; outputs checked before work starts.

A failed write (permission, full disk, a file where a folder is needed) raises `OutputError`
naming the path that was meant, never the temporary name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from .errors import OutputError, output_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; finished outputs get the usual mode.
_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    The temporary name keeps the suffix of `path` so that writers choosing a format
    by extension (PIL, numpy, torch) behave the same.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: this is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise output_error(path, exc) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except OSError as exc:
        raise output_error(path, exc) from None
    except RuntimeError as exc:
        if "file write failed" not in str(exc) and "inline_container" not in str(exc):
            raise
        raise output_error(path, exc) from None  # torch.save on a full disk
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _check_writable(folder: Path) -> None:
    """`folder` (existing or to be created) can receive files: no file on its way, write
    permission where it will be created, some free space."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write in {folder}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {folder}: permission denied on {existing}; choose a location "
                          "you can write or change its permissions")
    if shutil.disk_usage(existing).free == 0:
        raise OutputError(f"cannot write in {folder}: no space left on the device; free some space or "
                          "write elsewhere")


def check_output_file(path: str | Path, *, suffixes: tuple[str, ...] = ()) -> Path:
    """Fail with one line, before any work, when file `path` cannot be written.

    Args:
        path: the output file.
        suffixes: accepted endings (e.g. (".png", ".gif")); empty: any.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: this is a folder; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(f"cannot write {path}: the name must end in {' or '.join(suffixes)}")
    _check_writable(path.parent)
    return path


def check_output_dir(path: str | Path) -> Path:
    """Fail with one line, before any work, when folder `path` cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write in {path}: it is a file, not a folder; choose another path")
    _check_writable(path)
    return path


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON (indented) atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    """Write YAML atomically."""
    write_text(path, yaml.safe_dump(obj, sort_keys=False))
