"""One scale's super-resolution network, from pairs to scored model (docs/superres.md); its task registers it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.contract import SuperResRequest
from workers.device import torch_device
from workers.superres.evaluate import evaluate, sample_crops
from workers.superres.network import NetworkShape, parameter_count, save_model
from workers.superres.pairs import make_pairs
from workers.superres.train import Step, TrainSettings, train
from workers.tracking.job import JobTracking

CHECKPOINT = "checkpoint_latest.pth"


@dataclass(frozen=True)
class TrainedScale:
    metrics: dict[str, Any]  # the job's: the network, its training and its scores
    artifacts: dict[str, str]  # model, samples_png
    scores: dict[str, Any]  # against bicubic and Lanczos on the held-out pictures: the run's summary


def model_file(folder: Path, scale: int) -> Path:
    return folder / f"superres_x{scale}" / f"model_x{scale}.pth"


def _curve(step: dict[str, float]) -> dict[str, float]:
    return {"l1_loss": step["loss"], "val_psnr": step["val_psnr"], "crops_per_s": step["crops_per_s"]}


def train_scale(
    request: SuperResRequest,
    scale: int,
    run_id: int,
    run_folder: Path,
    progress: Callable[..., None],
    tracking: JobTracking,
    check: Callable[[], None],
) -> TrainedScale:
    """The network of `scale` for the sr-train run `run_id`, in `run_folder`."""
    progress(0, request.iterations, f"x{scale}: pairs from the large pictures of {request.source}", force=True)
    pairs = make_pairs(
        Path(request.source), scale, request.small_long_side, request.min_long_side, request.held_out, request.seed
    )
    folder = model_file(run_folder, scale).parent
    device = torch_device()  # the worker's GPU, or the CPU of a CPU-backed gpu-queue worker

    def on_step(step: Step) -> None:
        progress(
            step.iteration,
            step.iterations,
            f"x{scale}: iteration {step.iteration}/{step.iterations}, L1 {step.loss:.4f}, held-out PSNR "
            f"{step.val_psnr:.2f} dB, {step.crops_per_s:.0f} crops/s",
            force=True,
        )
        tracking.metrics(_curve(step.__dict__), step=step.iteration)

    settings = TrainSettings(
        request.iterations, request.patch, request.batch_size, request.learning_rate, request.save_every, request.seed
    )
    shape = NetworkShape(scale, request.features, request.blocks)

    def on_resume(history: list[dict[str, float]]) -> None:
        """What a killed attempt saved but may not have sent, before the new steps: the outbox skips the steps
        MLflow has already, and any step below the newest it has."""
        for entry in history:
            tracking.metrics(_curve(entry), step=entry["iteration"])

    trained = train(
        shape, settings, pairs.train, pairs.held_out, folder / CHECKPOINT, device, on_step, check, on_resume
    )
    model = trained.model
    progress(request.iterations, request.iterations, f"x{scale}: scoring {len(pairs.held_out)} held-out pictures")
    figures = evaluate(model, pairs.held_out, device)
    held_out = sorted(pair.name for pair in pairs.held_out)
    about = {"run": f"r{run_id}", "small_long_side": request.small_long_side, "held_out": held_out}
    model_path = model_file(run_folder, scale)
    save_model(model, model_path, about)
    samples = sample_crops(model, pairs.held_out, device, folder / f"samples_x{scale}.png")
    metrics = {
        "scale": scale,
        "parameters": parameter_count(model),
        "train_pictures": len(pairs.train),
        "held_out": held_out,
        "resumed_at": trained.resumed_at,
        "history": trained.history,
        **figures,
    }
    artifacts = {"model": str(model_path), "samples_png": str(samples)}
    scores = {key: value for key, value in figures.items() if key != "held_out_pictures"}
    return TrainedScale(metrics, artifacts, scores)
