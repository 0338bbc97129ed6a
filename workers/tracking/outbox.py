"""What jobs send to MLflow, sent in the background: neither a training loop nor a job's end waits on the
tracking server.

Each call becomes an entry (metrics, tags, an artifact, an end, a model version) for a job's nested run
or its run's parent run. A process's entries go out in two lanes, each one thread sending in order: the
live lane (figures, tags, params, run ends: what a user watches) and the bulk lane (artifact uploads and
model registrations), so that a 45 MB checkpoint or a slow registration never holds a curve back. When the
live lane falls behind (or while it makes a job's MLflow run), the figures, tags and params queued for one
run go out as one request. While the server is down or
slow a lane warns once, naming the server, keeps its entries and tries again; a login the server refuses
is said once, by name, and not tried again until it changes (refusal.py). What is still unsent when the
process ends (a worker stopping, nnU-Net's training ending) goes to the spool folder
(`DATA_ROOT/tracking/spool`), which the reaper replays once the server answers. Steps are logged once:
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
from workers.tracking.refusal import clear_refusal, login_fingerprint, note_refusal, refusal_code, refused_now

log = logging.getLogger(__name__)

RETRY_AFTER_S = 15.0
BULK_KINDS = ("artifact", "register", "timeline")
BATCHED_AT_MOST = 200  # entries of one MLflow run sent as one request when a backlog builds up
Entry = dict[str, Any]


def spool_folder() -> Path:
    return get_settings().layout.tracking_spool


BATCHED_KINDS = ("metrics", "tags", "params")  # what one log_batch request of a run can carry together


class Sender:
    """Sends entries to MLflow; remembers, per run and metric, the last step the server holds, and which
    MLflow run each job and run of this process logs to."""

    def __init__(self) -> None:
        self._last_step: dict[tuple[str, str], int] = {}
        self._targets: dict[tuple[str, int], str] = {}
        self._unsent_params: dict[str, dict[str, str]] = {}  # a job run made here: its params, for its first batch
        self._making = threading.Lock()  # the two lanes make a job's MLflow run once, whichever comes first

    def target(self, entry: Entry) -> str:
        """The MLflow run of the entry's job (or run), made the first time."""
        from workers.tracking import client

        key = ("job", entry["job"]) if entry.get("job") is not None else ("run", entry["run"])
        with self._making:
            if key not in self._targets:
                if key[0] == "job":
                    made, params = client.job_tracking_id(key[1])
                    if params:
                        self._unsent_params[made] = params
                else:
                    made = client.run_tracking_id(key[1])
                self._targets[key] = made
            return self._targets[key]

    def send(self, entries: list[Entry]) -> None:
        """One entry, or consecutive metrics, tags and params entries of one MLflow run as one request."""
        target = self.target(entries[0])
        if entries[0]["kind"] in BATCHED_KINDS:
            self._batch(target, entries)
            return
        if target in self._unsent_params:  # an upload or an end came first
            self._batch(target, [])
        (entry,) = entries
        getattr(self, "_" + entry["kind"])(target, entry)

    def _batch(self, target: str, entries: list[Entry]) -> None:
        from workers.tracking.client import flat_params, log_batch

        params = dict(self._unsent_params.get(target, {}))
        tags: dict[str, str] = {}
        fresh: list[Any] = []
        stepped: dict[str, int] = {}
        for entry in entries:
            if entry["kind"] == "tags":
                tags.update({key: str(value) for key, value in entry["tags"].items()})
            elif entry["kind"] == "params":
                params.update(flat_params(entry["values"]))
            else:
                fresh += self._new_points(target, entry["values"], stepped)
        log_batch(target, metrics=fresh, params=params, tags=tags)
        self._unsent_params.pop(target, None)
        for key, step in stepped.items():
            self._last_step[(target, key)] = max(self._last_step[(target, key)], step)

    def _new_points(self, target: str, values: list[list[Any]], stepped: dict[str, int]) -> list[Any]:
        """A metrics entry's points, less the steps the run holds already; `stepped` gets the newest steps."""
        from mlflow.entities import Metric

        from workers.tracking.client import client

        fresh = []
        for key, value, timestamp, step in values:
            if step is not None:  # a curve: the epochs an earlier attempt or replay logged are skipped
                if (target, key) not in self._last_step:
                    history = client().get_metric_history(target, key)
                    self._last_step[(target, key)] = max((point.step for point in history), default=-1)
                if step <= max(self._last_step[(target, key)], stepped.get(key, -1)):
                    continue
                stepped[key] = step
            # A final figure (no step) costs no lookup: a replay's second copy holds the same value, and a
            # run's end carries dozens of them (the test figures and their intervals).
            fresh.append(Metric(key, float(value), int(timestamp), step or 0))
        return fresh

    def _artifact(self, target: str, entry: Entry) -> None:
        from workers.tracking.client import client

        path = Path(entry["path"])
        if path.is_dir():
            client().log_artifacts(target, str(path), entry.get("folder"))
        elif path.is_file():
            client().log_artifact(target, str(path), entry.get("folder"))
        else:
            log.warning("tracking: %s is gone; not logged", path)

    def _timeline(self, target: str, entry: Entry) -> None:
        """The run's jobs across its workers (timeline.timeline_png), drawn from the job table now."""
        from shared.read_model import get_run
        from workers.tracking.client import client
        from workers.tracking.timeline import timeline_png

        try:
            run = get_run(entry["run"])
            picture = timeline_png(run, get_settings().layout.run_folder(entry["run"]) / "timeline.png")
        except Exception as error:  # noqa: BLE001 - a picture never costs a run
            log.warning("r%s: no timeline picture (%s)", entry["run"], error)
            return
        client().log_artifact(target, str(picture))

    def _end(self, target: str, entry: Entry) -> None:
        from workers.tracking.client import client

        client().set_terminated(target, entry["status"])

    def _register(self, target: str, entry: Entry) -> None:
        from workers.tracking.registry import register

        register(target, entry)


