"""One classifier training job from start to report: data, split, model, training, test metrics, files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.contract import ClassifyRequest
from shared.defaults import IMAGE_SEG
from shared.layout import segmentation_channel_file
from shared.settings import Settings
from workers.gpu.classifier.data import TEST, TRAIN, VAL, load_set, stratified_split
from workers.gpu.classifier.metrics import binary_metrics, choose_threshold
from workers.gpu.classifier.model import initial_model
from workers.gpu.classifier.plots import confusion_png, pr_png, roc_png
from workers.gpu.classifier.train import EpochReport, TrainConfig, predict_scores, train
from workers.nnunet import device


def training_device() -> torch.device:
    """The worker's device: its GPU, or the CPU for a CPU-backed gpu-queue worker (as for nnU-Net)."""
    return torch.device(device())


def fit_classifier(
    settings: Settings,
    request: ClassifyRequest,
    out: Path,
    on_epoch: Callable[[EpochReport], None],
    check: Callable[[], None],
) -> tuple[dict[str, Any], dict[str, str]]:
    classification = load_set(settings.layout.classification_cache(request.dataset_id))
    split = stratified_split(
        classification.labels, classification.regions, request.val_fraction, request.test_fraction, request.seed
    )
    channels = [np.asarray(classification.images)]
    if request.input == IMAGE_SEG:
        assert request.seg_run is not None
        channels.append(np.load(segmentation_channel_file(classification.folder, request.seg_run)))
    device = training_device()
    images = torch.from_numpy(np.stack(channels, axis=1)).to(device)
    labels = torch.from_numpy(classification.labels).to(device)
    index = {part: torch.tensor(indices, device=device) for part, indices in split.items()}
    model = initial_model(len(channels), request.weights)
    config = TrainConfig(
        request.epochs, request.batch_size, request.learning_rate, patience=request.patience, seed=request.seed
    )
    trained = train(model, images, labels, index[TRAIN], index[VAL], config, on_epoch, check)

    val_scores = predict_scores(trained.model, images[index[VAL]], device)
    test_scores = predict_scores(trained.model, images[index[TEST]], device)
    threshold = choose_threshold(classification.labels[split[VAL]], val_scores)
    test_labels = classification.labels[split[TEST]]
    test = binary_metrics(test_labels, test_scores, threshold)

    out.mkdir(parents=True, exist_ok=True)
    tag = request.input.replace("+", "_")
    checkpoint = out / f"classifier_{tag}.pt"
    torch.save(
        {
            "state_dict": {key: value.cpu() for key, value in trained.model.state_dict().items()},
            "input": request.input,
            "channels": len(channels),
            "size": classification.size,
            "threshold": threshold,
            "dataset_id": request.dataset_id,
            "seg_run": request.seg_run,
        },
        checkpoint,
    )
    split_file = out / "classification_split.json"
    split_file.write_text(
        json.dumps({part: [classification.image_ids[i] for i in indices] for part, indices in split.items()})
    )
    title = f"ResNet18 ({request.input}), test split"
    metrics = {
        "input": request.input,
        "test": test,
        "validation": binary_metrics(classification.labels[split[VAL]], val_scores, threshold),
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.history),
        "best_val_auc": trained.best_val_auc,
        "train_images_per_s": round(trained.train_images_per_s, 1),
        "history": trained.history,
        "device": str(device),
        "split": {part: len(indices) for part, indices in split.items()},
        "request": request.params(),
    }
    artifacts = {
        "checkpoint": str(checkpoint),
        "roc_png": str(roc_png(out / f"roc_{tag}.png", test_labels, test_scores, test["roc_auc"], title)),
        "pr_png": str(pr_png(out / f"pr_{tag}.png", test_labels, test_scores, test["pr_auc"], title)),
        "confusion_png": str(confusion_png(out / f"confusion_{tag}.png", test["confusion"], threshold, title)),
        "split": str(split_file),
    }
    return metrics, artifacts
