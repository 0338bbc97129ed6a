"""Faults that must cost nothing (docs/reliability.md), on a stack of their own: real redis-server, real
Celery workers, PostgreSQL reached through a proxy that the tests can cut, as a server restart would.

Folds run bench/sleep_train.py in place of nnUNetv2_train: what is under test is the job system around
the training process. A real nnU-Net fold through a Redis kill -9 is tests/services/test_chaos.py's (make chaos);
a real fold whose worker is killed is tests/workers/nnunet/test_nnunet_training.py's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis
from conftest import PROJECT, Stack, free_port, postgres_database, require, wait_for

from workers.ingest.synthetic import make_synthetic_release

DATASET = 960
FOLD_SECONDS = 20
OUTAGE_S = 20


class CuttableProxy:
    """A TCP proxy to PostgreSQL whose cut() drops every connection and refuses new ones until restore()."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.port = upstream, free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            assert self._listener is not None
            for sock in [self._listener, *self._sockets]:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            # shutdown, not only close: it wakes the other direction's recv and sends the server a FIN.
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class FaultStack(Stack):
    proxy: CuttableProxy

    def supervisorctl(self, *args: str) -> str:
        conf = self.data_root / "stack" / "supervisord.conf"
        command = [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args]
        return subprocess.run(command, capture_output=True, text=True, env=self.env, cwd=PROJECT).stdout

    def broker_url(self) -> str:
        """BROKER_URL with the password the stack generated for its own Redis (docs/security.md)."""
        password = (self.data_root / "stack" / "redis_password").read_text().split()[1]
        return self.env["BROKER_URL"].replace("redis://", f"redis://:{password}@", 1)

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker_url(), socket_connect_timeout=1)

    def show(self, ref: str) -> dict:
        result = self.dispatch("show", ref, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_run(self, ref: str, timeout: float = 180, on_progress: bool = False) -> dict:
        """The run once it ends; `on_progress`: `timeout` is how long its jobs may make no progress at all (no
        job changing state, attempt or step), not how long the run may take: load only slows it."""
        last: dict = {}

        def ended() -> dict | None:
            last["run"] = run = self.show(ref)
            return run if run["state"] in ("succeeded", "failed", "cancelled") else None

        def progress() -> list:
            run = last.get("run") or self.show(ref)
            return [(job["state"], job["attempt"], job["progress"]["step"]) for job in run["jobs"]]

        return wait_for(ended, timeout, f"{ref} to end", progress=progress if on_progress else None)

    def submit_folds(self, *folds: int, epochs: int = 5) -> str:
        """A run of fold jobs only (no evaluation: the stand-in trains nothing to evaluate); each epoch of
        the stand-in takes FOLD_SECONDS / 5."""
        script = (
            "import sys; from services.dispatcher.submit import submit; from shared.jobs import JobSpec;"
            "from shared.tasknames import NNUNET_TRAIN_FOLD; from shared.contract import JOBS_TRAINER;"
            "folds = [int(f) for f in sys.argv[3:]];"
            "params = dict(dataset_id=int(sys.argv[1]), folds=folds, trainer=JOBS_TRAINER, epochs=int(sys.argv[2]));"
            "specs = [JobSpec('fold', f'fold {f}', NNUNET_TRAIN_FOLD, {'fold': f}) for f in folds];"
            "print(submit('train', params, specs))"
        )
        command = [sys.executable, "-c", script, str(DATASET), str(epochs), *map(str, folds)]
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, cwd=PROJECT, check=True)
        return f"r{result.stdout.strip()}"

    def workers_online(self) -> set[str]:
        result = self.dispatch("workers", "--json")
        return {row["worker"] for row in json.loads(result.stdout)} if result.returncode == 0 else set()


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    from urllib.parse import urlparse

    require(os.path.exists("/usr/bin/redis-server") or bool(_which("redis-server")), "no redis-server binary")
    data_root = tmp_path_factory.mktemp("faults")
    database, drop = postgres_database(f"fracatlas_faults_{uuid.uuid4().hex[:10]}")
    upstream = urlparse(database)
    proxy = CuttableProxy((upstream.hostname or "127.0.0.1", upstream.port or 5432))
    preprocessed = data_root / "nnUNet_preprocessed" / f"Dataset{DATASET}_Faults"
    preprocessed.mkdir(parents=True)
    (preprocessed / "nnUNetPlans.json").write_text(json.dumps({"configurations": {"2d": {}}}))
    env = {
        **os.environ,
        "DATA_ROOT": str(data_root),
        "DATABASE_URL": upstream._replace(netloc=f"{upstream.username}@127.0.0.1:{proxy.port}").geturl(),
        "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "FLOWER_PORT": str(free_port()),
        "FLOWER_BASIC_AUTH": "test:secret",
        "MLFLOW_TRACKING_URI": "none",  # the faults here are the broker's and the job table's
        "CPU_CONCURRENCY": "2",
        "GPU_WORKERS": "2",
        "OMP_NUM_THREADS": "1",
        "INGEST_CHUNK_SIZE": "4",
        "NNUNET_TRAIN_COMMAND": str(PROJECT / "bench" / "sleep_train.py"),
        "SLEEP_FOLD_SECONDS": str(FOLD_SECONDS),
        "HEARTBEAT_SECONDS": "1",
        # Longer than the outages here and in test_chaos.py: a lease, not an outage, re-queues a job.
        "LEASE_SECONDS": "90",
        "REAP_INTERVAL_SECONDS": "2",
        "RESEND_GRACE_SECONDS": "3",
        "CANCEL_GRACE_SECONDS": "1",
    }
    subprocess.run([sys.executable, "-m", "services.local.stack", "up"], env=env, check=True, cwd=PROJECT, timeout=180)
    stack = FaultStack(env, data_root)
    stack.proxy = proxy
    try:
        yield stack
    finally:
        proxy.restore() if proxy._listener is None else None
        subprocess.run([sys.executable, "-m", "services.local.stack", "down"], env=env, cwd=PROJECT, timeout=180)
        drop()


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def ingest(stack: FaultStack, source: Path, dataset_id: int) -> str:
    result = stack.dispatch("ingest", "--source", str(source), "--dataset-id", str(dataset_id), "--size", "64")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[1]  # "run r<N> queued; ..."


