"""`make up / down / status / logs` without Docker: supervisord runs the stack's processes."""

from __future__ import annotations

import configparser
import io
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click

from services.local.plan import (
    MLFLOW_USER,
    WORKER_PRIORITY,
    Program,
    flower_auth,
    programs,
    redis_answers,
    runs_mlflow,
    shared_environment,
    write_private,
)
from shared.data_root import claim_data_root
from shared.db.migrate import upgrade_to_head
from shared.redact import redact_url
from shared.settings import MLFLOW_SERVER_FILE, PACS_SERVER_FILE, REDIS_PASSWORD_FILE, Settings, get_settings
from shared.tracking_login import refused_login

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90
WORKERS_GROUP = "workers"  # supervisorctl names them workers:cpu-worker, workers:gpu-worker-0, ...


def _paths(settings: Settings) -> dict[str, Path]:
    stack = settings.layout.stack_dir
    return {
        "conf": stack / "supervisord.conf",
        "sock": stack / "supervisor.sock",
        "pid": stack / "supervisord.pid",
        "logs": settings.layout.logs_dir,
    }


def _supervisor_escape(text: str) -> str:
    return text.replace("%", "%%")


def _environment_line(environment: dict[str, str]) -> str:
    return ",".join(f'{key}="{_supervisor_escape(value)}"' for key, value in environment.items())


def write_config(settings: Settings, stack: list[Program]) -> Path:
    paths = _paths(settings)
    paths["logs"].mkdir(parents=True, exist_ok=True)
    config = configparser.RawConfigParser()
    config["unix_http_server"] = {"file": str(paths["sock"])}
    config["supervisord"] = {
        "pidfile": str(paths["pid"]),
        "logfile": str(paths["logs"] / "supervisord.log"),
        "directory": str(PROJECT_ROOT),
        "nodaemon": "false",
    }
    config["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    config["supervisorctl"] = {"serverurl": f"unix://{paths['sock']}"}
    common = shared_environment(settings)
    for program in stack:
        config[f"program:{program.name}"] = {
            "command": " ".join(_supervisor_escape(_quote(part)) for part in program.command),
            "environment": _environment_line({**common, **program.environment}),
            "directory": str(PROJECT_ROOT),
            "autorestart": "true",
            "startsecs": "2",
            "priority": str(program.priority),
            # Warm shutdown: the group's TERM reaches each pool process, which hands its job back to the queue
            # (workers/runtime.py); what has not stopped after the grace is killed, and the lease re-queues it.
            "stopsignal": "TERM",
            "stopwaitsecs": str(int(settings.shutdown_grace_seconds)),
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": str(paths["logs"] / f"{program.name}.log"),
            "stdout_logfile_maxbytes": "20MB",
        }
    # One group, so that `make down` stops every worker at once: a job one worker hands back is not taken
    # by another that is about to stop too.
    workers = [program.name for program in stack if program.priority == WORKER_PRIORITY]
    config[f"group:{WORKERS_GROUP}"] = {"programs": ",".join(workers), "priority": str(WORKER_PRIORITY)}
    # It holds the stack's secrets (the passwords in its environment): readable by its owner only.
    text = io.StringIO()
    config.write(text)
    return write_private(paths["conf"], text.getvalue())


def _quote(part: str) -> str:
    return f'"{part}"' if " " in part else part


def _supervisorctl(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(_paths(settings)["conf"]), *args],
        capture_output=True,
        text=True,
    )


def is_up(settings: Settings) -> bool:
    paths = _paths(settings)
    return paths["conf"].exists() and _supervisorctl(settings, "pid").returncode == 0


def up(settings: Settings, pacs: bool = False) -> None:
    settings.layout.stack_dir.mkdir(parents=True, exist_ok=True)
    settings.layout.stack_dir.chmod(0o700)
    if is_up(settings):
        click.echo(
            f"the local stack is already up (supervisord under {settings.layout.stack_dir}); `make down` stops it"
        )
        return
    if redis_answers(settings.broker_url):
        # A Redis without a password answers at BROKER_URL (the machine's own): use it as it is.
        (settings.layout.stack_dir / REDIS_PASSWORD_FILE).unlink(missing_ok=True)
    _refuse_a_refused_login(settings)  # a server MLFLOW_TRACKING_URI names: before anything starts
    start_redis = not redis_answers(settings.broker)
    stack = programs(settings, start_redis, pacs)
    conf = write_config(settings, stack)
    click.echo(f"local stack (no Docker engine answers): {', '.join(p.name for p in stack)}")
    click.echo(
        f"broker {redact_url(settings.broker)} ({'started here' if start_redis else 'already running'}), "
        f"job table {redact_url(settings.db_url)}"
    )
    # The job table is migrated before any worker starts.
    upgrade_to_head(settings.db_url)
    env = {**os.environ, **shared_environment(settings)}
    started = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], env=env)
    if started.returncode != 0:
        raise click.ClickException(
            f"supervisord did not start (its message is above; its log is {_paths(settings)['logs']}/supervisord.log)"
        )
    _wait_for_broker(settings)
    claim_data_root(settings)
    workers = _wait_for_workers(settings, sum(1 for p in stack if "worker" in p.name))
    click.echo(f"workers online: {', '.join(workers)}")
    user = flower_auth(settings).split(":", 1)[0]
    kept = "FLOWER_BASIC_AUTH" if settings.flower_basic_auth else settings.layout.stack_dir / "flower_basic_auth"
    click.echo(f"Flower: http://127.0.0.1:{settings.flower_port}  (user {user}; the password is in {kept})")
    if runs_mlflow(settings):
        click.echo(_mlflow_ready(settings))
        if settings.mlflow_username:
            click.echo("note: MLFLOW_TRACKING_USERNAME in your environment is not sent to the stack's own MLflow")
        _refuse_a_refused_login(settings, stop=True)
    if pacs:
        click.echo(_viewer_ready(settings))
    click.echo(f"logs: {_paths(settings)['logs']}   next: .venv/bin/dispatch demo --wait")


