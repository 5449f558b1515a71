"""What the fault tests share: the one error line a failed command must print, and a tree's
content to prove a failure changed nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

# Never in an error line: advice to load untrusted files unsafely, or terminal escape codes.
UNSAFE = ("weights_only", "allow_pickle", "safe_globals", "re-running", "trusted source", "\x1b[")


def one_error(capsys: pytest.CaptureFixture[str], *, code_line: str = "simvp-unet: error: ") -> str:
    """The error line of a failed command: exactly one, no traceback, no unsafe advice (progress
    bars and notes of work done before the failure may precede it)."""
    text = capsys.readouterr().err
    lines = [line for line in text.splitlines() if line.startswith("simvp-unet")]
    assert len(lines) == 1 and lines[0].startswith(code_line) and "Traceback" not in text, text
    assert not any(bad in lines[0].lower() for bad in UNSAFE), lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under root (to prove nothing changed)."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
