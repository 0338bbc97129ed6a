"""docs/results.md's format, which `make bench-quality RESULTS=docs/results.md` and the GPU check append to:
a heading with the date, machine and what was measured, the command that reproduces it, and the table."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path


def machine() -> str:
    """This machine in words: its GPU where torch sees one, else its cores."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} cores"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU"


def append(path: Path, what: str, command: str, header: list[str], rows: list[list[str]]) -> None:
    lines = [
        "",
        f"### {datetime.date.today().isoformat()}: {what} ({machine()})",
        "",
        f"`{command}`",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
