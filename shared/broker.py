"""What the broker still holds: the task ids of messages waiting in a queue or delivered and not yet acked.

Read through kombu's own Redis channel (its key names, priority steps and unacked hash), so that a job
queued in the table whose id is in neither is known to have lost its message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from celery import Celery


def _task_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if isinstance(message, list):  # the unacked hash holds [message, exchange, routing key]
        message = message[0] if message else {}
    headers = message.get("headers") if isinstance(message, dict) else None
    return headers.get("id") if isinstance(headers, dict) else None


def pending_task_ids(app: Celery, queues: Iterable[str]) -> set[str]:
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        client = channel.client
        raw: list[bytes] = []
        for queue in queues:
            for priority in channel.priority_steps:
                raw.extend(client.lrange(channel._q_for_pri(queue, priority), 0, -1))
        raw.extend(client.hvals(channel.unacked_key))
    return {task_id for task_id in map(_task_id, raw) if task_id}