def job_of(run: dict, kind: str) -> dict:
    return next(job for job in run["jobs"] if job["kind"] == kind)


def assert_each_job_once(stack: FaultStack, run: dict) -> None:
    assert run["state"] == "succeeded", run["error"]
    assert all(job["state"] == "succeeded" for job in run["jobs"]), [(j["ref"], j["state"]) for j in run["jobs"]]
    for job in run["jobs"]:
        starts = Path(job["artifacts"]["log"]).read_text().count("stand-in training")
        assert starts == job["attempt"], (job["ref"], starts, job["attempt"])


def test_kill_9_of_redis_costs_a_fold_nothing_and_the_next_fold_takes_the_idle_worker(faults: FaultStack) -> None:
    first = faults.submit_folds(0)
    running = wait_for(lambda: (job := job_of(faults.show(first), "fold"))["state"] == "running" and job, 30,
                       "the first fold to start")  # fmt: skip
    wait_for(lambda: job_of(faults.show(first), "fold")["progress"]["step"] >= 1, 30, "an epoch")
    pid = int(faults.supervisorctl("pid", "redis").strip())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: faults.supervisorctl("pid", "redis").strip() not in ("0", str(pid), ""), 30, "Redis back")
    wait_for(lambda: len(faults.workers_online()) == 3, 60, "every worker to reconnect")

    second = faults.submit_folds(1)
    started = wait_for(lambda: (job := job_of(faults.show(second), "fold"))["state"] == "running" and job, 10,
                       "the second fold to start on the idle worker")  # fmt: skip
    assert started["worker"] != running["worker"]
    assert job_of(faults.show(first), "fold")["state"] == "running"

    for ref in (first, second):
        run = faults.wait_run(ref, 120)
        assert_each_job_once(faults, run)
        assert all(job["attempt"] <= 2 for job in run["jobs"])
    assert job_of(faults.show(first), "fold")["attempt"] == 1


