"""`dispatch` against the real local stack: redis-server, Celery workers, beat and Flower, on SQLite and
Postgres."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FLOWER_PASSWORD, PROJECT, Stack, wait_for

from shared.tasknames import INGEST_PLAN


def ingest(system: Stack, source: Path, dataset_id: int, *extra: str) -> tuple[int, dict]:
    result = system.dispatch(
        "ingest", "--source", str(source), "--dataset-id", str(dataset_id), "--wait", "--json", *extra
    )
    assert "Traceback" not in result.stderr + result.stdout
    return result.returncode, json.loads(result.stdout)


def ingest_params(source: Path, dataset_id: int) -> dict:
    """The run parameters `dispatch ingest` would record, for runs these tests create in-process."""
    return {
        "source": str(source),
        "dataset_id": dataset_id,
        "size": 64,
        "test_fraction": 0.2,
        "seed": 0,
        "split": "stratified",
        "overwrite": False,
    }


HEAVY = ("torch", "torchvision", "nnunetv2", "numpy", "PIL", "nibabel", "pycocotools", "workers")


def test_the_dispatcher_imports_only_shared_and_its_libraries() -> None:
    """Every dispatcher module and every command's --help, in a fresh interpreter: nothing of the workers
    and none of their libraries is loaded (a change inside a worker cannot break the CLI)."""
    modules = sorted(path.stem for path in (PROJECT / "services" / "dispatcher").glob("*.py"))
    probe = f"""
import importlib, sys
from click.testing import CliRunner
for name in {modules!r}:
    importlib.import_module("services.dispatcher." + name)
from services.dispatcher.cli import main
for command in [[], *([name] for name in main.commands)]:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, (command, result.output)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ingest_wait_builds_the_dataset_through_the_workers(system: Stack, release: Callable[..., Path]) -> None:
    code, run = ingest(system, release(fractured=12, non_fractured=4), 101)
    assert code == 0, run["error"]
    assert run["state"] == "succeeded"
    kinds = [job["kind"] for job in run["jobs"]]
    assert kinds[0] == "plan" and kinds[-1] == "assemble" and kinds.count("convert") >= 2
    assert all(job["state"] == "succeeded" and job["attempt"] == 1 for job in run["jobs"])
    assert {job["worker"] for job in run["jobs"]} == {next(iter({j["worker"] for j in run["jobs"]}))}
    assert run["jobs"][0]["worker"].startswith("cpu@")
    dataset = Path(run["artifacts"]["dataset"])
    assert dataset == system.data_root / "nnUNet_raw" / "Dataset101_FracAtlas"
    assert run["metrics"]["cases"] == 16 and run["metrics"]["images"] == 16
    assert run["metrics"]["positive_cases"] == 12 and run["metrics"]["negative_cases"] == 4, "--negatives 1, capped"
    described = json.loads((dataset / "dataset.json").read_text())
    assert described["labels"] == {"background": 0, "fracture": 1}
    assert described["numTraining"] == len(list((dataset / "labelsTr").iterdir()))
    assert len(list((dataset / "imagesTs").iterdir())) == len(list((dataset / "labelsTs").iterdir())) >= 1
    assert not (system.data_root / "staging" / f"run-{run['id']}").exists()
    assert any("truncated" in warning for warning in run["metrics"]["warnings"])

    table = system.dispatch("jobs", "--run", run["ref"])
    assert table.returncode == 0 and "assemble" in table.stdout and "succeeded" in table.stdout
    shown = system.dispatch("show", run["ref"])
    assert "Dataset101_FracAtlas" in shown.stdout and "warnings" in shown.stdout
    job = json.loads(system.dispatch("show", run["jobs"][1]["ref"], "--json").stdout)
    assert job["progress"]["step"] == job["progress"]["total"] > 0


