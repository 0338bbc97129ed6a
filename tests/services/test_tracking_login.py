"""The MLflow login the workers use: the local stack's own server gets its own login whatever the
environment holds, and `make up` refuses, naming the user, a login the server answers 401/403."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT, Stack, free_port

from shared.settings import MLFLOW_SERVER_FILE, Settings
from shared.tracking_login import refused_login


def _kept_login(data_root: Path) -> None:
    (data_root / "stack").mkdir(parents=True)
    (data_root / "stack" / MLFLOW_SERVER_FILE).write_text("http://127.0.0.1:5999 fracatlas s3cret\n")


def test_the_stacks_own_server_gets_its_own_login_not_the_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kept_login(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone-elses")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "their-password")
    own = Settings(DATA_ROOT=tmp_path)
    assert own.tracking_uri == "http://127.0.0.1:5999" and own.tracking_credentials == ("fracatlas", "s3cret")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    named = Settings(DATA_ROOT=tmp_path)
    assert named.tracking_credentials == ("someone-elses", "their-password"), "the named server's login"
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    assert Settings(DATA_ROOT=tmp_path).tracking_credentials == (None, "")


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_refused_login_is_named_and_an_accepted_or_unreachable_one_is_not(stack: Stack) -> None:
    settings = Settings(DATA_ROOT=stack.data_root)
    url = settings.tracking_uri
    assert url is not None
    assert refused_login(url, *settings.tracking_credentials) is None
    refused = refused_login(url, "intruder", "wrong")
    assert refused is not None and "refused the credentials of user intruder (401)" in refused
    assert "wrong" not in refused, "never the password"
    assert refused_login(f"http://127.0.0.1:{free_port()}", "intruder", "wrong", timeout=2) is None, "an outage"


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_make_up_refuses_a_login_its_named_server_refuses_before_anything_starts(stack: Stack, tmp_path: Path) -> None:
    url = Settings(DATA_ROOT=stack.data_root).tracking_uri
    assert url is not None
    env = {
        **stack.env,
        "DATA_ROOT": str(tmp_path / "other"),
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": "intruder",
        "MLFLOW_TRACKING_PASSWORD": "wrong",
    }
    env.pop("DATABASE_URL")
    started = subprocess.run(
        [sys.executable, "-m", "services.local.stack", "up"], env=env, cwd=PROJECT, capture_output=True, text=True
    )
    assert started.returncode == 1 and "refused the credentials of user intruder (401)" in started.stderr
    assert "Traceback" not in started.stderr
    assert not list((tmp_path / "other").rglob("*.conf")), "no supervisord configuration, nothing started"
