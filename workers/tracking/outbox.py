"""What jobs send to MLflow, sent in the background: neither a training loop nor a job's end waits on the
tracking server.

Each call becomes an entry (metrics, tags, an artifact, an end, a model version) for a job's nested run
or its run's parent run. One thread per process sends the entries in order; while the server is down or
slow it warns once, naming the server, keeps them and tries again. What is still unsent when the process
ends (a worker stopping, nnU-Net's training ending) goes to the spool folder (`DATA_ROOT/tracking/spool`),
which the reaper replays once the server answers. Steps are logged once:
a step that the run already holds for a metric (a fold resumed from its checkpoint trains some epochs
again) is not logged a second time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from shared.redact import redact_text, redact_url
from shared.settings import get_settings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 15.0
Entry = dict[str, Any]


def spool_folder() -> Path:
    return get_settings().layout.tracking_spool


class Sender:
    """Sends entries to MLflow; remembers, per run and metric, the last step the server holds."""

    def __init__(self) -> None:
        self._last_step: dict[tuple[str, str], int] = {}

    def send(self, entry: Entry) -> None:
        from workers.tracking import client

        target = (
            client.job_tracking_id(entry["job"])
            if entry.get("job") is not None
            else client.run_tracking_id(entry["run"])
        )
        getattr(self, "_" + entry["kind"])(target, entry)

    def _metrics(self, target: str, entry: Entry) -> None:
        from mlflow.entities import Metric

        from workers.tracking.client import client

        fresh, stepped = [], {}
        for key, value, timestamp, step in entry["values"]:
            if step is not None:  # a curve: the epochs an earlier attempt or replay logged are skipped
                if (target, key) not in self._last_step:
                    history = client().get_metric_history(target, key)
                    self._last_step[(target, key)] = max((point.step for point in history), default=-1)
                if step <= self._last_step[(target, key)]:
                    continue
                stepped[key] = max(stepped.get(key, step), step)
            # A final figure (no step) costs no lookup: a replay's second copy holds the same value, and a run's
            # end carries dozens of them (the test figures and their intervals).
            fresh.append(Metric(key, float(value), int(timestamp), step or 0))
        for start in range(0, len(fresh), 1000):
            client().log_batch(target, metrics=fresh[start : start + 1000])
        for key, step in stepped.items():
            self._last_step[(target, key)] = max(self._last_step[(target, key)], step)

    def _tags(self, target: str, entry: Entry) -> None:
        from mlflow.entities import RunTag

        from workers.tracking.client import client

        client().log_batch(target, tags=[RunTag(key, str(value)) for key, value in entry["tags"].items()])

    def _artifact(self, target: str, entry: Entry) -> None:
        from workers.tracking.client import client

        path = Path(entry["path"])
        if path.is_dir():
            client().log_artifacts(target, str(path), entry.get("folder"))
        elif path.is_file():
            client().log_artifact(target, str(path), entry.get("folder"))
        else:
            log.warning("tracking: %s is gone; not logged", path)

    def _params(self, target: str, entry: Entry) -> None:
        from workers.tracking.client import log_params

        log_params(target, entry["values"])

    def _end(self, target: str, entry: Entry) -> None:
        from workers.tracking.client import client

        client().set_terminated(target, entry["status"])

    def _register(self, target: str, entry: Entry) -> None:
        from workers.tracking.registry import register

        register(target, entry)


class Outbox:
    """A process's entries, sent in order by a background thread."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._entries: deque[Entry] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._warned = False
        self._sender = Sender()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"tracking-{label}")
        self._thread.start()

    def put(self, entry: Entry) -> None:
        with self._wake:
            self._entries.append(entry)
            self._wake.notify()

    def close(self, timeout: float | None = None) -> int:
        """Send what is left within `timeout` seconds; spool the rest. Returns how many were spooled."""
        timeout = get_settings().tracking_flush_seconds if timeout is None else timeout
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        with self._wake:
            left = list(self._entries)
            self._entries.clear()
        if left:
            spool(left, self.label)
        return len(left)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._entries and not self._closing:
                    self._wake.wait()
                if not self._entries:
                    return
                entry = self._entries[0]
            try:
                self._sender.send(entry)
            except Exception as error:  # noqa: BLE001 - tracking never costs a job: keep it, try later
                self._say_unreachable(error)
                if self._closing:
                    return  # close() spools what is left
                with self._wake:
                    self._wake.wait(RETRY_AFTER_S)
                continue
            with self._wake:
                if self._entries and self._entries[0] is entry:  # close() may have spooled it meanwhile
                    self._entries.popleft()

    def _say_unreachable(self, error: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "tracking server %s does not answer (%s); %s goes on, its figures are logged when it is back",
                redact_url(get_settings().tracking_uri or ""),
                redact_text(str(error))[:200],
                self.label,
            )


_process_outbox: Outbox | None = None


def process_outbox() -> Outbox:
    """This process's outbox, made by its first job (never before a fork: its thread would not follow)."""
    global _process_outbox
    if _process_outbox is None:
        _process_outbox = Outbox(f"pid{os.getpid()}")
    return _process_outbox


def close_process_outbox() -> None:
    """At the process's end: send what is left for TRACKING_FLUSH_SECONDS, spool the rest."""
    global _process_outbox
    if _process_outbox is not None:
        _process_outbox.close()
        _process_outbox = None


def spool(entries: list[Entry], label: str) -> Path:
    """Keep entries for the reaper to replay: written under a temporary name and renamed into place."""
    folder = spool_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time():.6f}-{label}-{uuid.uuid4().hex[:8]}.jsonl"
    partial = path.with_suffix(".partial")
    partial.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    os.replace(partial, path)
    return path


def replay_spool(limit_s: float = 20.0) -> int:
    """Send the spooled entries, oldest file first (the reaper calls this). A file is claimed by renaming
    it, so two reapers never send one twice; what fails goes back to the spool. Returns entries sent."""
    folder = spool_folder()
    if not folder.is_dir():
        return 0
    sender, sent, started = Sender(), 0, time.monotonic()
    for path in sorted(folder.glob("*.jsonl")):
        if time.monotonic() - started > limit_s:
            break
        claimed = path.with_suffix(f".replaying-{os.getpid()}")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            continue
        entries = [json.loads(line) for line in claimed.read_text().splitlines() if line.strip()]
        for index, entry in enumerate(entries):
            try:
                sender.send(entry)
            except Exception as error:  # noqa: BLE001 - the server is still away: keep the rest for later
                log.info("tracking spool: %s not replayed yet (%s)", path.name, redact_text(str(error))[:200])
                left = entries[index:]
                partial = path.with_suffix(".partial")
                partial.write_text("".join(json.dumps(item) + "\n" for item in left))
                os.replace(partial, path)
                claimed.unlink()
                return sent
            sent += 1
        claimed.unlink()
    return sent
