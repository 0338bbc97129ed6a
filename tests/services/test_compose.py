"""The Docker deployment, checked without a Docker engine: docker-compose's own validation, the rules
the files must keep, and the containers' start scripts run as local processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import BIN, PROJECT, free_port, require, wait_for

from services.docker.compose import gpu_override, parse_gpus, publish_override, write
from shared.settings import Settings

ENV_FILE = PROJECT / ".env.example"
APP_IMAGE = "fracatlas-jobs"
LONG_RUNNING_EXCEPT = {"migrate", "dispatch"}
OWN_TARGETS = {"mlflow", "pacs", "viewer"}  # services/docker/Dockerfile's images besides `app`


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("compose")
    return {
        "four_gpus": write(gpu_override(parse_gpus("0,1,2,3", 0)), folder / "gpus.override.yml"),
        "no_gpu": write(gpu_override(parse_gpus("", 0)), folder / "nogpu.override.yml"),
        "published": write(publish_override("10.0.0.1"), folder / "publish.override.yml"),
        "worker_host": write(gpu_override(parse_gpus("2", 0), remote=True), folder / "worker-host.yml"),
    }


def config(*paths: Path) -> dict:
    """The merged configuration as docker-compose resolves it (with .env.example's values)."""
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed (`make compose-tools`)")
    args = ["docker-compose", "--env-file", str(ENV_FILE), "--project-directory", str(PROJECT)]
    for path in paths:
        args += ["-f", str(path)]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    quiet = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, cwd=PROJECT)
    assert quiet.returncode == 0 and not quiet.stdout
    return yaml.safe_load(result.stdout)


def app_services(merged: dict) -> dict[str, dict]:
    return {name: service for name, service in merged["services"].items() if APP_IMAGE in service.get("image", "")}


def test_parse_gpus() -> None:
    assert parse_gpus("4", 0) == ["0", "1", "2", "3"]
    assert parse_gpus("0,2", 8) == ["0", "2"]
    assert parse_gpus("", 2) == ["0", "1"] and parse_gpus("", 0) == []
    with pytest.raises(ValueError, match="distinct GPU ids"):
        parse_gpus("0,0", 2)


def test_each_gpu_worker_reserves_one_distinct_gpu(files: dict[str, Path]) -> None:
    merged = config(PROJECT / "docker-compose.yml", files["four_gpus"])
    workers = {name: s for name, s in merged["services"].items() if name.startswith("gpu-worker-")}
    assert sorted(workers) == [f"gpu-worker-{i}" for i in range(4)]
    reserved = []
    for service in workers.values():
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        reserved += device["device_ids"]
        assert service["command"] == ["services/docker/start/gpu-worker.sh"]
        assert service["environment"]["NNUNET_DEVICE"] == "cuda"
        assert service.get("shm_size") or service.get("ipc") == "host"
    assert sorted(reserved) == ["0", "1", "2", "3"]
    script = (PROJECT / "services/docker/start/gpu-worker.sh").read_text()
    assert re.search(r"worker -Q gpu -c 1 -n \"gpu\$\{WORKER_GPU:-0\}@%h\"", script)


def test_a_host_without_gpus_gets_a_cpu_backed_gpu_queue_worker(files: dict[str, Path]) -> None:
    merged = config(PROJECT / "docker-compose.yml", files["no_gpu"])
    worker = merged["services"]["gpu-worker-0"]
    assert "deploy" not in worker and worker["environment"]["NNUNET_DEVICE"] == "cpu"