class Lane:
    """One thread sending a share of a process's entries, in order."""

    def __init__(self, outbox: Outbox, name: str) -> None:
        self.outbox = outbox
        self.entries: deque[Entry] = deque()
        self.wake = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"tracking-{outbox.label}-{name}")
        self.thread.start()

    def _next(self) -> list[Entry]:
        """The head entry, with the metrics, tags and params entries of the same run queued right behind it."""
        head = self.entries[0]
        batch = [head]
        if head["kind"] in BATCHED_KINDS:
            for entry in list(self.entries)[1:BATCHED_AT_MOST]:
                same_run = (entry.get("job"), entry["run"]) == (head.get("job"), head["run"])
                if entry["kind"] not in BATCHED_KINDS or not same_run:
                    break
                batch.append(entry)
        return batch

    def _run(self) -> None:
        import mlflow.tracking  # noqa: F401 - MLflow's import (seconds), done before the first entry waits on it

        while True:
            with self.wake:
                while not self.entries and not self.outbox.closing:
                    self.wake.wait()
                if not self.entries:
                    return
                head = self.entries[0]
            try:
                # The run first (made the first time, a few requests): what the job queues meanwhile joins
                # the head's batch.
                self.outbox.sender.target(head)
                with self.wake:
                    if not self.entries:  # close() took them for the spool
                        return
                    batch = self._next()
                self.outbox.sender.send(batch)
            except Exception as error:  # noqa: BLE001 - tracking never costs a job: keep it, try later
                if not self.outbox.wait_after(error, self.wake):
                    return  # closing: close() spools what is left
                continue
            self.outbox.sent(batch)
            with self.wake:
                # close() may have spooled them meanwhile
                while batch and self.entries and self.entries[0] is batch[0]:
                    self.entries.popleft()
                    batch.pop(0)


class Outbox:
    """A process's entries, sent in order per lane by background threads."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.closing = False
        self.sender = Sender()
        self._warned = self._accepted = False
        self._refused: str | None = None  # the login the server refused, while it is the one in use
        self._live, self._bulk = Lane(self, "live"), Lane(self, "bulk")

    def put(self, entry: Entry) -> None:
        lane = self._bulk if entry["kind"] in BULK_KINDS else self._live
        with lane.wake:
            lane.entries.append({**entry, "queued": time.time()})
            lane.wake.notify()

    def close(self, timeout: float | None = None) -> int:
        """Send what is left within `timeout` seconds; spool the rest. Returns how many were spooled."""
        timeout = get_settings().tracking_flush_seconds if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.closing = True
        left: list[Entry] = []
        for lane in (self._live, self._bulk):
            with lane.wake:
                lane.wake.notify_all()
            lane.thread.join(max(0.0, deadline - time.monotonic()))
            with lane.wake:
                left += lane.entries
                lane.entries.clear()
        if left:
            spool(left, self.label)
        return len(left)

    def wait_after(self, error: BaseException, wake: threading.Condition) -> bool:
        """After a failed send: wait to try again (False: the outbox is closing, stop). A refused login
        waits until the login in use changes; anything else RETRY_AFTER_S."""
        code = refusal_code(error)
        if code is not None:
            if self._refused is None:  # said once, whichever lane meets it first
                self._refused = note_refusal(code)
        else:
            self._say_unreachable(error)
        while not self.closing:
            with wake:
                wake.wait(RETRY_AFTER_S)
            if self._refused is None:
                return not self.closing
            if login_fingerprint() != self._refused:  # a new login: a fresh client sends with it
                from workers.tracking.client import client

                self._refused, self._accepted = None, False
                client.cache_clear()
                return not self.closing
        return False

    def sent(self, batch: list[Entry]) -> None:
        if not self._accepted:  # the login works: a refusal kept for it is over
            self._accepted = True
            clear_refusal()
        lag_log = get_settings().tracking_lag_log
        if lag_log is not None:  # make bench-tracking: from the job's call to the server's answer
            now = time.time()
            lines = [
                json.dumps({"kind": e["kind"], "lag_s": now - e["queued"], "at": now, "by": self.label}) + "\n"
                for e in batch
            ]
            with open(lag_log, "a") as handle:  # one write per batch: lines of two processes never mix
                handle.write("".join(lines))

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
    if not folder.is_dir() or refused_now():  # the login the server refused is still the one in use
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
                sender.send([entry])
            except Exception as error:  # noqa: BLE001 - the server is still away: keep the rest for later
                code = refusal_code(error)
                if code is not None:
                    note_refusal(code)
                log.info("tracking spool: %s not replayed yet (%s)", path.name, redact_text(str(error))[:200])
                left = entries[index:]
                partial = path.with_suffix(".partial")
                partial.write_text("".join(json.dumps(item) + "\n" for item in left))
                os.replace(partial, path)
                claimed.unlink()
                return sent
            if not sent:
                clear_refusal()
            sent += 1
        claimed.unlink()
    return sent
