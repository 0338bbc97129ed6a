"""`make up / down / ps / logs / dispatch / worker-host`: Docker Compose where a Docker engine answers (and
LOCAL=1 is not given), the local supervisord stack otherwise; it says which."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
from dotenv import dotenv_values

from services.docker import stack as compose_stack
from services.docker.compose import gpu_override, parse_gpus, publish_override, write
from services.local import stack
from services.local.plan import visible_gpus
from shared.defaults import IGNORED_CELERY_VARIABLES
from shared.layout import DataRoot
from shared.secrets_check import refusal
from shared.settings import PACS_SERVER_FILE, Settings, get_settings
from shared.tracking_login import refused_login

HEALTHY_TIMEOUT_S = 300
MLFLOW_PUBLISHED_PORT = 5000  # docker-compose.yml's
PACS_PORT = 8042  # docker-compose.yml's pacs service, in the stack and published


def docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def gpu_override_path(settings: Settings) -> Path:
    return settings.layout.compose_dir / "gpus.override.yml"


def compose_mode(settings: Settings, local: bool) -> bool:
    """The compose stack is the one `make up` started: an engine answers and the GPU override exists."""
    return not local and gpu_override_path(settings).exists() and docker_engine()


@click.group()
@click.option("--local", is_flag=True, help="The local stack even where a Docker engine answers (make ... LOCAL=1).")
@click.pass_context
def cli(context: click.Context, local: bool) -> None:
    """Bring the stack up and down: Docker Compose with an engine, supervisord without."""
    context.obj = local


def _note_foreign_celery_variables() -> None:
    found = [name for name in IGNORED_CELERY_VARIABLES if os.environ.get(name)]  # shared/celery_app.py drops them
    if found:
        names = ", ".join(found)
        click.echo(f"note: {names} set in your environment are ignored here; the stack's broker is BROKER_URL")


@cli.command()
@click.option("--gpus", default="", help="GPU count (4) or ids (0,1,3); default: every visible GPU.")
@click.option("--publish", default="", help="Publish Redis and PostgreSQL on this address for worker hosts.")
@click.option("--pacs", is_flag=True, help="Also the stack's own PACS and viewer (Orthanc, OHIF behind nginx).")
@click.pass_obj
def up(local: bool, gpus: str, publish: str, pacs: bool) -> None:
    settings = get_settings()
    _note_foreign_celery_variables()
    if local or not docker_engine():
        reason = "LOCAL=1" if local else "no Docker engine answers"
        click.echo(f"{reason}: starting the local stack (supervisord)")
        gpu_override_path(settings).unlink(missing_ok=True)
        stack.up(settings, pacs)
        return
    refused = refusal(settings)  # .env, as compose reads it
    if refused:
        raise click.ClickException(refused)
    compose = compose_stack.compose_command()
    ids = parse_gpus(gpus, visible_gpus())
    write(gpu_override(ids), gpu_override_path(settings))
    published = settings.layout.compose_dir / "publish.override.yml"
    if publish:
        write(publish_override(publish), published)
    else:
        published.unlink(missing_ok=True)
    workers = f"{len(ids)} GPU worker(s)" if ids else "1 CPU-backed gpu-queue worker (no GPU found; GPUS=... to choose)"
    click.echo(f"Docker engine found: {' '.join(compose)} with {workers}")
    env_path = compose_stack.env_file(settings)
    if env_path != compose_stack.USER_ENV_FILE:
        click.echo(f"no .env: the stack's passwords are generated and kept in {env_path} (0600)")
    for extra in compose_stack.stage_build_extras():
        click.echo(f"the image build uses {extra}")
    if not pacs:
        _stop_the_pacs(settings, env_path)
    compose_stack.run_compose(settings, "up", "-d", "--build", profiles=compose_stack.PACS_PROFILE if pacs else ())
    _wait_healthy(settings)
    _refuse_a_refused_login(env_path)
    click.echo(f"Flower: http://127.0.0.1:5555 and MLflow: http://127.0.0.1:5000 (passwords in {env_path})")
    if pacs:
        kept = _host_pacs_server(settings, env_path)
        click.echo(
            f"Viewer: {json.loads(kept.read_text())['viewer']}  (user and password in {kept})\n"
            f"PACS: http://pacs:{PACS_PORT}/dicom-web for dispatch and the workers, "
            f"http://127.0.0.1:{PACS_PORT}/dicom-web from this host"
        )
    click.echo("next: make demo, or `make dispatch ARGS='jobs'`")


def _stop_the_pacs(settings: Settings, env_path: Path) -> None:
    """`make up` without PACS=1 after a start with it: its PACS and viewer stop, and the stack stops offering
    them to dispatch and the workers."""
    if {"pacs", "viewer"} & set(service_states(settings)):
        compose_stack.run_compose(settings, "rm", "--stop", "--force", "pacs", "viewer")
    _host_pacs_server(settings, env_path).unlink(missing_ok=True)


def _host_pacs_server(settings: Settings, env_path: Path) -> Path:
    """The pacs service's `pacs_server` file, in the data root as this host mounts it."""
    return DataRoot(compose_stack.host_data_root(settings, env_path)).stack_dir / PACS_SERVER_FILE