def test_a_broker_stopped_for_20_s_mid_ingest_costs_the_ingest_nothing(faults: FaultStack, tmp_path: Path) -> None:
    # 100 convert jobs of 4 pictures (INGEST_CHUNK_SIZE): seconds of work for the cpu worker's two pool
    # processes, so that the broker stops with most of them still in its queue (a job takes tens of ms).
    release = make_synthetic_release(tmp_path / "release", fractured=300, non_fractured=100)
    ref = ingest(faults, release, 961)
    wait_for(lambda: faults.broker().llen("cpu") >= 50, 60, "the convert jobs in the broker's cpu queue")
    stopped_at = time.time()
    faults.supervisorctl("stop", "redis")
    try:
        time.sleep(OUTAGE_S)
    finally:
        faults.supervisorctl("start", "redis")
    run = faults.wait_run(ref, 120, on_progress=True)  # a loaded machine is slower, never stuck for 2 minutes
    assert run["state"] == "succeeded", run["error"]
    assert {job["state"] for job in run["jobs"]} == {"succeeded"}
    assert all(job["attempt"] <= 2 for job in run["jobs"])
    started = [datetime.fromisoformat(job["started_at"]).timestamp() for job in run["jobs"] if job["kind"] == "convert"]
    assert max(started) > stopped_at + OUTAGE_S, "convert jobs waited in the broker through the outage"


def test_messages_the_broker_lost_are_sent_again_and_each_job_runs_once(faults: FaultStack) -> None:
    faults.supervisorctl("stop", "workers:gpu-worker-0", "workers:gpu-worker-1")
    try:
        ref = faults.submit_folds(2, 3)
        wait_for(lambda: faults.broker().llen("gpu") == 2, 10, "two messages in the gpu queue")
        faults.broker().delete("gpu")  # the broker loses them
    finally:
        faults.supervisorctl("start", "workers:gpu-worker-0", "workers:gpu-worker-1")
    run = faults.wait_run(ref, 120)
    assert_each_job_once(faults, run)
    assert [job["attempt"] for job in run["jobs"]] == [1, 1]
    assert "no message in the broker; sent again" in faults.log("cpu-worker")


def train_through_a_database_outage(faults: FaultStack, fold: int, outage_s: float, epochs: int = 5) -> None:
    """A fold starts, the database goes away for `outage_s`, comes back: the fold's first attempt succeeds."""
    ref = faults.submit_folds(fold, epochs=epochs)
    wait_for(lambda: job_of(faults.show(ref), "fold")["progress"]["step"] >= 1, 30, "the fold's first epoch")
    faults.proxy.cut()
    try:
        time.sleep(outage_s)
    finally:
        faults.proxy.restore()
    run = faults.wait_run(ref, 180)
    assert_each_job_once(faults, run)
    assert job_of(run, "fold")["attempt"] == 1


def test_a_fold_trains_through_a_20_s_database_outage(faults: FaultStack) -> None:
    train_through_a_database_outage(faults, 4, OUTAGE_S)


def test_make_down_stops_workers_before_the_broker_and_hands_their_jobs_back(faults: FaultStack) -> None:
    ref = faults.submit_folds(0)
    wait_for(lambda: job_of(faults.show(ref), "fold")["state"] == "running", 30, "the fold to start")
    subprocess.run([sys.executable, "-m", "services.local.stack", "down"], env=faults.env, cwd=PROJECT, check=True)
    fold = job_of(faults.show(ref), "fold")
    assert (fold["state"], fold["attempt"]) == ("queued", 2)
    assert "handed back" in fold["progress"]["message"]
    supervisord = (faults.data_root / "logs" / "supervisord.log").read_text().splitlines()
    stopped = [line.split("stopped: ")[1].split()[0] for line in supervisord if "stopped: " in line][-6:]
    assert stopped[-1] == "redis" and {"gpu-worker-0", "gpu-worker-1", "cpu-worker"} <= set(stopped[:-1])
    assert "Connection to broker lost" not in faults.log("gpu-worker-0").split("Warm shutdown")[-1]

    subprocess.run([sys.executable, "-m", "services.local.stack", "up"], env=faults.env, cwd=PROJECT, check=True)
    run = faults.wait_run(ref, 120)
    assert run["state"] == "succeeded", run["error"]


