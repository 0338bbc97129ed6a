"""A local stack of the benchmarks' own: a temporary DATA_ROOT, its own redis-server and Flower ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[1]
STACK = [sys.executable, "-m", "services.local.stack"]
# The console script that `make install` puts in the venv; the GPU kit's venv (bench/gpu_check.sh) has the
# checkout on its path instead, and no console scripts of the project.
DISPATCH = [str(BIN / "dispatch")] if (BIN / "dispatch").exists() else [sys.executable, "-m", "services.dispatcher.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def own_stack(data_root: Path, **settings: str) -> Iterator[dict[str, str]]:
    """Start the local stack on `data_root` (SQLite, a redis-server on a free port); yield its environment."""
    env = {
        **os.environ,
        "DATA_ROOT": str(data_root),
        "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "FLOWER_PORT": str(free_port()),
        "FLOWER_BASIC_AUTH": "bench:bench",
        "MLFLOW_PORT": str(free_port()),
        **settings,
    }
    env.pop("DATABASE_URL", None)
    subprocess.run([*STACK, "up"], env=env, check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)
    try:
        yield env
    finally:
        subprocess.run([*STACK, "down"], env=env, cwd=PROJECT, stdout=subprocess.DEVNULL)


def dispatch_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    """`dispatch ARGS --json` on the stack of `env`: the run it prints; a ClickException if it printed none."""
    done = subprocess.run([*DISPATCH, *args, "--json"], env=env, capture_output=True, text=True, cwd=PROJECT)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise click.ClickException(f"dispatch {' '.join(args)} printed no run: {done.stderr.strip()}") from None