def test_workers_lists_queues_and_gpus(system: Stack) -> None:
    rows = json.loads(system.dispatch("workers", "--json").stdout)
    (cpu,) = [row for row in rows if row["queues"] == ["cpu"]]
    assert cpu["worker"].startswith("cpu@") and cpu["concurrency"] == 2
    gpu_workers = sorted((row for row in rows if row["queues"] == ["gpu"]), key=lambda row: row["worker"])
    assert [row["worker"].split("@")[0] for row in gpu_workers] == ["gpu0", "gpu1"]
    assert all(row["concurrency"] == 1 for row in gpu_workers)
    assert all(row["gpu"] == "" for row in gpu_workers), (
        "with no GPU they train on the CPU (CUDA_VISIBLE_DEVICES empty)"
    )


def test_a_second_delivery_of_one_message_runs_once(system: Stack, release: Callable[..., Path]) -> None:
    from services.dispatcher.submit import submit
    from shared import jobs
    from shared.enqueue import send
    from shared.jobs import JobSpec
    from shared.read_model import get_run

    params = ingest_params(release(), 102)
    run_id = submit("ingest", params, [JobSpec("plan", "plan ingest", INGEST_PLAN)])
    plan_job = get_run(run_id)["jobs"][0]
    send(jobs.JobRef(plan_job["id"], 1, INGEST_PLAN, "cpu", plan_job["celery_task_id"]))  # the duplicate
    run = wait_for(lambda: (r := get_run(run_id))["state"] in ("succeeded", "failed") and r, what="the run")
    assert run["state"] == "succeeded", run["error"]
    assert sum(1 for job in run["jobs"] if job["kind"] == "plan") == 1
    converts = [job for job in run["jobs"] if job["kind"] == "convert"]
    covered = sum(job["params"]["stop"] - job["params"]["start"] for job in converts)
    assert covered == run["metrics"]["images"], "each picture converted by exactly one chunk job"
    wait_for(
        lambda: f"dropped a delivery of job {plan_job['id']} attempt 1" in system.log("cpu-worker"),
        what="the worker's log line about the dropped duplicate",
    )


def test_reaper_requeues_the_job_of_a_dead_worker(system: Stack, release: Callable[..., Path]) -> None:
    """A plan job held by a worker that died: the beat-driven reaper re-sends it as attempt 2."""
    from shared import jobs
    from shared.db.engine import session_scope
    from shared.read_model import get_run

    params = ingest_params(release(), 103)
    with session_scope() as session:
        run = jobs.create_run(session, "ingest", params)
        job_id = jobs.add_job(session, run.id, "plan", "plan ingest", INGEST_PLAN).id
        run_id = run.id
    assert jobs.claim(job_id, 1, "dead@nowhere", None)  # ...and that worker never beats again
    run = wait_for(
        lambda: (r := get_run(run_id))["state"] in ("succeeded", "failed") and r,
        timeout=60,
        what="the reaper to re-queue and a worker to finish the run",
    )
    assert run["state"] == "succeeded", run["error"]
    plan_job = run["jobs"][0]
    assert plan_job["attempt"] == 2 and plan_job["worker"].startswith("cpu@")


def test_cancel_marks_the_run_and_its_queued_message_is_dropped(system: Stack, release: Callable[..., Path]) -> None:
    from shared import jobs
    from shared.db.engine import session_scope
    from shared.enqueue import send
    from shared.read_model import get_run

    with session_scope() as session:
        run = jobs.create_run(session, "ingest", {"source": str(release()), "dataset_id": 104})
        ref = jobs.ref(jobs.add_job(session, run.id, "plan", "plan ingest", INGEST_PLAN))
        run_id = run.id
    result = system.dispatch("cancel", f"r{run_id}")
    assert result.returncode == 0 and "1 open job(s) cancelled" in result.stdout
    send(ref)  # a message still on its way when the cancel came: its task id was revoked with the job
    wait_for(
        lambda: f"Discarding revoked task: {INGEST_PLAN}[{ref.task_id}]" in system.log("cpu-worker"),
        what="the worker to discard the cancelled job's message",
    )
    run = get_run(run_id)
    assert run["state"] == "cancelled" and run["jobs"][0]["state"] == "cancelled"
    assert not (system.data_root / "nnUNet_raw" / "Dataset104_FracAtlas").exists()


