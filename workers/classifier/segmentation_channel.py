"""The classifier's second channel: nnU-Net's fracture probability for every image of the cache.

An image nnU-Net trained on gets its out-of-fold prediction (the validation output of the one fold that
held it out, saved with --npz); every other image (nnU-Net's test cases, the images without a
fracture polygon) gets the ensemble of the run's folds. No image's map comes from a model that saw it (a
group of duplicates sits in one fold, so no copy of it was seen either).

nnU-Net sees each picture at its working size, as it was trained (never the cache's letterboxed square:
the black border would shift its per-picture intensity normalisation); the map is letterboxed back onto
the cache's square.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.contract import Experiment
from shared.defaults import ALL_FOLDS
from shared.errors import InputError
from shared.layout import case_id, segmentation_channel_file
from shared.settings import Settings
from workers.child import ToolRun
from workers.classifier.data import ClassificationSet
from workers.files import replacing
from workers.imaging.geometry import letterbox, unletterbox
from workers.nnunet.ensemble import fracture_channel, predict_probabilities

TRAIN_CASE = "train"


def _fold_of_case(experiment: Experiment, settings: Settings) -> dict[str, int]:
    splits = json.loads((experiment.preprocessed(settings.layout) / "splits_final.json").read_text())
    return {case: fold for fold, split in enumerate(splits) for case in split["val"]}


def build_channel(
    settings: Settings,
    experiment: Experiment,
    seg_run: int,
    folds: list[int],
    classification: ClassificationSet,
    work: Path,
    run: ToolRun,
) -> tuple[Path, dict[str, Any]]:
    """Write the (N, size, size) uint8 map (probability x 255) beside the cache; returns it and counts."""
    target = segmentation_channel_file(classification.folder, seg_run)
    fold_of = _fold_of_case(experiment, settings)
    channel = np.zeros(classification.images.shape, dtype=np.uint8)
    ensemble = []
    for index, image_id in enumerate(classification.image_ids):
        case, split = case_id(image_id), classification.segmentation_split[index]
        if split != TRAIN_CASE:
            ensemble.append(index)
            continue
        fold = fold_of.get(case)
        if fold not in folds:
            raise InputError(
                f"{case} was trained on by nnU-Net, but fold {fold} (the one that held it out) did not finish "
                f"in run r{seg_run}: train every fold (`dispatch train --folds {ALL_FOLDS}`) or use --input image"
            )
        npz = experiment.fold_folder(settings.layout, fold) / "validation" / f"{case}.npz"
        if not npz.exists():
            raise InputError(f"{npz} is missing: fold {fold} of run r{seg_run} was not validated with --npz")
        channel[index] = _as_uint8(fracture_channel(npz), classification, index, npz)
    maps = predict_probabilities(
        settings,
        experiment,
        folds,
        (
            (f"img{index:06d}", unletterbox(np.asarray(classification.images[index]), *classification.shapes[index]))
            for index in ensemble
        ),
        work,
        run,
    )
    for index in ensemble:
        channel[index] = _as_uint8(maps[f"img{index:06d}"].fracture, classification, index, run.log)
    with replacing(target) as handle:
        np.save(handle, channel)
    return target, {"out_of_fold": len(classification.labels) - len(ensemble), "ensemble": len(ensemble)}


def _as_uint8(probability: np.ndarray, classification: ClassificationSet, index: int, source: Path) -> np.ndarray:
    """The map of picture `index` as probability x 255, on the cache's letterboxed square."""
    shape = classification.shapes[index]
    if probability.shape != shape:
        raise InputError(
            f"{source}: a {probability.shape} probability map for a picture of {shape} in the cache; ingest again"
        )
    return letterbox(np.rint(np.clip(probability, 0, 1) * 255).astype(np.uint8), classification.working_size)
