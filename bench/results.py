"""docs/results.md's format (shared/results_table.py), which `make bench-quality RESULTS=docs/results.md` and
the GPU check append to."""

from __future__ import annotations

from pathlib import Path

from shared.results_table import machine, markdown_section


def append(path: Path, what: str, command: str, header: list[str], rows: list[list[str]]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(markdown_section(what, machine(), command, header, rows))
