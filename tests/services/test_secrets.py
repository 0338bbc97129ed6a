"""No password printed, logged or stored: the stack's run with known passwords, searched everywhere it
writes (docs/security.md); and Flower answers nothing without its password."""

from __future__ import annotations

import json
import stat
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BIN, DATABASE_PASSWORD, FLOWER_PASSWORD, PACS_PASSWORD, PROJECT, REDIS_PASSWORD, Stack, wait_for
from sqlalchemy import select

from shared.db.engine import session_scope
from shared.db.models import Job, Run

# Files that hold the secrets on purpose, readable by their owner only.
SECRET_HOLDERS = {
    "supervisord.conf",
    "flower_basic_auth",
    "redis_password",
    "redis.conf",
    "mlflow_server",
    "mlflow_admin_password",
    "mlflow_secret_key",
    "mlflow-auth.ini",
    "orthanc.json",  # the stack's own PACS (PACS=1): its login
    "pacs_server",
    "pacs_password",
}
# Pictures, labels and weights: searched by the tests of what writes them, not here.
DATASETS = {"nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "classification", "staging", "synthetic"}


def mlflow_secrets(stack: Stack) -> tuple[str, ...]:
    """The local MLflow server's generated admin password and session key, where the stack runs one."""
    kept = stack.data_root / "stack"
    if not (kept / "mlflow_server").exists():
        return ()
    return (kept / "mlflow_admin_password").read_text().strip(), (kept / "mlflow_secret_key").read_text().strip()


def test_no_password_in_any_log_row_or_output(system: Stack, release: Callable[..., Path]) -> None:
    # A failed run whose error quotes a service URL, and ordinary listings, as a user would make them.
    failing = {**system.env, "BROKER_URL": "redis://:broker-pw-3m8x@127.0.0.1:1/0", "DISPATCH_RETRY_SECONDS": "1"}
    sent = subprocess.run(
        [str(BIN / "dispatch"), "ingest", "--source", str(release()), "--dataset-id", "990"], env=failing,
        capture_output=True, text=True, cwd=PROJECT, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 1
    shown = [sent.stdout, sent.stderr, system.up_output]
    for command in (("jobs", "--all"), ("workers",), ("jobs", "--all", "--json")):
        shown.append(system.dispatch(*command).stdout)
    passwords = (
        FLOWER_PASSWORD,
        DATABASE_PASSWORD,
        REDIS_PASSWORD,
        PACS_PASSWORD,
        "broker-pw-3m8x",
        *mlflow_secrets(system),
    )

    for text in shown:
        assert not any(password in text for password in passwords), text[-500:]
    with session_scope() as session:
        rows = [*session.scalars(select(Run)), *session.scalars(select(Job))]
        stored = json.dumps([[row.params, row.metrics, row.artifacts, row.error] for row in rows], default=str)
    assert "cannot reach the broker at redis://:***@127.0.0.1:1/0" in stored
    assert not any(password in stored for password in passwords)
    for path in sorted(p for p in system.data_root.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.name in SECRET_HOLDERS:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} holds secrets and is not 0600"
        elif path.relative_to(system.data_root).parts[0] not in DATASETS:
            content = path.read_bytes()
            leaked = [password for password in passwords if password.encode() in content]
            assert not leaked, f"{path} holds {leaked}"
    assert stat.S_IMODE((system.data_root / "stack").stat().st_mode) == 0o700


def test_flower_answers_nothing_without_its_password(system: Stack) -> None:
    base = f"http://127.0.0.1:{system.env['FLOWER_PORT']}"

    def status(path: str) -> int:
        try:
            return urllib.request.urlopen(base + path, timeout=5).status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    wait_for(lambda: status("/") == 401, timeout=30, what="Flower to answer")
    assert status("/api/workers") == 401 and status("/metrics") == 401
    conf = (system.data_root / "stack" / "supervisord.conf").read_text()
    assert 'FLOWER_ADDRESS="127.0.0.1"' in conf, "the local stack keeps Flower on this machine"


def test_make_up_says_where_the_flower_password_is_kept(system: Stack) -> None:
    assert "the password is in FLOWER_BASIC_AUTH" in system.up_output


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_mlflow_answers_nothing_without_its_password(system: Stack) -> None:
    url, user, password = (system.data_root / "stack" / "mlflow_server").read_text().split()
    assert url.startswith("http://127.0.0.1:"), "the local stack keeps MLflow on this machine"

    def status(path: str, credentials: str | None = None) -> int:
        request = urllib.request.Request(url + path)
        if credentials:
            request.add_header("Authorization", "Basic " + b64encode(credentials.encode()).decode())
        try:
            return urllib.request.urlopen(request, timeout=5).status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    wait_for(lambda: status(search) == 401, timeout=120, what="MLflow to answer")
    assert status("/") == 401 and status(search, f"{user}:wrong") == 401
    assert status(search, f"{user}:{password}") == 200
    assert f"MLflow: {url}  (user {user}; the password is in" in system.up_output
