"""What every results file states, written by the benchmarks that write one.

    header = ["# Model speed", "", *provenance("python benchmarks/models.py --isa avx2")]
    write_sections(RESULTS / "models_avx2.md", header, {"## SimVP ...": lines})

Each file in benchmarks/results/ says the command, the commit, the machine with its CPU flags,
and the date of what it holds; a script that rewrites part of a file keeps the sections it did
not measure (and so their own provenance lines).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from simvp_unet.hardware import cpu_features
from simvp_unet.io import write_text


def commit() -> str:
    """The checkout's short commit, marked when the working tree has uncommitted changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).parent).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance(command: str) -> list[str]:
    """Markdown lines: the command, the commit, the machine and its CPU flags, the date (UTC)."""
    return [f"- **Command:** `{command}`",
            f"- **Commit:** {commit()}",
            f"- **Machine:** {cpu_features().summary()}",
            f"- **Date:** {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"]


def write_sections(path: Path, header: list[str], sections: dict[str, list[str]]) -> None:
    """Write `header`, then the `## ` sections of `path` with those named in `sections` replaced
    (new ones appended): what this run measured changes, the rest of the file stays."""
    old: dict[str, str] = {}
    if path.is_file():
        for chunk in path.read_text().split("\n## ")[1:]:
            old["## " + chunk.split("\n", 1)[0]] = "## " + chunk.rstrip("\n") + "\n"
    new = {title: "\n".join([title, *lines]).rstrip("\n") + "\n" for title, lines in sections.items()}
    body = "\n".join(text.rstrip("\n") + "\n" for text in {**old, **new}.values())
    write_text(path, "\n".join(header).rstrip("\n") + "\n\n" + body)