# Read by the init process (tini) and by the MLflow server, not by the project's settings.
# Read by tini, MLflow's server and torch.hub (TORCH_HOME: torchvision's ImageNet files), not by our settings.
READ_ELSEWHERE = {"TINI_KILL_PROCESS_GROUP", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_ALLOWED_HOSTS", "TORCH_HOME"}


def test_rules_of_the_stack(files: dict[str, Path]) -> None:
    merged = config(PROJECT / "docker-compose.yml", files["four_gpus"])
    settings_names = {field.alias for field in Settings.model_fields.values()}
    for name, service in app_services(merged).items():
        unknown = set(service.get("environment", {})) - settings_names - READ_ELSEWHERE
        assert not unknown, f"{name} sets {unknown}, which shared/settings.py does not read"
        # `docker compose stop` reaches the pool processes (they hand their jobs back) before Redis stops.
        assert service["init"] is True and service["environment"]["TINI_KILL_PROCESS_GROUP"] == "1"
        # The containers run as the uid `make up` passes (the data root's), the image's user by default.
        assert service["user"] == "1000:1000", name
        assert service["build"]["target"] == (name if name in OWN_TARGETS else "app"), name
        if name not in LONG_RUNNING_EXCEPT:
            assert {"redis", "postgres"} <= set(service["depends_on"]), f"{name} must stop before the broker"
            assert "healthcheck" in service, f"{name} has no health check"
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
            assert service["restart"] == "unless-stopped"
    for name in ("redis", "postgres", "flower", "mlflow"):
        assert "healthcheck" in merged["services"][name]
    mlflow = merged["services"]["mlflow"]
    assert mlflow["command"] == ["services/docker/start/mlflow.sh"] and mlflow["build"]["target"] == "mlflow"
    script = (PROJECT / "services/docker/start/mlflow.sh").read_text()
    assert "--app-name basic-auth" in script and "--backend-store-uri" not in script, (
        "no database URL on its command line"
    )
    for name, service in app_services(merged).items():  # every job logs to it, with the admin's password
        if name not in ("mlflow", "migrate", "dispatch"):
            assert service["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
    for name in ("redis", "postgres"):
        assert "ports" not in merged["services"][name], f"{name} must not be published on a host port"
    redis_command = " ".join(merged["services"]["redis"]["command"])
    assert "appendonly yes" in redis_command and "requirepass %s" in redis_command
    assert "change-me" not in redis_command, "Redis's password must not be on its command line"
    assert merged["services"]["migrate"]["command"] == ["services/docker/start/migrate.sh"]
    assert "python -m shared.db.migrate" in (PROJECT / "services/docker/start/migrate.sh").read_text()


def test_no_secret_is_written_in_the_compose_files(files: dict[str, Path]) -> None:
    secrets = {
        line.split("=", 1)[1]
        for line in ENV_FILE.read_text().splitlines()
        if re.match(
            r"^(REDIS_PASSWORD|POSTGRES_PASSWORD|FLOWER_BASIC_AUTH|MLFLOW_ADMIN_PASSWORD|MLFLOW_SECRET_KEY)=", line
        )
    }
    for path in (PROJECT / "docker-compose.yml", *files.values()):
        assert not any(secret in path.read_text() for secret in secrets), path.name
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            for key, value in (service.get("environment") or {}).items():
                if "PASSWORD" in key or "AUTH" in key:
                    assert str(value).startswith("${"), f"{path.name}: {name}.{key} is a literal"
                if key.endswith("_URL") and "@" in str(value):
                    credentials = str(value).split("://", 1)[1].rsplit("@", 1)[0]
                    assert "${" in credentials, f"{path.name}: {name}.{key} holds a literal password"
    assert ".env" in (PROJECT / ".gitignore").read_text().split()


def test_publish_override_binds_the_first_hosts_services_to_one_address(files: dict[str, Path]) -> None:
    merged = config(PROJECT / "docker-compose.yml", files["no_gpu"], files["published"])
    for name, port in {"redis": 6379, "postgres": 5432}.items():
        assert merged["services"][name]["ports"] == [f"10.0.0.1:{port}:{port}/tcp"], name
    assert merged["services"]["mlflow"]["ports"] == [{"published": 5000, "target": 5000}], "published for every host"
    allowed = merged["services"]["mlflow"]["environment"]["MLFLOW_ALLOWED_HOSTS"].split(",")
    assert allowed == ["mlflow:5000", "localhost:5000", "127.0.0.1:5000", "10.0.0.1:5000"], "worker hosts name it so"
    for name, port in {"pacs": 8042, "viewer": 3000}.items():  # PACS=1: beside this host's own 127.0.0.1
        assert merged["services"][name]["ports"] == [f"127.0.0.1:{port}:{port}/tcp", f"10.0.0.1:{port}:{port}/tcp"]
        assert merged["services"][name]["environment"]["VIEWER_URL"] == "http://10.0.0.1:3000", "its links say so"


def test_the_pacs_and_viewer_are_started_only_with_pacs_1_and_published_on_this_host_only() -> None:
    merged = config(PROJECT / "docker-compose.yml")
    for name, port in {"pacs": 8042, "viewer": 3000}.items():
        service = merged["services"][name]
        assert service["profiles"] == ["pacs"] and service["ports"] == [f"127.0.0.1:{port}:{port}/tcp"], name
        assert service["environment"]["PACS_HOST"] == "pacs" and service["environment"]["PACS_LISTEN"] == "0.0.0.0"
    assert merged["services"]["viewer"]["depends_on"]["pacs"]["condition"] == "service_healthy"


def test_worker_host_file_runs_only_gpu_workers_against_the_first_host(files: dict[str, Path]) -> None:
    merged = config(files["worker_host"])
    assert set(merged["services"]) == {"gpu-worker-0", "gpu-worker-1"}
    for service in merged["services"].values():
        assert (
            "10.0.0.1" in service["environment"]["BROKER_URL"] and "10.0.0.1" in service["environment"]["DATABASE_URL"]
        )
        assert "depends_on" not in service


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    require(shutil.which("redis-server") is not None, "no redis-server on PATH")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis

        wait_for(lambda: _pings(redis.Redis(port=port)), timeout=20, what="redis-server")
        yield port
    finally:
        server.terminate()
        server.wait()


def _pings(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_start_scripts_run_a_job_and_refuse_a_foreign_data_root(redis_port: int, tmp_path: Path, release) -> None:  # noqa: ANN001
    data_root = tmp_path / "data"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DATA_ROOT": str(data_root),
        "DATABASE_URL": f"sqlite:///{data_root / 'jobs.sqlite'}",
        "BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CPU_CONCURRENCY": "1",
    }
    start = PROJECT / "services" / "docker" / "start"
    migrate = subprocess.run(
        [str(start / "migrate.sh")], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    assert (data_root / ".fracatlas-data-root").exists()

    foreign = {**env, "DATA_ROOT": str(tmp_path / "local-disk")}
    refused = subprocess.run(
        [str(start / "cpu-worker.sh")], env=foreign, cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1
    assert "is not the shared data root" in refused.stderr and "mount the first host's DATA_ROOT" in refused.stderr

    worker = subprocess.Popen(
        [str(start / "cpu-worker.sh")],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        result = subprocess.run(
            [str(BIN / "dispatch"), "ingest", "--source", str(release()), "--dataset-id", "500", "--wait", "--json"],
            env=env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        run = json.loads(result.stdout)
        assert result.returncode == 0, run["error"]
        assert all(job["worker"].startswith("cpu@") for job in run["jobs"])
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(60)


def test_the_example_passwords_are_refused_before_anything_starts(tmp_path: Path) -> None:
    from shared.secrets_check import EXAMPLE_SECRET

    example = dict(
        line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if line and not line.startswith("#")
    )
    assert example["REDIS_PASSWORD"] == example["POSTGRES_PASSWORD"] == EXAMPLE_SECRET
    env = {
        **os.environ,
        "DATA_ROOT": str(tmp_path),
        "DATABASE_URL": f"postgresql://fracatlas:{example['POSTGRES_PASSWORD']}@127.0.0.1:1/fracatlas",
        "BROKER_URL": f"redis://:{example['REDIS_PASSWORD']}@127.0.0.1:1/0",
        "FLOWER_BASIC_AUTH": example["FLOWER_BASIC_AUTH"],
        "MLFLOW_TRACKING_PASSWORD": example["MLFLOW_ADMIN_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": example["MLFLOW_SECRET_KEY"],
    }
    started = subprocess.run(
        [sys.executable, "-m", "services.docker.prestart"], env=env, capture_output=True, text=True, timeout=30
    )
    assert started.returncode == 1 and "Traceback" not in started.stderr
    for name in (
        "DATABASE_URL (POSTGRES_PASSWORD)",
        "BROKER_URL (REDIS_PASSWORD)",
        "FLOWER_BASIC_AUTH",
        "MLFLOW_TRACKING_PASSWORD (MLFLOW_ADMIN_PASSWORD)",
        "MLFLOW_FLASK_SERVER_SECRET_KEY (MLFLOW_SECRET_KEY)",
    ):
        assert name in started.stderr
    assert "still hold the example password" in started.stderr


def test_the_pacs_and_viewer_start_scripts_serve_one_origin_behind_the_login(tmp_path: Path) -> None:
    """pacs.sh and viewer.sh as local processes, set up as compose sets them (listening on another address than
    127.0.0.1, the PACS reached by a name), with their health checks."""
    from services.viewer.nginx import nginx_binary
    from services.viewer.ohif import is_built
    from services.viewer.orthanc import orthanc_binary

    dist = PROJECT / ".tools" / "ohif" / "dist"
    require(bool(orthanc_binary() and nginx_binary()), "Orthanc's DICOMweb plugin or nginx missing (make viewer-tools)")
    require(is_built(dist), f"OHIF is not in {dist} (make viewer-tools)")
    data_root, pacs_port, viewer_port = tmp_path / "data", free_port(), free_port()
    address, viewer = "127.0.0.2", f"http://127.0.0.2:{viewer_port}"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DATA_ROOT": str(data_root),
        "PACS_PORT": str(pacs_port),
        "VIEWER_PORT": str(viewer_port),
        "PACS_LISTEN": address,
        "PACS_HOST": "localhost",
        "VIEWER_URL": viewer,
        "OHIF_DIST": str(dist),
    }
    for name in ("PACS_USERNAME", "PACS_PASSWORD"):
        env.pop(name, None)

    def healthy(role: str) -> bool:
        check = [sys.executable, "-m", "services.docker.health", role]
        return subprocess.run(check, env=env, cwd=PROJECT, capture_output=True, timeout=30).returncode == 0

    start = PROJECT / "services" / "docker" / "start"
    started = []
    try:
        for role in ("pacs", "viewer"):
            started.append(
                subprocess.Popen(
                    [str(start / f"{role}.sh")],
                    env=env,
                    cwd=PROJECT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            wait_for(lambda role=role: healthy(role), timeout=60, what=f"the {role} health check")
        stack = data_root / "stack"
        server = json.loads((stack / "pacs_server").read_text())
        assert server["dicomweb"] == f"http://localhost:{pacs_port}/dicom-web" and server["viewer"] == viewer
        assert server["user"] == "fracatlas" and server["password"] == (stack / "pacs_password").read_text()
        for secret in ("pacs_server", "pacs_password", "orthanc.json", "viewer/htpasswd"):
            assert (stack / secret).stat().st_mode & 0o077 == 0, secret
        assert json.loads((stack / "orthanc.json").read_text())["RemoteAccessAllowed"] is True
        assert (data_root / "private").stat().st_mode & 0o077 == 0

        import requests

        login = (server["user"], server["password"])
        assert requests.get(f"{viewer}/", timeout=10).status_code == 401
        assert requests.get(f"{viewer}/dicom-web/studies", auth=(login[0], "wrong"), timeout=10).status_code == 401
        assert "<html" in requests.get(f"{viewer}/", auth=login, timeout=10).text.lower()
        assert requests.get(f"{viewer}/dicom-web/studies", auth=login, timeout=10).json() == []
    finally:
        for process in started:
            os.killpg(process.pid, 15)
        for process in started:
            assert process.wait(30) is not None