def test_dispatch_errors_are_one_clear_line(system: Stack, tmp_path: Path) -> None:
    missing = system.dispatch("ingest", "--source", str(tmp_path / "nowhere"))
    assert (
        missing.returncode == 2
        and "is neither a folder nor a .zip" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    unknown = system.dispatch("show", "r99999")
    assert unknown.returncode == 1 and "no run r99999 in the job table" in unknown.stderr
    bad_ref = system.dispatch("show", "x1")
    assert bad_ref.returncode == 2 and "neither a run" in bad_ref.stderr
    for arguments, message in (
        ((), "give the radiographs (files or folders), or a PACS study with --pacs URL --study UID"),
        (("--study", "1.2.3"), "give the radiographs"),
        ((str(tmp_path), "--pacs", "http://pacs/dicom-web"), "predict files or a PACS study, not both"),
        (("--pacs", "http://pacs/dicom-web"), "--pacs needs the study to predict: --study UID"),
        ((str(tmp_path), "--store"), "--store goes with --pacs URL"),
        (("--pacs", "http://pacs/dicom-web", "--study", "1.2", "--keep-local"), "--keep-local goes with --store"),
        (("--pacs", "http://pacs/dicom-web", "--study", "1.2", "--series"), "requires an argument"),
        (("--pacs", "http://radiology:pw@pacs/dicom-web", "--study", "1.2"), "--pacs holds a login"),
    ):
        refused = system.dispatch("predict", *arguments)
        assert refused.returncode in (1, 2) and message in refused.stderr and "Traceback" not in refused.stderr


def test_dispatch_names_an_unreachable_broker(system: Stack, release: Callable[..., Path]) -> None:
    env = {**system.env, "BROKER_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dispatch"), "ingest", "--source", str(release()), "--dataset-id", "105"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "cannot reach the broker at redis://127.0.0.1:1/0" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_services_are_named_without_their_passwords(
    system: Stack, release: Callable[..., Path], tmp_path: Path
) -> None:
    dispatch = str(Path(sys.executable).parent / "dispatch")
    broker = {**system.env, "BROKER_URL": "redis://:hunter2@127.0.0.1:1/0", "DISPATCH_RETRY_SECONDS": "2"}
    command = [dispatch, "ingest", "--source", str(release()), "--dataset-id", "106", "--json"]
    sent = subprocess.run(command, env=broker, capture_output=True, text=True, timeout=120)
    assert sent.returncode == 1 and "Traceback" not in sent.stderr
    assert "cannot reach the broker at redis://:***@127.0.0.1:1/0" in sent.stderr and "hunter2" not in sent.stderr
    from sqlalchemy import select

    from shared.db.engine import session_scope
    from shared.db.models import Job, Run

    with session_scope() as session:
        stored = [*session.scalars(select(Run.error)), *session.scalars(select(Job.error))]
    assert any("cannot reach the broker" in (text or "") for text in stored)
    assert not any("hunter2" in (text or "") for text in stored)

    database = {
        **system.env,
        "DATABASE_URL": "postgresql://fracatlas:hunter2@127.0.0.1:1/x",
        "DISPATCH_RETRY_SECONDS": "1",
    }
    started = time.monotonic()
    read = subprocess.run([dispatch, "jobs"], env=database, capture_output=True, text=True, timeout=60)
    assert read.returncode == 1 and "Traceback" not in read.stderr and "hunter2" not in read.stderr + read.stdout
    error = read.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: cannot use the job table at postgresql+psycopg://fracatlas:***@127.0.0.1:1/x (")
    assert 1 <= time.monotonic() - started < 30


def test_flower_asks_for_basic_auth(system: Stack) -> None:
    url = f"http://127.0.0.1:{system.env['FLOWER_PORT']}/api/workers"

    def status(headers: dict[str, str]) -> int:
        try:
            return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5).status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    wait_for(lambda: status({}) == 401, timeout=30, what="Flower to answer")
    token = b64encode(f"test:{FLOWER_PASSWORD}".encode()).decode()
    assert status({"Authorization": f"Basic {token}"}) == 200


