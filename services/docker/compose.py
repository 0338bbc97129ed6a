"""docker-compose files generated from one template: a GPU worker per GPU, on this host or another.

`make up GPUS=0,1,2,3` (or `GPUS=4`) writes var/compose/gpus.override.yml beside docker-compose.yml;
`make up PUBLISH=ADDRESS` writes var/compose/publish.override.yml, which publishes Redis and PostgreSQL on
that address for other hosts (MLflow is published already); `make worker-host GPUS=...` writes
var/compose/worker-host.yml, a standalone file for a second host that runs only GPU workers against the
first host's Redis, Postgres, MLflow and shared DATA_ROOT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

IMAGE = "fracatlas-jobs:0.1.0"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILD = {"dockerfile": "services/docker/Dockerfile", "target": "app"}
# The containers' user: the image's, or the uid that `make up` passes so they can write the data root.
CONTAINER_USER = "${APP_UID:-1000}:${APP_GID:-1000}"
# What worker hosts reach besides MLflow (published on :5000 by docker-compose.yml already).
PUBLISHED_PORTS = {"redis": 6379, "postgres": 5432}
PACS_PORTS = {"pacs": 8042, "viewer": 3000}  # docker-compose.yml's, published on 127.0.0.1
# docker-compose.yml's, with a user's own from .env
MLFLOW_ALLOWED_HOSTS = "${MLFLOW_ALLOWED_HOSTS:-mlflow:5000,localhost:5000,127.0.0.1:5000}"
FIRST_HOST_SERVICES = {
    "redis": "service_healthy",
    "postgres": "service_healthy",
    "migrate": "service_completed_successfully",
}


def parse_gpus(text: str | None, visible: int) -> list[str]:
    """'0,1,3' -> those ids; '4' -> 0..3; empty -> every visible GPU (none: one CPU-backed worker)."""
    text = (text or "").strip()
    if not text:
        return [str(index) for index in range(visible)]
    if "," not in text and text.isdigit() and int(text) > 0 and not text.startswith("0"):
        return [str(index) for index in range(int(text))]
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() for part in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"GPUS={text!r}: give a count (4) or distinct GPU ids (0,1,3)")
    return ids


STOP_GRACE = "40s"


def _environment(gpu: str | None, remote: bool) -> dict[str, str]:
    host = "${FIRST_HOST:?set FIRST_HOST (the first host's address) in .env}" if remote else None
    postgres, redis = (f"{host}:5432", f"{host}:6379") if remote else ("postgres:5432", "redis:6379")
    postgres_password = "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}"
    redis_password = "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    return {
        "DATA_ROOT": "/data",
        "DATABASE_URL": f"postgresql://fracatlas:{postgres_password}@{postgres}/fracatlas",
        "BROKER_URL": f"redis://:{redis_password}@{redis}/0",
        "LEASE_SECONDS": "${LEASE_SECONDS:-120}",
        "MLFLOW_TRACKING_URI": f"http://{host or 'mlflow'}:5000",
        "MLFLOW_TRACKING_USERNAME": "fracatlas",
        "MLFLOW_TRACKING_PASSWORD": "${MLFLOW_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD in .env}",
        "TORCH_HOME": "/data/torch",  # torchvision's ImageNet files, in the shared data root
        "PACS_USERNAME": "${PACS_USERNAME:-}",
        "PACS_PASSWORD": "${PACS_PASSWORD:-}",
        "WORKER_GPU": gpu if gpu is not None else "",
        "NNUNET_DEVICE": "cuda" if gpu is not None else "cpu",
        "TINI_KILL_PROCESS_GROUP": "1",
    }


def gpu_worker(gpu: str | None, index: int, remote: bool = False) -> dict[str, Any]:
    """One gpu-queue worker; `gpu` None is a CPU-backed one for a host without GPUs."""
    service: dict[str, Any] = {
        "image": IMAGE,
        "command": ["services/docker/start/gpu-worker.sh"],
        "user": CONTAINER_USER,
        "environment": _environment(gpu, remote) | ({} if gpu is not None else {"WORKER_GPU": str(index)}),
        "volumes": ["${HOST_DATA_ROOT:-./var}:/data"],
        # nnU-Net's data loaders pass batches through shared memory.
        "shm_size": "8gb",
        "restart": "unless-stopped",
        # `docker compose stop`: tini passes TERM to the whole group, so the pool process hands its fold back
        # to the queue (docs/reliability.md); the rest of the grace lets that write land.
        "init": True,
        "stop_grace_period": STOP_GRACE,
        "healthcheck": {
            "test": [
                "CMD-SHELL",
                f"celery -A shared.celery_app inspect ping -d gpu{gpu if gpu is not None else index}@$$HOSTNAME -t 5",
            ],
            "interval": "30s",
            "timeout": "15s",
            "retries": 3,
        },
    }
    # A worker host builds from its own checkout of the project (this file lives under its data root).
    service["build"] = {"context": str(PROJECT_ROOT) if remote else ".", **BUILD}
    if not remote:
        service["depends_on"] = {name: {"condition": condition} for name, condition in FIRST_HOST_SERVICES.items()}
    if gpu is not None:
        service["deploy"] = {
            "resources": {
                "reservations": {"devices": [{"driver": "nvidia", "device_ids": [gpu], "capabilities": ["gpu"]}]}
            }
        }
    return service


def gpu_override(gpus: list[str], remote: bool = False) -> dict[str, Any]:
    if not gpus:
        return {"services": {"gpu-worker-0": gpu_worker(None, 0, remote)}}
    return {"services": {f"gpu-worker-{gpu}": gpu_worker(gpu, index, remote) for index, gpu in enumerate(gpus)}}


def publish_override(address: str) -> dict[str, Any]:
    """The first host's services that worker hosts reach, published on one address (a private interface
    behind a firewall; never 0.0.0.0 on a public one). MLflow, published already, must also accept requests
    that name that address (its guard against DNS rebinding refuses any other Host header with a 403)."""
    services: dict[str, Any] = {name: {"ports": [f"{address}:{port}:{port}"]} for name, port in PUBLISHED_PORTS.items()}
    services["mlflow"] = {"environment": {"MLFLOW_ALLOWED_HOSTS": f"{MLFLOW_ALLOWED_HOSTS},{address}:5000"}}
    # The stack's own PACS and viewer (PACS=1), beside 127.0.0.1: its links then name that address.
    for name, port in PACS_PORTS.items():
        services[name] = {
            "ports": [f"{address}:{port}:{port}"],
            "environment": {"VIEWER_URL": f"${{VIEWER_URL:-http://{address}:{PACS_PORTS['viewer']}}}"},
        }
    return {"services": services}


def write(content: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by services/docker/compose.py (make up GPUS=... / make worker-host); do not edit.\n"
    path.write_text(header + yaml.safe_dump(content, sort_keys=False))
    return path
