"""Train the classifier with the whole set on the device: no DataLoader, no decoding after ingest.

On CUDA: bf16 autocast and channels_last. Class imbalance is met with class weights in the loss; the
epoch with the best validation ROC AUC is kept, and training stops after `patience` epochs without a
better one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workers.classifier.augment import augment, normalise
from workers.classifier.metrics import roc_auc
from workers.learning_rate import warmup_cosine

EVAL_BATCH = 512


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10
    seed: int = 0
    augment: float = 1.0  # augmentation strength (augment.py)


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    val_auc: float | None
    images_per_s: float
    seconds: float


@dataclass
class Trained:
    model: nn.Module  # at its best epoch
    best_epoch: int
    best_val_auc: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    train_images_per_s: float = 0.0  # median over epochs, after the first (warm-up)


def _autocast(device: torch.device) -> Any:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    """Inverse class frequency, so that the rarer class (fractures: 18% of FracAtlas) weighs as much."""
    counts = torch.bincount(labels, minlength=2).clamp(min=1).float()
    return counts.sum() / (2 * counts)


@torch.no_grad()
def predict_scores(model: nn.Module, images: torch.Tensor, device: torch.device) -> np.ndarray:
    """Fracture probability for each (C, H, W) uint8 image of `images` (already on `device`)."""
    model.eval()
    scores = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = normalise(images[start : start + EVAL_BATCH])
        if device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            logits = model(batch)
        scores.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
    return torch.cat(scores).numpy() if scores else np.zeros(0)


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    train_index: torch.Tensor,
    val_index: torch.Tensor,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None],
    check: Callable[[], None],
) -> Trained:
    """`images` (N, C, H, W) uint8 and `labels` (N,) live on the training device already; `check` raises
    when the job must stop."""
    device = images.device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train_index) // config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, warmup_cosine(config.epochs * steps_per_epoch))
    weights = class_weights(labels[train_index])
    val_labels = labels[val_index].cpu().numpy()
    best_model, best_epoch, best_auc = copy.deepcopy(model), 0, None
    history: list[dict[str, Any]] = []
    stale, speeds = 0, []
    for epoch in range(1, config.epochs + 1):
        model.train()
        _synchronise(device)
        started = time.perf_counter()
        order = train_index[torch.randperm(len(train_index), device=device, generator=generator)]
        losses = torch.zeros((), device=device)
        # Full batches only: a trailing batch of one would break batch normalisation.
        batches = order[: steps_per_epoch * config.batch_size].view(steps_per_epoch, -1)
        for batch_index in batches:
            check()
            x = augment(images[batch_index], generator, config.augment)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                loss = F.cross_entropy(model(x).float(), labels[batch_index], weight=weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses += loss.detach()
        _synchronise(device)
        seconds = time.perf_counter() - started
        speeds.append(batches.numel() / seconds)
        val_auc = roc_auc(val_labels, predict_scores(model, images[val_index], device))
        if best_epoch == 0 or (val_auc is not None and (best_auc is None or val_auc > best_auc)):
            best_model, best_epoch, best_auc, stale = copy.deepcopy(model), epoch, val_auc, 0
        else:
            stale += 1
        report = EpochReport(epoch, config.epochs, float(losses) / len(batches), val_auc, speeds[-1], seconds)
        history.append(dict(report.__dict__))
        on_epoch(report)
        if stale >= config.patience:
            break
    return Trained(best_model, best_epoch, best_auc, history, float(np.median(speeds[1:] or speeds)))
