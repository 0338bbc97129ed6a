"""`dispatch rank` on files: each nnU-Net fold alone over the pictures (in batches, so that memory holds a
batch's maps, not every picture's), the classifier on the folds' mean, then rank.csv, the top N as the
annotation tool imports them and a contact sheet of the top N."""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from shared.contract import RankRequest
from workers.child import ToolRun
from workers.classifier.apply import fracture_scores
from workers.files import replacing
from workers.nnunet.dataset_labels import label_names
from workers.nnunet.ensemble import predict_probabilities
from workers.predict.contact_sheet import write_contact_sheet
from workers.predict.files import (
    Annotations,
    Predictor,
    annotated_picture,
    full_size,
    read_inputs,
    tool_names,
    write_annotations,
)
from workers.predict.rank import FoldMaps, Scored, ranked

BATCH = 64  # pictures per round of the folds
RANK_FILE = "rank.csv"
CONTACT_SHEET = "contact_sheet.png"


def rank_files(
    predictor: Predictor, request: RankRequest, files: list[Path], out: Path, run: ToolRun, model_version: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    inputs, skipped = read_inputs(files, predictor.dicom.key)
    classifier = predictor.classifier
    names = label_names(predictor.experiment.results(predictor.settings.layout) / "dataset.json")
    out.mkdir(parents=True, exist_ok=True)
    scored, labels = [], {}
    settings, experiment = predictor.settings, predictor.experiment
    # One folder of its own for every fold's run (each call empties it), removed here: nothing else under --out goes.
    work = Path(tempfile.mkdtemp(dir=out, prefix=".rank-work-"))
    try:
        for start in range(0, len(inputs), BATCH):
            batch = inputs[start : start + BATCH]
            working = {i.stem: i.radiograph.at_working_size(classifier.working_size, classifier.square) for i in batch}
            maps = {i.stem: FoldMaps() for i in batch}
            for fold in predictor.folds:
                alone = predict_probabilities(settings, experiment, [fold], working.items(), work, run, True)
                for stem, fold_maps in alone.items():
                    maps[stem].add(fold_maps)
            means = [maps[i.stem].mean_fracture() for i in batch]
            scores = fracture_scores(classifier, [working[i.stem] for i in batch], means)
            for picture, score in zip(batch, scores, strict=True):
                scored.append(Scored(picture.stem, maps[picture.stem].disagreement(), float(score)))
                labels[picture.stem] = maps[picture.stem].labels()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    order = ranked(scored, request.by, request.seed)
    by_stem = {i.stem: i for i in inputs}
    file_names = dict(zip([i.stem for i in inputs], tool_names(inputs), strict=True))
    _write_table(out / RANK_FILE, order, by_stem, file_names)
    top = order[: request.top]
    full = {p.name: full_size(labels[p.name], by_stem[p.name].radiograph.pixels.shape) for p, _ in top}
    tiles = [
        (by_stem[p.name].radiograph.pixels, full[p.name], [f"#{n} {p.name}"[:40], _doubts(p)])
        for n, (p, _) in enumerate(top, start=1)
    ]
    write_contact_sheet(out / CONTACT_SHEET, tiles, names)
    artifacts: dict[str, Any] = {"rank": str(out / RANK_FILE), "contact_sheet": str(out / CONTACT_SHEET)}
    if request.annotations:
        pictures = [
            annotated_picture(
                by_stem[p.name], file_names[p.name], full[p.name], p.probability, classifier.threshold, names, out
            )
            for p, _ in top
        ]
        tool = Annotations(request.annotations, model_version, request.image_url)
        artifacts["annotations"] = write_annotations(tool, out, pictures, names)
    artifacts["out"] = str(out)
    metrics = {
        "ranked": len(order),
        "top": [p.name for p, _ in top],
        "by": request.by,
        "folds": len(predictor.folds),
        "mean_disagreement": float(np.mean([p.disagreement for p in scored])),
        "skipped": skipped,
    }
    return metrics, artifacts


def _doubts(picture: Scored) -> str:
    return f"folds {picture.disagreement:.4f}  p {picture.probability:.2f}"


def _write_table(path: Path, order: list[tuple[Scored, float]], by_stem: dict, file_names: dict[str, str]) -> None:
    with replacing(path, text=True) as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["rank", "name", "file", "score", "fold_disagreement", "fracture_probability", "classifier_doubt"]
        )
        for number, (picture, score) in enumerate(order, start=1):
            source = file_names[picture.name] if by_stem[picture.name].is_dicom else str(by_stem[picture.name].path)
            writer.writerow(
                [number, picture.name, source, f"{score:.4f}", f"{picture.disagreement:.6f}",
                 f"{picture.probability:.4f}", f"{picture.doubt:.4f}"]
            )  # fmt: skip
