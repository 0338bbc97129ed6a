"""The compose mode's own logic, without a Docker engine: which compose it calls, the secrets a first start
generates, the data root handed to the containers' user, the images' pins and stages, beat's health, and
the Celery variables a user may have set for another project."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from conftest import PROJECT, require

from services.docker import stack as compose_stack
from services.docker.requirements import PINS_DIR, ROLES, pins, pins_file_text
from shared.settings import Settings

DOCKERFILE = PROJECT / "services" / "docker" / "Dockerfile"


def _executable(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("plugin", "v1", "expected"),
    [(True, True, ["docker", "compose"]), (False, True, ["docker-compose"]), (False, False, None)],
)
def test_compose_v2_else_v1_else_a_clear_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: bool, v1: bool, expected: list[str] | None
) -> None:
    _executable(tmp_path, "docker", "exit 0" if plugin else "echo \"unknown shorthand flag: 'f'\" >&2; exit 125")
    if v1:
        _executable(tmp_path, "docker-compose", "exit 0")
    monkeypatch.setenv("PATH", str(tmp_path))
    if expected:
        assert compose_stack.compose_command() == expected
        return
    with pytest.raises(click.ClickException, match="no Docker Compose is installed.*make up LOCAL=1"):
        compose_stack.compose_command()


def test_a_first_start_without_env_generates_the_stacks_secrets_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compose_stack, "USER_ENV_FILE", tmp_path / "no.env")
    settings = Settings(DATA_ROOT=tmp_path / "var")
    path = compose_stack.env_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in path.read_text().splitlines())
    assert set(values) == set(compose_stack.GENERATED_SECRETS)
    assert values["FLOWER_BASIC_AUTH"].startswith("admin:")
    assert len(set(values.values())) == len(values) and all(len(value) >= 24 for value in values.values())
    assert "change-me" not in path.read_text()
    assert compose_stack.env_file(settings).read_text() == path.read_text(), "kept, not generated again"
    # docker-compose resolves every ${NAME:?...} of the stack with it.
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed (`make compose-tools`)")
    resolved = subprocess.run(
        ["docker-compose", "--env-file", str(path), "-f", str(PROJECT / "docker-compose.yml"), "config", "-q"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    assert resolved.returncode == 0, resolved.stderr


def test_a_user_env_file_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_env = tmp_path / ".env"
    user_env.write_text("REDIS_PASSWORD=theirs\n")
    monkeypatch.setattr(compose_stack, "USER_ENV_FILE", user_env)
    settings = Settings(DATA_ROOT=tmp_path / "var")
    assert compose_stack.env_file(settings) == user_env
    assert not (settings.layout.compose_dir / compose_stack.SECRETS_FILE).exists()


def test_the_data_root_is_handed_to_the_containers_user(tmp_path: Path) -> None:
    data_root = tmp_path / "var"
    (data_root / "stack").mkdir(parents=True)
    (data_root / "stack" / "file").write_text("x")
    uid, gid = compose_stack.container_user(data_root)
    if os.geteuid() == 0:
        assert (uid, gid) == (compose_stack.IMAGE_UID, compose_stack.IMAGE_UID)
        owners = {path.stat().st_uid for path in [data_root, *data_root.rglob("*")]}
        assert owners == {compose_stack.IMAGE_UID}
    else:
        assert (uid, gid) == (os.getuid(), os.getgid())


def test_build_extras_are_staged_for_the_builders_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extras = tmp_path / "build-extras"
    extras.mkdir()
    monkeypatch.setattr(compose_stack, "BUILD_EXTRAS", extras)
    bundle = tmp_path / "site-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("BUILD_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("BUILD_PIP_CONF", raising=False)
    assert compose_stack.stage_build_extras() == [f"BUILD_CA_BUNDLE={bundle}"]
    assert (extras / "ca.pem").read_text() == bundle.read_text()
    monkeypatch.delenv("BUILD_CA_BUNDLE")
    assert compose_stack.stage_build_extras() == [] and not (extras / "ca.pem").exists()
    monkeypatch.setenv("BUILD_PIP_CONF", str(tmp_path / "missing.conf"))
    with pytest.raises(click.ClickException, match="BUILD_PIP_CONF=.*missing.conf: no such file"):
        compose_stack.stage_build_extras()


def _stages() -> dict[str, str]:
    """Each stage of the Dockerfile and the stage or image it is built FROM."""
    found = re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    return {stage: parent for parent, stage in found}


def _ancestors(stage: str, stages: dict[str, str]) -> list[str]:
    chain = []
    while stage in stages:
        chain.append(stage)
        stage = stages[stage]
    return chain


def test_one_torch_layer_and_an_mlflow_image_without_torch() -> None:
    pyproject = PROJECT / "pyproject.toml"
    assert pins("torch", pyproject) == ["torch==2.14.1", "torchvision==0.29.1"]
    assert not any(pin.startswith("torch") for pin in pins("app", pyproject) + pins("mlflow", pyproject))
    assert any(pin.startswith("mlflow[auth]") for pin in pins("mlflow", pyproject))
    stages = _stages()
    assert "torch-layer" in _ancestors("app-packages", stages)
    assert "torch-layer" not in _ancestors("mlflow-packages", stages)
    text = DOCKERFILE.read_text()
    # The shipped stages copy the builders' venv; the site's CA and pip.conf stay in the builders.
    for shipped in ("app", "mlflow"):
        body = text.split(f"AS {shipped}\n", 1)[1].split("\nFROM ", 1)[0]
        assert stages[shipped] == "runtime" and "build-extras" not in body, shipped
    sources = text.split("AS sources\n", 1)[1].split("\nFROM ", 1)[0]
    assert "COPY services " in sources and "rm -rf /app/services/docker/build-extras" in sources
    assert text.index("AS app\n") < text.index("AS mlflow-packages"), "a classic build of `app` stops before"


@pytest.mark.parametrize("suffix", ["", ".db"])
def test_beat_is_healthy_whatever_its_dbm_names_the_schedule(tmp_path: Path, suffix: str) -> None:
    schedule = tmp_path / "stack" / f"celerybeat-schedule{suffix}"
    schedule.parent.mkdir()
    env = {**os.environ, "DATA_ROOT": str(tmp_path), "REAP_INTERVAL_SECONDS": "30"}
    check = [sys.executable, "-m", "services.docker.health", "beat"]
    assert subprocess.run(check, env=env, cwd=PROJECT).returncode == 1, "no schedule yet"
    schedule.write_bytes(b"")
    assert subprocess.run(check, env=env, cwd=PROJECT).returncode == 0
    stale = time.time() - 121
    os.utime(schedule, (stale, stale))
    assert subprocess.run(check, env=env, cwd=PROJECT).returncode == 1, "stale after 4 reap intervals (120 s)"


def test_a_users_celery_variables_do_not_redirect_the_stack(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATA_ROOT": str(tmp_path),
        "BROKER_URL": "redis://127.0.0.1:6390/3",
        "CELERY_BROKER_URL": "redis://:theirs@elsewhere:6379/0",
        "CELERY_RESULT_BACKEND": "redis://:theirs@elsewhere:6379/1",
    }
    probe = "from shared.celery_app import app; print(app.conf.broker_url, app.conf.result_backend)"
    shown = subprocess.run([sys.executable, "-c", probe], env=env, cwd=PROJECT, capture_output=True, text=True)
    assert shown.stdout.split() == ["redis://127.0.0.1:6390/3", "redis://127.0.0.1:6390/3"], shown.stderr


def test_the_mlflow_image_has_every_project_dependency_its_start_steps_import() -> None:
    """The mlflow image installs only some of the project's pins: each one its start steps import."""
    probe = (
        "import sys, importlib.metadata as m\n"
        "import services.docker.prestart, services.docker.mlflow_setup, services.docker.health\n"
        "found = m.packages_distributions()\n"
        "print('\\n'.join(sorted({d for name in list(sys.modules) for d in found.get(name.split('.')[0], [])})))\n"
    )
    shown = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    imported = {name.lower().replace("_", "-") for name in shown.stdout.split()}
    pyproject = PROJECT / "pyproject.toml"
    direct = {re.split(r"[\[<>=!~ ;]", pin, maxsplit=1)[0].lower() for pin in pins("app", pyproject)}
    in_image = {re.split(r"[\[<>=!~ ;]", pin, maxsplit=1)[0].lower() for pin in pins("mlflow", pyproject)}
    missing = (imported & direct) - in_image - {"fracatlas-jobs"}
    assert not missing, f"services/docker/requirements.py's mlflow role lacks {missing}"


def test_the_dockerfile_pins_files_are_what_pyproject_says() -> None:
    """The image's package layers install services/docker/pins/*.txt: stale files would ship other versions."""
    for role in ROLES:
        committed = (PINS_DIR / f"{role}.txt").read_text()
        assert committed == pins_file_text(role), f"services/docker/pins/{role}.txt is stale: run `make docker-pins`"
