"""Every setting of the system, read from the environment in one place.

The defaults serve the local mode: a data root under ./var, a SQLite job table inside it and the Redis
on localhost. docker-compose and other hosts set the same names.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.layout import DataRoot
from shared.tasknames import QUEUE_OF

REDIS_PASSWORD_FILE = "redis_password"  # under the stack folder, mode 0600, when the local stack runs Redis
# "url user password", mode 0600, when the local stack runs the MLflow server
MLFLOW_SERVER_FILE = "mlflow_server"
# {"dicomweb", "viewer", "user", "password"}, mode 0600, when the stack runs its own PACS and viewer (PACS=1)
PACS_SERVER_FILE = "pacs_server"
TRACKING_OFF = ("", "none", "off")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    data_root: Path = Field(default=Path("var"), alias="DATA_ROOT")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", alias="BROKER_URL")
    result_backend: str | None = Field(default=None, alias="RESULT_BACKEND")
    # A running job beats this often; one silent for longer than the lease is re-queued by the reaper.
    heartbeat_seconds: float = Field(default=5.0, alias="HEARTBEAT_SECONDS")
    lease_seconds: float = Field(default=120.0, alias="LEASE_SECONDS")
    reap_interval_seconds: float = Field(default=30.0, alias="REAP_INTERVAL_SECONDS")
    max_attempts: int = Field(default=3, alias="MAX_ATTEMPTS")
    # A job queued this long whose message the broker no longer holds is sent again (docs/reliability.md).
    resend_grace_seconds: float = Field(default=60.0, alias="RESEND_GRACE_SECONDS")
    # How long a worker keeps retrying the job table through an outage before its job fails, and how long
    # the dispatcher does (a user is waiting) before it says which service it cannot reach.
    db_retry_seconds: float = Field(default=120.0, alias="DB_RETRY_SECONDS")
    dispatch_retry_seconds: float = Field(default=10.0, alias="DISPATCH_RETRY_SECONDS")
    # Soft time limits per task, in seconds, over the defaults in shared/time_limits.py; the hard limit
    # (the worker's process is killed) comes this much later.
    job_time_limits: dict[str, float] = Field(default_factory=dict, alias="JOB_TIME_LIMITS")
    hard_limit_grace_seconds: float = Field(default=30.0, alias="HARD_LIMIT_GRACE_SECONDS")
    # A cancelled job still blocked (in a read, say) this long after its worker noticed is interrupted.
    cancel_grace_seconds: float = Field(default=2.0, alias="CANCEL_GRACE_SECONDS")
    # How long `make down` waits for a stopping worker (it hands its running jobs back at once) before it is
    # killed; a job that could not be handed back in time is re-queued by the lease.
    shutdown_grace_seconds: float = Field(default=30.0, alias="SHUTDOWN_GRACE_SECONDS")
    # Above the longest fold: the lease, not this, bounds recovery time (docs/design.md).
    visibility_timeout_seconds: int = Field(default=7 * 24 * 3600, alias="VISIBILITY_TIMEOUT_SECONDS")
    flower_port: int = Field(default=5555, alias="FLOWER_PORT")
    flower_address: str = Field(default="127.0.0.1", alias="FLOWER_ADDRESS")
    flower_basic_auth: str | None = Field(default=None, alias="FLOWER_BASIC_AUTH")
    gpu_workers: int | None = Field(default=None, alias="GPU_WORKERS")
    cpu_concurrency: int | None = Field(default=None, alias="CPU_CONCURRENCY")
    ingest_chunk_size: int = Field(default=128, alias="INGEST_CHUNK_SIZE")
    # What a release may ask of a worker (docs/security.md); the real release is far below each.
    ingest_max_coco_mb: int = Field(default=256, alias="INGEST_MAX_COCO_MB")
    ingest_max_coco_depth: int = Field(default=32, alias="INGEST_MAX_COCO_DEPTH")
    ingest_max_polygons_per_image: int = Field(default=256, alias="INGEST_MAX_POLYGONS_PER_IMAGE")
    ingest_max_points_per_polygon: int = Field(default=20_000, alias="INGEST_MAX_POINTS_PER_POLYGON")
    ingest_max_pixels: int = Field(default=64_000_000, alias="INGEST_MAX_PIXELS")
    ingest_max_archive_gb: int = Field(default=64, alias="INGEST_MAX_ARCHIVE_GB")
    # A gpu-queue worker: the GPU it is pinned to (shown by `dispatch workers`) and the device nnU-Net uses
    # (default: cuda where CUDA_VISIBLE_DEVICES names a GPU, else cpu). In a container that reserves one
    # GPU, that GPU is the container's only one.
    worker_gpu: str | None = Field(default=None, alias="WORKER_GPU")
    nnunet_device: str | None = Field(default=None, alias="NNUNET_DEVICE")
    # nnU-Net's own knobs, per worker: data-augmentation processes, export processes, torch.compile.
    nnunet_n_proc_da: str | None = Field(default=None, alias="nnUNet_n_proc_DA")
    nnunet_def_n_proc: str | None = Field(default=None, alias="nnUNet_def_n_proc")
    nnunet_compile: str | None = Field(default=None, alias="nnUNet_compile")
    # The command that trains a fold: nnU-Net's, or a wrapper around it (nice, numactl, a bench stand-in).
    nnunet_train_command: str = Field(default="nnUNetv2_train", alias="NNUNET_TRAIN_COMMAND")
    # Experiment tracking (docs/tracking.md): the MLflow server the workers log to ("none": no tracking;
    # unset: the local stack starts its own), the address users open, and how long a request may take.
    mlflow_tracking_uri: str | None = Field(default=None, alias="MLFLOW_TRACKING_URI")
    mlflow_username: str | None = Field(default=None, alias="MLFLOW_TRACKING_USERNAME")
    mlflow_password: str | None = Field(default=None, alias="MLFLOW_TRACKING_PASSWORD")
    mlflow_ui_url: str | None = Field(default=None, alias="MLFLOW_UI_URL")
    mlflow_port: int = Field(default=5000, alias="MLFLOW_PORT")
    # The stack's MLflow checks a login once per this many seconds, not on every request (0: every request;
    # services/tracking_store.py says why).
    mlflow_auth_cache_seconds: int = Field(default=300, alias="MLFLOW_AUTH_CACHE_SECONDS")
    tracking_timeout_seconds: float = Field(default=10.0, alias="TRACKING_TIMEOUT_SECONDS")
    # What a job has not sent when it ends waits this long, then goes to the spool (the reaper replays it).
    tracking_flush_seconds: float = Field(default=15.0, alias="TRACKING_FLUSH_SECONDS")
    # make bench-tracking: each process appends, per entry sent, its kind and seconds from call to answer.
    tracking_lag_log: Path | None = Field(default=None, alias="TRACKING_LAG_LOG")
    # --weights auto: how long a fetch of torchvision's ImageNet file may go unanswered before the run starts
    # from scratch (no job waits on a network that is not there).
    imagenet_fetch_timeout_seconds: float = Field(default=5.0, alias="IMAGENET_FETCH_TIMEOUT_SECONDS")
    # `dispatch predict --pacs URL` (docs/dicom.md): the PACS login, never printed, and how long one DICOMweb
    # request may take before the PACS counts as not answering.
    pacs_username: str | None = Field(default=None, alias="PACS_USERNAME")
    pacs_password: str | None = Field(default=None, alias="PACS_PASSWORD")
    pacs_timeout_seconds: float = Field(default=30.0, alias="PACS_TIMEOUT_SECONDS")
    # The stack's own PACS (Orthanc) and viewer (OHIF behind nginx) with `make up PACS=1` (docs/viewer.md): their
    # ports; the address they listen on (in compose, every address of their containers, which docker-compose.yml
    # publishes on 127.0.0.1); how the viewer and the workers reach the PACS (in compose, its service's name);
    # the viewer's address as a user opens it (its links start with it).
    pacs_port: int = Field(default=8042, alias="PACS_PORT")
    viewer_port: int = Field(default=3000, alias="VIEWER_PORT")
    pacs_listen: str = Field(default="127.0.0.1", alias="PACS_LISTEN")
    pacs_host: str = Field(default="127.0.0.1", alias="PACS_HOST")
    viewer_url: str | None = Field(default=None, alias="VIEWER_URL")
    # The built OHIF that `make viewer-tools` fetches (the compose image has its own).
    ohif_dist: Path = Field(default=Path(".tools/ohif/dist"), alias="OHIF_DIST")

    @field_validator("job_time_limits")
    @classmethod
    def _known_tasks(cls, limits: dict[str, float]) -> dict[str, float]:
        for name, seconds in limits.items():
            if name not in QUEUE_OF:
                raise ValueError(f"JOB_TIME_LIMITS names {name!r}; the tasks are {', '.join(sorted(QUEUE_OF))}")
            if not seconds > 0:
                raise ValueError(f"JOB_TIME_LIMITS gives {name!r} {seconds} s; a limit is a positive number")
        return limits

    @property
    def root(self) -> Path:
        return self.data_root.expanduser().resolve()

    @property
    def db_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.layout.sqlite_job_table}"
        # The plain postgresql:// scheme would pick psycopg2; the project ships psycopg 3.
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    # Celery's own command line also reads BROKER_URL (its --broker option) and prefers it: a `celery worker`
    # started outside the stack needs the URL with the password (the stack hands its processes `broker`).
    @property
    def broker(self) -> str:
        """BROKER_URL as processes connect to it: where it names no password and points at the Redis that
        the local stack started, with that Redis's generated password (kept in the stack folder)."""
        parts = urlsplit(self.broker_url)
        kept = self.layout.stack_dir / REDIS_PASSWORD_FILE
        if parts.password is not None or not kept.is_file():
            return self.broker_url
        address, _, password = kept.read_text().strip().partition(" ")
        if address != f"{parts.hostname}:{parts.port or 6379}":
            return self.broker_url
        return urlunsplit(parts._replace(netloc=f":{quote(password, safe='')}@{parts.netloc}"))

    @property
    def backend_url(self) -> str:
        return self.result_backend or self.broker

    @property
    def tracking_uri(self) -> str | None:
        """MLFLOW_TRACKING_URI, else the local stack's own server; None: no tracking."""
        if self.mlflow_tracking_uri is not None:
            chosen = self.mlflow_tracking_uri.strip()
            return None if chosen.lower() in TRACKING_OFF else chosen
        kept = self._local_mlflow()
        return kept[0] if kept else None

    @property
    def tracking_credentials(self) -> tuple[str | None, str]:
        """The login of the server the workers log to. The local stack's own server has its own: a
        MLFLOW_TRACKING_USERNAME in the environment belongs to another server (the one MLFLOW_TRACKING_URI
        would name) and is not sent to this one."""
        if self.mlflow_tracking_uri is None:
            kept = self._local_mlflow()
            return (kept[1], kept[2]) if kept else (None, "")
        if not self.mlflow_username:
            return None, ""
        return self.mlflow_username, self.mlflow_password or ""

    @property
    def tracking_ui_url(self) -> str:
        return self.mlflow_ui_url or self.tracking_uri or ""

    def _local_mlflow(self) -> list[str] | None:
        kept = self.layout.stack_dir / MLFLOW_SERVER_FILE
        parts = kept.read_text().split() if kept.is_file() else []
        return parts if len(parts) == 3 else None

    @property
    def own_pacs(self) -> tuple[str, str] | None:
        """The stack's own PACS (PACS=1): its DICOMweb URL and its viewer's; None where it runs none."""
        kept = self._local_pacs()
        return (kept["dicomweb"], kept["viewer"]) if kept else None

    def pacs_login(self, url: str) -> tuple[str, str] | None:
        """The login for the PACS at `url`: PACS_USERNAME and PACS_PASSWORD, else, for the stack's own PACS
        alone, the login generated for it (never sent to another)."""
        if self.pacs_username:
            return self.pacs_username, self.pacs_password or ""
        kept = self._local_pacs()
        return (kept["user"], kept["password"]) if kept and url.rstrip("/") == kept["dicomweb"] else None

    def _local_pacs(self) -> dict[str, str] | None:
        kept = self.layout.stack_dir / PACS_SERVER_FILE
        try:
            return json.loads(kept.read_text()) if kept.is_file() else None
        except ValueError:  # written by an older stack: `make up PACS=1` writes it again
            return None

    @property
    def layout(self) -> DataRoot:
        """Every folder under DATA_ROOT (shared/layout.py)."""
        return DataRoot(self.root)

    def nnunet_environ(self) -> dict[str, str]:
        knobs = {
            "nnUNet_n_proc_DA": self.nnunet_n_proc_da,
            "nnUNet_def_n_proc": self.nnunet_def_n_proc,
            "nnUNet_compile": self.nnunet_compile,
        }
        return {**self.layout.nnunet_environ(), **{key: value for key, value in knobs.items() if value is not None}}


@lru_cache
def get_settings() -> Settings:
    return Settings()