@pytest.fixture(scope="module")
def misbehaving(faults: FaultStack) -> Iterator[Callable[..., str]]:
    """A worker for tests/services/stubborn_task.py's tasks; yields submit(task, argument) -> run ref."""
    here = Path(__file__).resolve().parent
    # Celery's command line reads BROKER_URL itself (its --broker option): it gets the URL with the password.
    env = {**faults.env, "PYTHONPATH": str(here), "BROKER_URL": faults.broker_url()}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "shared.celery_app", "worker", "-Q", "stubborn", "-c", "1",
         "-n", "stubborn@%h", "--include", "stubborn_task", "--loglevel", "INFO"],
        env=env, cwd=PROJECT, stdout=(faults.data_root / "logs" / "stubborn.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip

    def submit(task: str, argument: str) -> str:
        script = [sys.executable, str(here / "stubborn_task.py"), task, argument]
        return (
            "r"
            + subprocess.run(script, env=env, cwd=PROJECT, capture_output=True, text=True, check=True).stdout.strip()
        )

    try:
        yield submit
    finally:
        worker.terminate()
        worker.wait(30)


def test_a_job_past_its_hard_limit_fails_naming_it_and_the_worker_takes_the_next(
    faults: FaultStack, misbehaving: Callable[..., str]
) -> None:
    stuck = faults.wait_run(misbehaving("stubborn", "60"), 60)
    assert stuck["state"] == "failed"
    assert "killed at its hard time limit of 4 s (tests.stubborn" in stuck["jobs"][0]["error"]
    quick = faults.wait_run(misbehaving("stubborn", "0.5"), 60)
    assert quick["state"] == "succeeded", quick["error"]


def test_a_job_blocked_in_a_read_fails_at_its_soft_limit_and_the_worker_goes_on(
    faults: FaultStack, misbehaving: Callable[..., str], tmp_path: Path
) -> None:
    fifo = tmp_path / "picture.jpg"
    os.mkfifo(fifo)
    blocked = faults.wait_run(misbehaving("blocking_read", str(fifo)), 60)
    assert blocked["state"] == "failed"
    assert "ran past its time limit of 6 s (tests.blocking_read" in blocked["jobs"][0]["error"]
    quick = faults.wait_run(misbehaving("stubborn", "0.5"), 60)
    assert quick["state"] == "succeeded", quick["error"]


def test_cancel_frees_a_worker_blocked_in_a_read_within_seconds(
    faults: FaultStack, misbehaving: Callable[..., str], tmp_path: Path
) -> None:
    fifo = tmp_path / "picture.jpg"
    os.mkfifo(fifo)
    ref = misbehaving("blocking_read", str(fifo))
    writer = wait_for(lambda: _writer_once_read(fifo), 30, "the job to open the FIFO and block in its read")
    try:
        cancelled_at = time.monotonic()
        assert faults.dispatch("cancel", ref).returncode == 0
        quick = faults.wait_run(misbehaving("stubborn", "0.1"), 30)
        freed_after = time.monotonic() - cancelled_at
    finally:
        os.close(writer)
    assert quick["state"] == "succeeded", quick["error"]
    assert freed_after < 10, f"the worker took its next job {freed_after:.1f} s after the cancel"
    log = faults.data_root / "logs" / "stubborn.log"
    said = ("still busy after it was cancelled; interrupting it", "stopped: cancelled")
    # the worker's log reaches its file a moment after the next job's row says it succeeded
    wait_for(lambda: all(line in log.read_text() for line in said), 10, "the interruption in the worker's log")
    assert faults.show(ref)["state"] == "cancelled"


def _writer_once_read(fifo: Path) -> int | None:
    """A writer's end of `fifo` once a reader has opened it (None before). Held open without a byte written,
    it keeps the reader blocked in its read; closed, it gives the reader its end of file."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno != errno.ENXIO:  # ENXIO: no reader has it open yet
            raise
        return None
