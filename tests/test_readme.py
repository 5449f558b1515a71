"""The README stays short, starts with the two commands, and its one results table is a copy of
benchmarks/results/pipelines.json: measured figures live in benchmarks/results/, the README's table
is their only copy, and the guides in docs/ say why in words and link to the results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PIPELINES = ROOT / "benchmarks" / "results" / "pipelines.json"
MAX_CHARACTERS = 10_000
# the guides that link to benchmarks/results/ instead of quoting it (design.md and reference.md
# hold the design's and the paper's facts)
GUIDES = ["data.md", "training.md", "performance.md", "evaluation.md"]

# README column header -> where its values live in pipelines.json
COLUMNS = {
    "Jaccard": ("jaccard",),
    "skill": ("skill",),
    "from true input masks": ("true_inputs", "jaccard"),
}
# cells the README leaves empty on purpose: the oracle segments the true frame 22 and starts from
# no input masks
EMPTY = {("oracle", "from true input masks")}


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def results_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the README's results table (the first table under '## Results')."""
    match = re.search(r"^## Results\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, "README.md has no '## Results' section"
    lines = [line for line in match.group(1).splitlines() if line.lstrip().startswith("|")]
    assert len(lines) >= 3, "the Results section has no table"
    header = _cells(lines[0])
    assert set(_cells(lines[1])) <= {"---", "---:", ":---", ":---:"}, "no separator under the header"
    rows = [_cells(line) for line in lines[2:]]
    for row in rows:
        assert len(row) == len(header), f"row {row} has {len(row)} cells, the header {len(header)}"
    return header, rows


def _plain(cell: str) -> str:
    return cell.replace("*", "").strip()


def _lookup(data: dict, path: tuple[str, ...], row: str) -> float:
    node = data
    for key in path:
        node = node[key]
    assert row in node, f"pipelines.json has no {'/'.join(path)} entry for row {row!r}"
    return float(node[row])


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8"))
    assert n <= MAX_CHARACTERS, f"README.md has {n:,} characters (at most {MAX_CHARACTERS:,})"


def test_first_code_block_holds_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    assert block, "README.md has no code block"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) >= 2 and lines[0].startswith("make demo") and lines[1].startswith("make test"), \
        f"the first code block must start with `make demo` and `make test`, got {lines[:2]}"


def check_table(text: str, data: dict) -> int:
    """Assert that every number of the README's results table equals pipelines.json's, formatted
    to the digits the README gives; returns how many numbers were compared."""
    header, rows = results_table(text)
    assert header[0] == "row", f"the first column must be the row, got {header[0]!r}"
    assert sorted(header[1:]) == sorted(COLUMNS), f"columns {header[1:]}, expected {list(COLUMNS)}"
    names = [_plain(row[0]) for row in rows]
    assert len(names) == len(set(names)), f"a row appears twice: {names}"
    assert {"copy-last", "objects", "oracle"} <= set(names), f"rows {names}"
    checked = 0
    for row, name in zip(rows, names, strict=True):
        for column, cell in zip(header[1:], row[1:], strict=True):
            value = _plain(cell)
            if (name, column) in EMPTY:
                assert value == "", f"{name} / {column}: expected an empty cell, got {value!r}"
                continue
            assert re.fullmatch(r"-?\d+\.\d{3,}", value), \
                f"{name} / {column}: {value!r} is not a number with at least 3 decimals"
            digits = len(value.split(".")[1])
            expected = _lookup(data, COLUMNS[column], name)
            assert value == f"{expected:.{digits}f}", (
                f"README {name} / {column} = {value}, pipelines.json gives {expected!r} "
                f"({expected:.{digits}f})")
            checked += 1
    return checked


def test_results_table_matches_pipelines_json() -> None:
    text = README.read_text(encoding="utf-8")
    data = json.loads(PIPELINES.read_text(encoding="utf-8"))
    assert check_table(text, data) >= 10
    section = text[re.search(r"^## Results\s*$", text, flags=re.M).end():]
    for target in ("benchmarks/results/pipelines.md", "benchmarks/results/pipelines.json"):
        assert f"]({target})" in section.split("\n## ")[0], f"the Results section must link to {target}"


def test_a_changed_digit_is_caught() -> None:
    """The check fails when any one number of the table differs from the JSON in its last digit."""
    text = README.read_text(encoding="utf-8")
    data = json.loads(PIPELINES.read_text(encoding="utf-8"))
    section = re.search(r"^## Results\s*$", text, flags=re.M).end()
    table = [m for m in re.finditer(r"^\|.*\|$", text[section:], flags=re.M)][2:]
    numbers = [(section + line.start() + m.end() - 1)
               for line in table for m in re.finditer(r"\d+\.\d{3,}", line.group(0))]
    assert numbers
    for at in numbers:
        last = text[at]
        mutated = text[:at] + str((int(last) + 1) % 10) + text[at + 1:]
        with pytest.raises(AssertionError):
            check_table(mutated, data)


@pytest.mark.parametrize("name", GUIDES)
def test_guides_quote_no_measurements(name: str) -> None:
    """No decimal figures, ratios, percentages or dates in the guides: they link to the results."""
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    found = re.findall(r"\b\d+\.\d+\b|\b\d+(?:\.\d+)?x\b|\d\s?%|\b20\d\d-\d\d-\d\d\b", text)
    assert not found, f"docs/{name} quotes {found}: move them to benchmarks/results/ and link there"
