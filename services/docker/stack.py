"""The compose mode of `make up / down / ps / logs / dispatch`: which compose to call, the secrets a first
start generates, the data root the containers can write, and the environment compose gets."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import click
from dotenv import dotenv_values

from shared.private_files import write_private
from shared.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
USER_ENV_FILE = PROJECT_ROOT / ".env"
SECRETS_FILE = "secrets.env"  # under $DATA_ROOT/compose, 0600, when the user has no .env
IMAGE_UID = 1000  # the `app` user of services/docker/Dockerfile
PACS_PROFILE = ("pacs",)  # docker-compose.yml's PACS and viewer, started by `make up PACS=1` only
FLOWER_USER = "admin"
MLFLOW_USER = "fracatlas"  # the workers' MLflow login in docker-compose.yml
# What docker-compose.yml asks of .env with ${NAME:?...}; a first start without .env generates each.
GENERATED_SECRETS = (
    "REDIS_PASSWORD",
    "POSTGRES_PASSWORD",
    "FLOWER_BASIC_AUTH",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_SECRET_KEY",
)


def compose_command() -> list[str]:
    """Compose v2 (the docker plugin) where it answers, else v1 (`docker-compose`), else a clear refusal."""
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if v2.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise click.ClickException(
        "a Docker engine answers but no Docker Compose is installed: install the compose plugin "
        "(docker-compose-plugin) or Debian's docker-compose, or run `make up LOCAL=1` for the local stack"
    )


def _new_secret() -> str:
    return secrets.token_urlsafe(24)


def env_file(settings: Settings) -> Path:
    """The user's .env, else a secrets file generated once under the data root (0600, never printed)."""
    if USER_ENV_FILE.is_file():
        return USER_ENV_FILE
    path = settings.layout.compose_dir / SECRETS_FILE
    if not path.is_file():
        values = {name: _new_secret() for name in GENERATED_SECRETS}
        values["FLOWER_BASIC_AUTH"] = f"{FLOWER_USER}:{values['FLOWER_BASIC_AUTH']}"
        write_private(path, "".join(f"{name}={value}\n" for name, value in values.items()))
    return path


def host_data_root(settings: Settings, env_path: Path) -> Path:
    """HOST_DATA_ROOT (environment, then the env file), relative to the project; default: DATA_ROOT."""
    chosen = os.environ.get("HOST_DATA_ROOT") or dotenv_values(env_path).get("HOST_DATA_ROOT")
    return (PROJECT_ROOT / chosen).resolve() if chosen else settings.root


def container_user(data_root: Path) -> tuple[int, int]:
    """The uid:gid the containers run as, so that they can write the bind-mounted data root.

    Run as root (a server): the image's own user, and the data root handed to it where root made it.
    Run as a user: that user, so that what the stack writes stays theirs.
    """
    data_root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    for folder, subfolders, files in os.walk(data_root):
        for path in [folder, *(os.path.join(folder, name) for name in subfolders + files)]:
            if os.lstat(path).st_uid == 0:
                os.lchown(path, IMAGE_UID, IMAGE_UID)
    return IMAGE_UID, IMAGE_UID


BUILD_EXTRAS = PROJECT_ROOT / "services" / "docker" / "build-extras"
BUILD_EXTRA_SOURCES = {"BUILD_CA_BUNDLE": "ca.pem", "BUILD_PIP_CONF": "pip.conf"}


def stage_build_extras() -> list[str]:
    """Copy BUILD_CA_BUNDLE and BUILD_PIP_CONF where the image builders read them (and only they: no shipped
    layer holds them); an extra no longer named is removed. Returns what the build takes."""
    taken = []
    for variable, name in BUILD_EXTRA_SOURCES.items():
        target = BUILD_EXTRAS / name
        source = os.environ.get(variable)
        if not source:
            target.unlink(missing_ok=True)
            continue
        if not Path(source).is_file():
            raise click.ClickException(f"{variable}={source}: no such file (a PEM bundle / a pip.conf)")
        shutil.copyfile(source, target)
        taken.append(f"{variable}={source}")
    return taken


def compose_files(settings: Settings) -> list[str]:
    files = [PROJECT_ROOT / "docker-compose.yml", *sorted(settings.layout.compose_dir.glob("*.override.yml"))]
    return [argument for path in files for argument in ("-f", str(path))]


def run_compose(
    settings: Settings,
    *args: str,
    check: bool = True,
    capture: bool = False,
    profiles: tuple[str, ...] = PACS_PROFILE,
) -> subprocess.CompletedProcess[str]:
    """`profiles`: the optional services compose sees. All of them, so that `down`, `ps` and `logs` reach the
    PACS and viewer where they run; `make up` names them only with PACS=1."""
    env_path = env_file(settings)
    data_root = host_data_root(settings, env_path)
    uid, gid = container_user(data_root)
    environment = {
        **os.environ,
        "HOST_DATA_ROOT": str(data_root),
        "APP_UID": str(uid),
        "APP_GID": str(gid),
        "COMPOSE_PROFILES": ",".join(profiles),
    }
    command = [*compose_command(), "--env-file", str(env_path), *compose_files(settings), *args]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=environment, capture_output=capture, text=True)
    if check and result.returncode != 0:
        raise click.ClickException(f"`{' '.join(command[:2])} {' '.join(args)}` failed (exit {result.returncode})")
    return result


def dispatch_in_stack(settings: Settings, arguments: tuple[str, ...]) -> int:
    """`dispatch ...` in a one-off container of the stack: its broker and job table are not on the host."""
    tty = [] if sys.stdin.isatty() and sys.stdout.isatty() else ["-T"]
    return run_compose(settings, "run", "--rm", *tty, "dispatch", *arguments, check=False).returncode
