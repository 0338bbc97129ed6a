"""MLflow beside the job system: a run goes on with the tracking server stopped and its figures arrive when
the server is back; the MLflow pages of a fold and of a run comparison, logged in, in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY_TRAINER, Stack, preprocess_training_dataset, require, wait_for
from conftest import TRAINING_DATASET as DATASET
from tracking_reads import logged_in_door, mlflow_client, mlflow_run_of, nested_runs

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def supervisorctl(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    conf = stack.data_root / "stack" / "supervisord.conf"
    command = [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def mlflow_answers(stack: Stack) -> bool:
    url = (stack.data_root / "stack" / "mlflow_server").read_text().split()[0]
    try:
        return urllib.request.urlopen(f"{url}/health", timeout=2).status == 200
    except OSError:
        return False


def test_a_run_goes_on_without_the_tracking_server_and_is_logged_when_it_is_back(
    system: Stack, release: Callable[..., Path]
) -> None:
    assert supervisorctl(system, "stop", "mlflow").returncode == 0
    try:
        result = system.dispatch("ingest", "--source", str(release()), "--dataset-id", "420", "--wait", "--json")
        run = json.loads(result.stdout)
        assert result.returncode == 0 and run["state"] == "succeeded", run["error"]
        assert "mlflow" not in run["artifacts"], "no MLflow run could be made"
        url = (system.data_root / "stack" / "mlflow_server").read_text().split()[0]
        said = f"tracking server {url} does not answer"
        wait_for(lambda: said in system.log("cpu-worker"), 30, "the worker to name the server")
    finally:
        assert supervisorctl(system, "start", "mlflow").returncode == 0
    wait_for(lambda: mlflow_answers(system), 120, "MLflow to answer again")
    parent = mlflow_run_of(system, run)
    assert parent.info.status == "FINISHED" and parent.data.params["dataset_id"] == "420"
    assert parent.data.metrics["images"] == run["metrics"]["images"]
    jobs = nested_runs(system, parent)
    assert set(jobs) == {job["name"] for job in run["jobs"]}, "every job, each once"
    shown = json.loads(system.dispatch("show", run["ref"], "--json").stdout)
    assert shown["artifacts"]["mlflow"].endswith(parent.info.run_id)


def test_what_a_process_could_not_send_is_spooled_and_replayed(system: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import reset_caches

    from shared import jobs
    from shared.db.engine import session_scope
    from shared.db.models import State
    from workers.tracking import client, rows
    from workers.tracking.outbox import Outbox, replay_spool

    with session_scope() as session:
        run = jobs.create_run(session, "ingest", {"dataset_id": 421})
        job = jobs.add_job(session, run.id, "plan", "plan ingest", "ingest.plan", {}, State.SUCCEEDED)
        run_id, job_id = run.id, job.id
    entry = {"kind": "metrics", "job": job_id, "run": run_id, "values": [["figure", 0.5, 1, 3]]}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing answers there
    reset_caches()
    client.client.cache_clear()
    outbox = Outbox("test")
    outbox.put(entry)
    assert outbox.close(timeout=3) == 1, "the entry went to the spool"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the stack's own server again
    reset_caches()
    client.client.cache_clear()

    def logged() -> list[tuple[int, float]]:
        replay_spool()  # this process, or the stack's reaper, whichever comes first
        job_run = rows.tracking_ids(job_id=job_id)
        history = mlflow_client(system).get_metric_history(job_run, "figure") if job_run else []
        return [(point.step, point.value) for point in history]

    assert wait_for(logged, 60, "the spool to be replayed") == [(3, 0.5)], "sent once"
    assert not list((system.data_root / "tracking" / "spool").glob("*-test-*")), "nothing left in the spool"
    client.client.cache_clear()


def a_trained_fold(system: Stack, scratch: Path) -> object:
    """A fold's MLflow run with its curves: one an earlier test trained, or a fold trained now."""
    client = mlflow_client(system)
    experiment = client.get_experiment_by_name(f"FracAtlas Dataset{DATASET}_FracAtlas")
    if experiment is not None:
        for found in client.search_runs([experiment.experiment_id], "tags.`fracatlas.kind` = 'fold'"):
            if client.get_metric_history(found.info.run_id, "pseudo_dice"):
                return found
    preprocess_training_dataset(system, scratch)
    result = system.dispatch("train", "--dataset-id", str(DATASET), "--folds", "0", *TINY_TRAINER, "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 0, run["error"]
    return nested_runs(system, mlflow_run_of(system, run))["fold 0"]


def chromium_page(url: str, screenshot: Path) -> str:
    """The page's DOM once its scripts and charts have run, and a screenshot of it, from headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"]
    common += ["--run-all-compositor-stages-before-draw", "--virtual-time-budget=90000"]
    shot = subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=240)
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-500:]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=240)
    assert dom.returncode == 0, dom.stderr[-500:]
    return dom.stdout


def test_mlflow_shows_a_folds_dice_chart_and_a_run_comparison(system: Stack, tmp_path: Path) -> None:
    """Screenshots are kept in the test's folder (fold.png, compare.png) to look at."""
    require(shutil.which("chromium") is not None, "chromium is not installed (apt-get install chromium)")
    fold = a_trained_fold(system, tmp_path / "release")
    door = logged_in_door(system)
    try:
        base = f"http://127.0.0.1:{door.server_address[1]}"
        experiment, parent = fold.info.experiment_id, fold.data.tags["mlflow.parentRunId"]
        page = chromium_page(
            f"{base}/#/experiments/{experiment}/runs/{fold.info.run_id}/model-metrics", tmp_path / "fold.png"
        )
        assert "not authenticated" not in page.lower() and "Can't load" not in page
        assert "pseudo_dice" in page and "pseudo_dice_ema" in page, "the fold's Dice charts"
        runs = f'["{fold.info.run_id}","{parent}"]'
        page = chromium_page(
            f'{base}/#/compare-runs?runs={runs}&experiments=["{experiment}"]', tmp_path / "compare.png"
        )
        assert "Comparing 2 Runs" in page and "pseudo_dice" in page and "cv_dice_mean" in page, "both runs' metrics"
    finally:
        door.shutdown()
