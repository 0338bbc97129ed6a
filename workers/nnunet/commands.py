"""What every nnU-Net step shares: the environment of its commands, and how one runs (a child process
whose failure becomes a user-facing error).

nnU-Net runs as its own command-line tools in child processes; this module never imports nnunetv2.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from shared.errors import ToolFailed
from shared.settings import Settings
from workers.child import ChildFailed, ToolRun, run_child

TRAINERS_DIR = Path(__file__).resolve().parent / "trainers"
ERROR_LINE = re.compile(r"^\w*(Error|Exception|error):")


def tool(name: str) -> str:
    """An nnU-Net console script from this environment (nnUNetv2_train, ...)."""
    return str(Path(sys.executable).parent / name)


def environment(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment with nnU-Net's folders and the project's trainers."""
    env = {**os.environ, **settings.nnunet_environ(), "nnUNet_extTrainer": str(TRAINERS_DIR)}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return {**env, **(extra or {})}


def run_tool(step: str, command: list[str], env: dict[str, str], run: ToolRun) -> None:
    """Run one nnU-Net command as a child process; its failure becomes a user-facing ToolFailed that quotes
    its last error line and says where its log is."""
    try:
        run_child(command, env, run.log, run.on_line, run.should_stop)
    except ChildFailed as error:
        errors = [line for line in error.tail if ERROR_LINE.match(line.strip())]
        reason = errors[-1].strip() if errors else (error.tail[-1].strip() if error.tail else "no output")
        raise ToolFailed(f"{step} exited with {error.code}: {reason}; full log: {run.log}") from error
