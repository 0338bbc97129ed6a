"""Run long work as a child process: stream its output, stop its whole process group on request.

Prefork pool processes are daemonic and nnU-Net's data augmentation spawns processes, so training never
runs inside the pool process itself. The child gets its own session (one group to signal) and dies
with its parent (PR_SET_PDEATHSIG), so a worker killed outright leaves no training behind.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 10.0
TAIL_LINES = 40


@dataclass(frozen=True)
class ToolRun:
    """Where a child tool's output goes and when it stops: its log file, each line as it comes (a job's progress
    line), and the job's stop check."""

    log: Path
    on_line: Callable[[str], None]
    should_stop: Callable[[], bool]


class ChildFailed(Exception):
    def __init__(self, command: list[str], code: int, tail: list[str]) -> None:
        self.command, self.code, self.tail = command, code, tail
        super().__init__(f"{Path(command[0]).name} exited with {code}")


class ChildStopped(Exception):
    """The child was stopped because `should_stop` said so."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def run_child(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool],
    poll_s: float = 0.5,
) -> list[str]:
    """Run `command`, append its output to `log_path` and pass each line to `on_line`.

    Returns the last lines of output; raises ChildFailed on a non-zero exit, ChildStopped when stopped.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    lines: queue.Queue[str | None] = queue.Queue()
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        with log_path.open("a") as log:
            while True:
                try:
                    line = lines.get(timeout=poll_s)
                except queue.Empty:
                    line = ""
                if should_stop():
                    raise ChildStopped(" ".join(command))
                if line is None:
                    break
                if line:
                    log.write(line + "\n")
                    log.flush()
                    tail.append(line)
                    on_line(line)
    except BaseException:
        _stop_group(process)  # never leave a training behind the task that owned it
        raise
    code = process.wait()
    if code != 0:
        raise ChildFailed(command, code, list(tail))
    return list(tail)
