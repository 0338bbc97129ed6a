"""One `sr-train` job: one scale's network from pairs to registered version (docs/superres.md)."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.contract import SuperResRequest
from workers import nnunet
from workers.gpu.superres.evaluate import evaluate, sample_crops
from workers.gpu.superres.network import NetworkShape, parameter_count, save_model
from workers.gpu.superres.pairs import make_pairs
from workers.gpu.superres.train import Step, TrainSettings, train
from workers.runtime import JobContext, Outcome
from workers.tracking.publish import publish_superres

CHECKPOINT = "checkpoint_latest.pth"


def model_file(folder: Path, scale: int) -> Path:
    return folder / f"superres_x{scale}" / f"model_x{scale}.pth"


def _curve(step: dict[str, float]) -> dict[str, float]:
    return {"l1_loss": step["loss"], "val_psnr": step["val_psnr"], "crops_per_s": step["crops_per_s"]}


def train_scale(ctx: JobContext) -> Outcome:
    request = SuperResRequest.parse(ctx.run_params)
    scale = int(ctx.params["scale"])
    ctx.progress(0, request.iterations, f"x{scale}: pairs from the large pictures of {request.source}", force=True)
    pairs = make_pairs(
        Path(request.source), scale, request.small_long_side, request.min_long_side, request.held_out, request.seed
    )
    folder = model_file(ctx.folder, scale).parent
    device = torch.device(nnunet.device())  # the worker's GPU, or the CPU of a CPU-backed gpu-queue worker

    def on_step(step: Step) -> None:
        ctx.progress(
            step.iteration,
            step.iterations,
            f"x{scale}: iteration {step.iteration}/{step.iterations}, L1 {step.loss:.4f}, held-out PSNR "
            f"{step.val_psnr:.2f} dB, {step.crops_per_s:.0f} crops/s",
            force=True,
        )
        ctx.tracking.metrics(_curve(step.__dict__), step=step.iteration)

    settings = TrainSettings(
        request.iterations, request.patch, request.batch_size, request.learning_rate, request.save_every, request.seed
    )
    shape = NetworkShape(scale, request.features, request.blocks)

    def on_resume(history: list[dict[str, float]]) -> None:
        """What a killed attempt saved but may not have sent, before the new steps: the outbox skips the steps
        MLflow has already, and any step below the newest it has."""
        for entry in history:
            ctx.tracking.metrics(_curve(entry), step=entry["iteration"])

    trained = train(
        shape, settings, pairs.train, pairs.held_out, folder / CHECKPOINT, device, on_step, ctx.check, on_resume
    )
    model = trained.model
    ctx.progress(request.iterations, request.iterations, f"x{scale}: scoring {len(pairs.held_out)} held-out pictures")
    figures = evaluate(model, pairs.held_out, device)
    held_out = sorted(pair.name for pair in pairs.held_out)
    about = {"run": f"r{ctx.run_id}", "small_long_side": request.small_long_side, "held_out": held_out}
    model_path = model_file(ctx.folder, scale)
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
    publish_superres(ctx.tracking, ctx.run_id, request.dataset_id, scale, metrics, artifacts)
    summary = {key: value for key, value in figures.items() if key != "held_out_pictures"}
    return Outcome(
        metrics=metrics,
        artifacts=artifacts,
        run_metrics={f"superres x{scale}": summary},
        run_artifacts={f"model x{scale}": str(model_path), f"samples x{scale}": str(samples)},
    )