def _refuse_a_refused_login(env_path: Path) -> None:
    """The workers log to MLflow as `fracatlas` with MLFLOW_ADMIN_PASSWORD; MLflow's own user table keeps the
    password of its first start (a volume), so an edited .env would be refused in every job: say so now."""
    password = dotenv_values(env_path).get("MLFLOW_ADMIN_PASSWORD") or ""
    refused = refused_login(f"http://127.0.0.1:{MLFLOW_PUBLISHED_PORT}", compose_stack.MLFLOW_USER, password)
    if refused:
        raise click.ClickException(
            f"{refused}. MLflow keeps the admin password of its first start: put that one back in {env_path}, "
            "or change it in MLflow (docs/tracking.md)"
        )


def service_states(settings: Settings) -> dict[str, str]:
    ids = compose_stack.run_compose(settings, "ps", "-q", check=False, capture=True).stdout.split()
    if not ids:
        return {}
    inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout or "[]")
    states = {}
    for container in inspected:
        name = container["Config"]["Labels"].get("com.docker.compose.service", container["Name"])
        health = container["State"].get("Health")
        states[name] = health["Status"] if health else container["State"]["Status"]
    return states


def _wait_healthy(settings: Settings) -> None:
    """Until every service with a health check is healthy (the one-shot migrate has exited)."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = service_states(settings)
        waiting = {name: state for name, state in states.items() if state not in ("healthy", "running", "exited")}
        if states and not waiting:
            click.echo("services: " + ", ".join(f"{name} {state}" for name, state in sorted(states.items())))
            return
        time.sleep(3)
    raise click.ClickException(
        "not every service turned healthy within "
        f"{HEALTHY_TIMEOUT_S}s: {', '.join(f'{n} {s}' for n, s in sorted(states.items()))}; see `make logs`"
    )


@cli.command()
@click.pass_obj
def down(local: bool) -> None:
    settings = get_settings()
    if compose_mode(settings, local):
        compose_stack.run_compose(settings, "down")
    else:
        stack.down(settings)


@cli.command()
@click.pass_obj
def ps(local: bool) -> None:
    settings = get_settings()
    if compose_mode(settings, local):
        compose_stack.run_compose(settings, "ps")
    else:
        raise SystemExit(stack.status(settings))


@cli.command()
@click.pass_obj
def logs(local: bool) -> None:
    settings = get_settings()
    if compose_mode(settings, local):
        compose_stack.run_compose(settings, "logs", "--tail", "50")
    else:
        stack.logs(settings, 40)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def dispatch(local: bool, arguments: tuple[str, ...]) -> None:
    """`dispatch ARGUMENTS` against the running stack: in a container of it, or the venv's in the local mode."""
    settings = get_settings()
    if compose_mode(settings, local):
        raise SystemExit(compose_stack.dispatch_in_stack(settings, arguments))
    executable = Path(sys.executable).with_name("dispatch")
    os.execv(executable, [str(executable), *arguments])


@cli.command("worker-host")
@click.option("--gpus", default="", help="GPU count or ids on this host.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where to write the compose file.")
def worker_host(gpus: str, out: Path | None) -> None:
    """Write the compose file for a host that runs only GPU workers against the first host."""
    path = write(
        gpu_override(parse_gpus(gpus, visible_gpus()), remote=True),
        out or get_settings().layout.compose_dir / "worker-host.yml",
    )
    click.echo(
        f"wrote {path}: on the second host, with the first host's data root mounted at HOST_DATA_ROOT and .env naming "
        f"FIRST_HOST and the stack's passwords, `docker compose -f {path} up -d` (or docker-compose)"
    )


if __name__ == "__main__":
    cli()
