"""`make up / down / ps / logs / worker-host`: Docker Compose where a Docker engine answers, the local
supervisord stack otherwise; it says which."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from services.docker.compose import gpu_override, parse_gpus, write
from services.local import stack
from services.local.plan import visible_gpus
from shared.secrets_check import refusal
from shared.settings import get_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def override_path() -> Path:
    return get_settings().layout.compose_dir / "gpus.yml"


def compose(*args: str) -> None:
    files = ["-f", str(PROJECT_ROOT / "docker-compose.yml")]
    if override_path().exists():
        files += ["-f", str(override_path())]
    subprocess.run(["docker", "compose", *files, *args], cwd=PROJECT_ROOT, check=True)


@click.group()
def cli() -> None:
    """Bring the stack up and down: Docker Compose with an engine, supervisord without."""


@cli.command()
@click.option("--gpus", default="", help="GPU count (4) or ids (0,1,3); default: every visible GPU.")
def up(gpus: str) -> None:
    if not docker_engine():
        click.echo("no Docker engine answers: starting the local stack (supervisord)")
        stack.up(get_settings())
        return
    refused = refusal(get_settings())  # .env, as compose reads it
    if refused:
        raise click.ClickException(refused)
    ids = parse_gpus(gpus, visible_gpus())
    path = write(gpu_override(ids), override_path())
    click.echo(f"Docker engine found: docker compose with {len(ids) or 'no'} GPU worker(s) ({path})")
    compose("up", "-d", "--build")


@cli.command()
def down() -> None:
    if docker_engine() and override_path().exists():
        compose("down")
    else:
        stack.down(get_settings())


@cli.command()
def ps() -> None:
    if docker_engine() and override_path().exists():
        compose("ps")
    else:
        raise SystemExit(stack.status(get_settings()))


@cli.command()
def logs() -> None:
    if docker_engine() and override_path().exists():
        compose("logs", "--tail", "50")
    else:
        stack.logs(get_settings(), 40)


@cli.command("worker-host")
@click.option("--gpus", default="", help="GPU count or ids on this host.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where to write the compose file.")
def worker_host(gpus: str, out: Path | None) -> None:
    """Write the compose file for a host that runs only GPU workers against the first host."""
    path = write(
        gpu_override(parse_gpus(gpus, visible_gpus()), remote=True),
        out or get_settings().layout.compose_dir / "worker-host.yml",
    )
    click.echo(f"wrote {path}: on the second host, `docker compose -f {path.name} up -d` with .env naming FIRST_HOST")


if __name__ == "__main__":
    cli()
