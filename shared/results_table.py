"""docs/results.md's format, in one place: a figure with its 95% interval, and a section as `make
bench-quality RESULTS=docs/results.md`, the GPU check and `dispatch evaluate --results` append it (a heading
with the date, what was measured and the machine, the command that reproduces it, and the table)."""

from __future__ import annotations

import datetime
import os
import platform


def machine() -> str:
    """This machine in words: its GPU where torch sees one, else its cores (torch loaded only here)."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} cores"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU"


def with_interval(value: float | None, bounds: dict[str, float] | None, digits: int = 3) -> str:
    """0.912 [0.874, 0.948]: a figure and its 95% bootstrap interval."""
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return f"{text} [{bounds['low']:.{digits}f}, {bounds['high']:.{digits}f}]" if bounds else text


def markdown_section(what: str, machine: str, command: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "",
        f"### {datetime.date.today().isoformat()}: {what} ({machine})",
        "",
        f"`{command}`",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    return "\n".join(lines)
