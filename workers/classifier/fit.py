"""One classifier from start to report, in three steps a sweep can take apart: the data on the device and
its split (`prepare`), training with the threshold chosen on the validation split (`fit`), and the test
split's metrics and pictures (`score_test`: a sweep scores only its best trial)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.contract import ClassifyRequest
from shared.defaults import BACKBONE_NAMES, IMAGE_SEG
from shared.layout import segmentation_channel_file
from shared.settings import Settings, get_settings
from workers.classifier.data import TEST, TRAIN, VAL, ClassificationSet, load_set, stratified_split
from workers.classifier.input_size import input_size, resized
from workers.classifier.metrics import binary_metrics, choose_threshold, threshold_for_specificity
from workers.classifier.model import initial_model
from workers.classifier.plots import confusion_png, pr_png, roc_png
from workers.classifier.train import EpochReport, TrainConfig, predict_scores, train
from workers.device import torch_device


@dataclass
class Prepared:
    """The set on the training device, and its split (the same for every request with the same seed)."""

    classification: ClassificationSet
    split: dict[str, list[int]]
    images: torch.Tensor  # (N, C, input size, input size) uint8
    labels: torch.Tensor
    index: dict[str, torch.Tensor]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def labels_of(self, part: str) -> np.ndarray:
        return self.classification.labels[self.split[part]]


@dataclass
class Fitted:
    model: nn.Module  # at its best epoch
    threshold: float  # chosen on the validation split
    checkpoint: Path
    metrics: dict[str, Any]  # everything but the test split's


def prepare(settings: Settings, request: ClassifyRequest) -> Prepared:
    classification = load_set(settings.layout.classification_cache(request.dataset_id))
    split = stratified_split(
        classification.labels,
        classification.regions,
        request.val_fraction,
        request.test_fraction,
        request.seed,
        classification.groups,
        classification.excluded,
    )
    channels = [np.asarray(classification.images)]
    if request.input == IMAGE_SEG:
        assert request.seg_run is not None
        channels.append(np.load(segmentation_channel_file(classification.folder, request.seg_run)))
    on = torch_device()
    size = input_size(request.input_size, classification.working_size)
    images = resized(torch.from_numpy(np.stack(channels, axis=1)).to(on), size)
    labels = torch.from_numpy(classification.labels).to(on)
    index = {part: torch.tensor(indices, device=on) for part, indices in split.items()}
    return Prepared(classification, split, images, labels, index)


def fit(
    data: Prepared,
    request: ClassifyRequest,
    out: Path,
    on_epoch: Callable[[EpochReport], None],
    check: Callable[[], None],
) -> Fitted:
    model, started_from = initial_model(
        data.channels, request.weights, request.backbone, get_settings().imagenet_fetch_timeout_seconds
    )
    config = TrainConfig(
        request.epochs,
        request.batch_size,
        request.learning_rate,
        request.weight_decay,
        request.patience,
        request.seed,
        request.augment,
    )
    trained = train(model, data.images, data.labels, data.index[TRAIN], data.index[VAL], config, on_epoch, check)
    val_scores = predict_scores(trained.model, data.images[data.index[VAL]], data.images.device)
    threshold = choose_threshold(data.labels_of(VAL), val_scores)

    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / f"classifier_{_tag(request)}.pt"
    torch.save(
        {
            "state_dict": {key: value.cpu() for key, value in trained.model.state_dict().items()},
            "input": request.input,
            "backbone": request.backbone,
            "channels": data.channels,
            "size": int(data.images.shape[-1]),  # the input size
            "cache_size": data.classification.working_size,  # the working size (the key older checkpoints have)
            "square": data.classification.square,
            "threshold": threshold,
            "dataset_id": request.dataset_id,
            "seg_run": request.seg_run,
        },
        checkpoint,
    )
    metrics = {
        "input": request.input,
        "backbone": request.backbone,
        "weights": started_from,
        "validation": binary_metrics(data.labels_of(VAL), val_scores, threshold),
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.history),
        "best_val_auc": trained.best_val_auc,
        "train_images_per_s": round(trained.train_images_per_s, 1),
        "history": trained.history,
        "device": str(data.images.device),
        "split": {part: len(indices) for part, indices in data.split.items()},
        "request": request.params(),
    }
    return Fitted(trained.model, threshold, checkpoint, metrics)


def score_test(
    data: Prepared, model: nn.Module, threshold: float, request: ClassifyRequest, out: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """The test split's metrics (with 95% bootstrap intervals) at the validation split's thresholds, its
    pictures and the split's image ids."""
    val_scores = predict_scores(model, data.images[data.index[VAL]], data.images.device)
    specificity_threshold = threshold_for_specificity(data.labels_of(VAL), val_scores)
    scores = predict_scores(model, data.images[data.index[TEST]], data.images.device)
    labels = data.labels_of(TEST)
    test = binary_metrics(labels, scores, threshold, specificity_threshold, with_intervals=True)
    out.mkdir(parents=True, exist_ok=True)
    tag, title = _tag(request), f"{BACKBONE_NAMES[request.backbone]} ({request.input}), test split"
    split_file = out / "classification_split.json"
    split_file.write_text(
        json.dumps({part: [data.classification.image_ids[i] for i in indices] for part, indices in data.split.items()})
    )
    pictures = {
        "roc_png": str(roc_png(out / f"roc_{tag}.png", labels, scores, test["roc_auc"], title)),
        "pr_png": str(pr_png(out / f"pr_{tag}.png", labels, scores, test["pr_auc"], title)),
        "confusion_png": str(confusion_png(out / f"confusion_{tag}.png", test["confusion"], threshold, title)),
        "split": str(split_file),
    }
    return test, pictures


def fit_classifier(
    settings: Settings,
    request: ClassifyRequest,
    out: Path,
    on_epoch: Callable[[EpochReport], None],
    check: Callable[[], None],
) -> tuple[dict[str, Any], dict[str, str]]:
    """`dispatch classify`'s job: train, then score the test split."""
    data = prepare(settings, request)
    fitted = fit(data, request, out, on_epoch, check)
    test, pictures = score_test(data, fitted.model, fitted.threshold, request, out)
    return {**fitted.metrics, "test": test}, {"checkpoint": str(fitted.checkpoint), **pictures}


def _tag(request: ClassifyRequest) -> str:
    return request.input.replace("+", "_")