def _viewer_ready(settings: Settings) -> str:
    """Wait for the PACS to answer through the viewer's origin (nginx up, Orthanc up, the login taken)."""
    import requests

    own = settings.own_pacs
    assert own is not None  # written by pacs_programs
    dicomweb, viewer = own
    login = settings.pacs_login(dicomweb)
    kept = settings.layout.stack_dir / PACS_SERVER_FILE
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{viewer}/dicom-web/studies", auth=login, timeout=2).ok:
                user = login[0] if login else ""
                return f"Viewer: {viewer}  (user {user}; the password is in {kept})   PACS: {dicomweb}"
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return f"Viewer: {viewer} is not answering yet (see `make logs`: pacs.log, viewer.log)"


def _refuse_a_refused_login(settings: Settings, stop: bool = False) -> None:
    """Refuse, naming the user, a login the tracking server answers 401/403 (stopping the stack first when
    it has started)."""
    if settings.tracking_uri is None:
        return
    refused = refused_login(settings.tracking_uri, *settings.tracking_credentials, settings.tracking_timeout_seconds)
    if refused:
        if stop:
            down(settings)
        raise click.ClickException(refused)


def _mlflow_ready(settings: Settings) -> str:
    """Wait for MLflow's /health (its first start creates its stores); say where it is either way."""
    url = settings.tracking_uri or ""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    kept = settings.layout.stack_dir / MLFLOW_SERVER_FILE
                    return f"MLflow: {url}  (user {MLFLOW_USER}; the password is in {kept})"
        except OSError:
            time.sleep(0.5)
    return f"MLflow: {url} is not answering yet; jobs log to it once it does (see `make logs`)"


def _wait_for_broker(settings: Settings) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not redis_answers(settings.broker):
        if time.monotonic() > deadline:
            raise click.ClickException(f"the broker at {redact_url(settings.broker)} did not come up; see `make logs`")
        time.sleep(0.2)


def _wait_for_workers(settings: Settings, expected: int) -> list[str]:
    from shared.celery_app import app

    deadline = time.monotonic() + READY_TIMEOUT_S
    names: list[str] = []
    while time.monotonic() < deadline:
        names = sorted(name for reply in (app.control.ping(timeout=1.0) or []) for name in reply)
        if len(names) >= expected:
            return names
    raise click.ClickException(
        f"{len(names)} of {expected} workers answered within {READY_TIMEOUT_S}s; see `make logs`"
    )


def down(settings: Settings) -> None:
    if not is_up(settings):
        click.echo("the local stack is not running")
        return
    pid = int(_supervisorctl(settings, "pid").stdout)
    _supervisorctl(settings, "shutdown")
    # Until the process is gone, not just its pid file: its socket is released last, and a `make up`
    # right after would find it taken.
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    click.echo("local stack stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def status(settings: Settings) -> int:
    if not is_up(settings):
        click.echo("the local stack is not running; `make up` starts it")
        return 3
    result = _supervisorctl(settings, "status")
    click.echo(result.stdout.rstrip())
    return 0 if result.returncode == 0 else 1


def logs(settings: Settings, lines: int) -> None:
    for path in sorted(_paths(settings)["logs"].glob("*.log")):
        click.echo(click.style(f"==> {path} <==", bold=True))
        click.echo("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))


@click.group()
def cli() -> None:
    """The local stack (supervisord)."""


@cli.command("up")
@click.option("--pacs", is_flag=True, help="Also the stack's own PACS and viewer (make up PACS=1).")
def up_command(pacs: bool) -> None:
    up(get_settings(), pacs)


@cli.command("down")
def down_command() -> None:
    down(get_settings())


@cli.command("status")
def status_command() -> None:
    raise SystemExit(status(get_settings()))


@cli.command("logs")
@click.option("--lines", default=40, show_default=True)
def logs_command(lines: int) -> None:
    logs(get_settings(), lines)


if __name__ == "__main__":
    cli()
