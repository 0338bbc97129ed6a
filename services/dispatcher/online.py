"""Which Celery workers answer: their queues, pool size, GPU and process id."""

from __future__ import annotations

from typing import Any


def any_worker_online(timeout: float = 1.0) -> bool:
    from shared.celery_app import app

    return bool(app.control.ping(timeout=timeout, limit=1))


def online_workers(timeout: float = 1.0) -> list[dict[str, Any]]:
    from shared.celery_app import app

    inspector = app.control.inspect(timeout=timeout)
    queues = inspector.active_queues() or {}
    stats = inspector.stats() or {}
    info = {
        name: reply
        for reply_set in (app.control.broadcast("worker_info", reply=True, timeout=timeout) or [])
        for name, reply in reply_set.items()
    }
    return [
        {
            "worker": name,
            "queues": sorted(q["name"] for q in queues.get(name, [])),
            "concurrency": stats.get(name, {}).get("pool", {}).get("max-concurrency"),
            "gpu": info.get(name, {}).get("gpu"),
            "pid": stats.get(name, {}).get("pid"),
        }
        for name in sorted(set(queues) | set(stats))
    ]
