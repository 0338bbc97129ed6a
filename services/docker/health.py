"""Container health checks that need more than one command: `python -m services.docker.health ROLE`."""

from __future__ import annotations

import base64
import sys
import time
import urllib.request

from shared.settings import get_settings

BEAT_STALE_S = 120


def beat_alive() -> bool:
    """beat rewrites its schedule file as it runs; a stale file means beat is stuck."""
    schedule = get_settings().layout.stack_dir / "celerybeat-schedule"
    return schedule.exists() and time.time() - schedule.stat().st_mtime < BEAT_STALE_S


def flower_alive() -> bool:
    settings = get_settings()
    token = base64.b64encode((settings.flower_basic_auth or "").encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.flower_port}/healthcheck", headers={"Authorization": f"Basic {token}"}
    )
    try:
        return urllib.request.urlopen(request, timeout=5).status == 200
    except OSError:
        return False


def mlflow_alive() -> bool:
    try:
        return urllib.request.urlopen("http://127.0.0.1:5000/health", timeout=5).status == 200
    except OSError:
        return False


if __name__ == "__main__":
    check = {"beat": beat_alive, "flower": flower_alive, "mlflow": mlflow_alive}[sys.argv[1]]
    raise SystemExit(0 if check() else 1)