def test_pipeline_chains_the_classifier_with_its_own_settings(system: Stack, release: Callable[..., Path]) -> None:
    source = str(release())
    result = system.dispatch(
        "pipeline", "--source", source, "--dataset-id", "106", "--epochs", "2", "--classifier-epochs", "3", "--json"
    )
    run = json.loads(result.stdout)
    assert system.dispatch("cancel", run["ref"]).returncode == 0
    # the plan job may already have added its convert and assemble jobs
    kinds = [job["kind"] for job in run["jobs"] if job["kind"] not in ("convert", "assemble")]
    assert kinds == ["plan", "preprocess", *["fold"] * 5, "evaluate", "channel", "classifier"]
    classifier = run["jobs"][-1]["params"]
    assert classifier["input"] == "image+seg" and classifier["epochs"] == 3, (
        "nnU-Net's --epochs are not the classifier's"
    )
    assert classifier["test_fraction"] == 0.15 and "seg_run" not in classifier, "the pipeline's own folds"
    assert run["jobs"][-1]["name"] == "ResNet18 image+seg" and classifier["backbone"] == "resnet18"
    some_folds = system.dispatch(
        "pipeline", "--source", source, "--dataset-id", "107", "--folds", "0-1", "--classifier-epochs", "3",
        "--backbone", "densenet121", "--weights", "none", "--json",
    )  # fmt: skip
    run = json.loads(some_folds.stdout)
    assert system.dispatch("cancel", run["ref"]).returncode == 0
    assert [job["params"].get("input") for job in run["jobs"][-1:]] == ["image"], "no out-of-fold map without all folds"
    last = run["jobs"][-1]
    assert last["name"] == "DenseNet121 image", "the job is named by its backbone"
    assert (last["params"]["backbone"], last["params"]["weights"]) == ("densenet121", "none")


def test_predict_takes_the_newest_run_that_trained_a_classifier(system: Stack) -> None:
    from shared import jobs
    from shared.contract import BadOption
    from shared.db.engine import session_scope
    from shared.db.models import State
    from shared.read_model import classifier_for_prediction

    def finished_run(kind: str, classifiers: dict[str, float]) -> int:
        with session_scope() as session:
            run = jobs.create_run(session, kind, {"dataset_id": 108})
            run.state = State.SUCCEEDED
            run.artifacts = {f"checkpoint {mode}": f"/models/{mode}.pt" for mode in classifiers}
            run.metrics = {f"classifier {mode}": {"best_val_auc": auc} for mode, auc in classifiers.items()}
            return run.id

    compared = finished_run("classify", {"image": 0.9, "image+seg": 0.7})
    pipeline = finished_run("pipeline", {"image+seg": 0.8})
    without = finished_run("pipeline", {})
    newest = classifier_for_prediction(None)
    assert (newest.run["id"], newest.input, newest.seg_run) == (pipeline, "image+seg", pipeline)
    named = classifier_for_prediction(compared)
    assert (named.input, named.checkpoint) == ("image", "/models/image.pt"), "the better validation AUC"
    with pytest.raises(BadOption, match="is not a finished run with a classifier"):
        classifier_for_prediction(without)


def test_the_ingest_builds_the_synthetic_release_itself(system: Stack) -> None:
    """`--source synthetic` (what `dispatch demo` asks for): the plan job builds the release under DATA_ROOT
    once; the dispatcher builds nothing."""
    code, run = ingest(system, Path("synthetic"), 109, "--size", "32")
    assert code == 0 and run["state"] == "succeeded", run["error"]
    assert run["params"]["source"] == "synthetic"
    release = system.data_root / "synthetic" / "FracAtlas"
    assert (release / "dataset.csv").is_file() and run["metrics"]["images"] == 40
    assert not list(release.parent.glob(".FracAtlas-*")), "built aside and renamed into place"
