"""`dispatch sr-train` through the job system on a CPU-backed gpu-queue worker (the mini set's large
pictures, a tiny network): progress, a worker killed and the job resumed from its checkpoint, the figures
against bicubic checked with scikit-image, MLflow; then `dispatch ingest --upscale sr` and the bad inputs."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import STALL_S, Stack, wait_for
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from test_nnunet_training import descendants, show
from tracking_reads import mlflow_client, mlflow_run_of, nested_runs, steps, uploaded, versions_of, wait_for_mlflow

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

DATASET = 430
# A tiny network on small crops: seconds per hundred iterations on a CPU, long enough to be killed midway.
TINY = ("--patch", "16", "--batch-size", "4", "--features", "8", "--blocks", "1", "--save-every", "10")
ITERATIONS = 1500


@pytest.fixture(scope="module")
def trained(stack: Stack, mini: Path) -> dict:
    """A sr-train run whose worker is killed after its first checkpoints; the job resumes and finishes."""
    started = stack.dispatch(
        "sr-train",
        "--source",
        str(mini),
        "--dataset-id",
        str(DATASET),
        "--iterations",
        str(ITERATIONS),
        *TINY,
        "--json",
    )
    assert started.returncode == 0, started.stderr
    run = json.loads(started.stdout)
    (ref,) = (job["ref"] for job in run["jobs"])
    job = wait_for(
        lambda: (j := show(stack, ref))["progress"]["step"] >= 30 and j,
        STALL_S,
        "three checkpoints",
        progress=stack.work,
    )
    assert job["progress"]["step"] < ITERATIONS, "the job must still be running when its worker is killed"
    workers = json.loads(stack.dispatch("workers", "--json").stdout)
    victim = next(row["pid"] for row in workers if row["worker"] == job["worker"])
    for pid in [victim, *descendants(victim)]:
        os.kill(pid, signal.SIGKILL)
    finished = wait_for(
        lambda: (r := show(stack, run["ref"]))["state"] not in ("queued", "running") and r,
        STALL_S,
        "r",
        progress=stack.work,
    )
    assert finished["state"] == "succeeded", finished.get("error")
    return {"run": finished, "killed_at": job["progress"]["step"]}


def test_sr_train_resumes_after_its_worker_is_killed(trained: dict) -> None:
    (job,) = trained["run"]["jobs"]
    assert job["attempt"] == 2 and job["kind"] == "superres"
    metrics = job["metrics"]
    # From a checkpoint no older than the progress seen before the kill (it went on while the kill was aimed).
    assert trained["killed_at"] <= metrics["resumed_at"] < ITERATIONS and metrics["resumed_at"] % 10 == 0
    iterations = [entry["iteration"] for entry in metrics["history"]]
    assert iterations == list(range(10, ITERATIONS + 1, 10)), "every checkpoint once, none lost or repeated"
    assert "held-out PSNR" in job["progress"]["message"] or "scoring" in job["progress"]["message"]


def test_the_figures_are_scikit_images_on_the_held_out_pictures(trained: dict, mini: Path) -> None:
    import torch

    from workers.superres.evaluate import classical_upscale
    from workers.superres.network import load_model, upscale
    from workers.superres.pairs import make_pairs

    (job,) = trained["run"]["jobs"]
    metrics = job["metrics"]
    pairs = make_pairs(mini, 2, 454, 1024, 0.2, 0)
    assert sorted(pair.name for pair in pairs.held_out) == metrics["held_out"] and metrics["held_out_pictures"] >= 1
    assert not {pair.name for pair in pairs.train} & set(metrics["held_out"]), "never trained on"
    model, about = load_model(Path(job["artifacts"]["model"]))
    assert about["run"] == trained["run"]["ref"]

    def mean_psnr(upscaled: list[np.ndarray]) -> float:
        found = [
            peak_signal_noise_ratio(pair.truth[2:-2, 2:-2], image[2:-2, 2:-2], data_range=255)
            for pair, image in zip(pairs.held_out, upscaled, strict=True)
        ]
        return float(np.mean(found))

    bicubic = mean_psnr([classical_upscale(pair.small, 2, "bicubic") for pair in pairs.held_out])
    network = mean_psnr([upscale(model, pair.small, torch.device("cpu")) for pair in pairs.held_out])
    assert metrics["bicubic_psnr"] == pytest.approx(bicubic, abs=1e-6)
    assert metrics["network_psnr"] == pytest.approx(network, abs=1e-6)
    assert metrics["psnr_gain_over_bicubic"] == pytest.approx(network - bicubic, abs=1e-6)
    ci = metrics["psnr_gain_over_bicubic_ci"]
    assert ci["low"] <= metrics["psnr_gain_over_bicubic"] <= ci["high"]
    for key in ("lanczos_psnr", "bicubic_ssim", "network_ssim", "ssim_gain_over_bicubic"):
        assert key in metrics
    samples = Image.open(job["artifacts"]["samples_png"])
    assert samples.format == "PNG" and samples.width > samples.height / 2


def test_sr_train_is_shown_and_tracked(trained: dict, system: Stack) -> None:
    run = trained["run"]
    shown = system.dispatch("show", run["ref"]).stdout
    assert "superres x2" in shown and "psnr_gain_over_bicubic" in shown
    parent = mlflow_run_of(system, run)
    jobs = wait_for_mlflow(system, lambda: nested_runs(system, parent), "the job's MLflow run")
    (job_run,) = jobs.values()
    history = steps(system, job_run.info.run_id, "val_psnr")
    assert history == list(range(10, ITERATIONS + 1, 10)), "each checkpoint's validation once, across the resume"
    uploaded(system, job_run.info.run_id, {"superres/model_x2.pth"}, "superres")
    mine = versions_of(system, f"Dataset{DATASET}_FracAtlas-superres-x2", run["ref"])
    assert len(mine) == 1 and float(mine[0].tags["psnr_gain_over_bicubic"]) == pytest.approx(
        run["metrics"]["superres x2"]["psnr_gain_over_bicubic"], abs=1e-3
    )


def test_ingest_upscales_with_the_network_and_records_it(trained: dict, system: Stack, release) -> None:  # noqa: ANN001
    folder = release(fractured=4, non_fractured=2)
    models = {"2": trained["run"]["jobs"][0]["artifacts"]["model"]}
    # `sr`: the newest sr-train run's networks (the run is cancelled at once: only its request is looked at)
    args = ("ingest", "--source", str(folder), "--size", "600")
    newest = json.loads(system.dispatch(*args, "--dataset-id", str(DATASET + 3), "--upscale", "sr", "--json").stdout)
    assert system.dispatch("cancel", newest["ref"]).returncode == 0
    assert newest["params"]["upscale_models"] == models
    # sr:NAME: the run of the registered model's newest version
    name = f"Dataset{DATASET}_FracAtlas-superres-x2"
    wait_for_mlflow(system, lambda: mlflow_client(system).search_model_versions(f"name='{name}'"), "the version")
    result = system.dispatch(*args, "--dataset-id", str(DATASET + 1), "--upscale", f"sr:{name}", "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 0, run.get("error")
    assert run["params"]["upscale_models"] == models
    with open(run["artifacts"]["manifest"]) as handle:
        rows = list(csv.DictReader(handle))
    expected = f"sr x2 ({trained['run']['ref']})"
    assert rows and all(row["upscaled"] == expected for row in rows), {row["upscaled"] for row in rows}
    assert run["metrics"]["upscaled_pictures"] == len(rows) and run["metrics"]["upscale"] == f"sr:{name}"


def test_bad_upscale_choices_are_refused_by_name(trained: dict, system: Stack, release) -> None:  # noqa: ANN001
    folder = str(release(fractured=4, non_fractured=2))
    runs = lambda: [row["id"] for row in json.loads(system.dispatch("jobs", "--all", "--json").stdout)]  # noqa: E731
    before = runs()
    for choice, message in (
        ("sr:r99999", "r99999"),
        ("lanczos", "--upscale"),
        ("sr:NoSuchModel/3", "NoSuchModel/3"),
    ):
        result = system.dispatch("ingest", "--source", folder, "--dataset-id", "432", "--upscale", choice)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert runs() == before, "no run was recorded"


def test_sr_train_on_a_release_without_large_pictures_fails_by_name(system: Stack, release) -> None:  # noqa: ANN001
    folder = release(fractured=4, non_fractured=2)
    result = system.dispatch("sr-train", "--source", str(folder), *TINY, "--wait", "--json")
    run = json.loads(result.stdout)
    assert result.returncode == 1 and run["state"] == "failed"
    assert str(folder) in run["error"] and "1024 px or more" in run["error"]
