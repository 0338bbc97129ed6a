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


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_job_meeting_a_refused_login_says_so_once_and_its_spool_waits_for_a_new_login(
    stack: Stack, db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The stack's MLflow, the job table and spool of this test (its DATA_ROOT is not the stack's, whose reaper
    would replay the spool with the stack's own login)."""
    from conftest import reset_caches, wait_for

    from shared import jobs
    from shared.db.engine import session_scope
    from shared.db.models import State
    from workers.tracking import client, rows
    from workers.tracking.outbox import Outbox, replay_spool, spool_folder

    url, user, password = (stack.data_root / "stack" / MLFLOW_SERVER_FILE).read_text().split()
    with session_scope() as session:
        run = jobs.create_run(session, "ingest", {"dataset_id": 422})
        job = jobs.add_job(session, run.id, "plan", "plan ingest", "ingest.plan", {}, State.SUCCEEDED)
        run_id, job_id = run.id, job.id

    def login(username: str, secret: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", secret)
        reset_caches()
        client.client.cache_clear()

    said = f"MLflow refused the credentials of user intruder (401) at {url}"
    login("intruder", "wrong")
    outbox = Outbox("refused")
    with caplog.at_level("INFO"):
        for step in (1, 2):
            outbox.put({"kind": "metrics", "job": job_id, "run": run_id, "values": [["figure", 0.5, 1, step]]})
        wait_for(lambda: said in caplog.text, 60, "the refusal to be said")
        assert outbox.close(timeout=3) == 2, "both entries kept in the spool"
        (spooled,) = spool_folder().glob("*-refused-*.jsonl")
        assert replay_spool() == 0 and spooled.exists(), "not sent again with the login the server refused"
    assert caplog.text.count(said) == 1 and "does not answer" not in caplog.text, "said once, not as an outage"
    assert "wrong" not in caplog.text

    login(user, password)  # the login changed: the spool goes out
    assert replay_spool() == 2 and not spooled.exists()
    history = client.client().get_metric_history(rows.tracking_ids(job_id=job_id), "figure")
    assert sorted(point.step for point in history) == [1, 2]
    client.client.cache_clear()
