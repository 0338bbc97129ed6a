"""A COCO release with two categories and patient groups through the whole chain at a tiny budget: ingest,
preprocess, two folds, the ensemble's Dice per category (in `dispatch show` and MLflow), the classifier, and
`dispatch predict` writing a mask per category and an overlay with a legend."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAINER, Stack
from own_releases import two_category_export
from PIL import Image, ImageOps
from tracking_reads import mlflow_run_of

from workers.ingest.synthetic import make_synthetic_release

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
DATASET = 430
CATEGORIES = ("fracture", "plate")


def test_two_categories_train_evaluate_and_predict(system: Stack, tmp_path: Path) -> None:
    release = make_synthetic_release(tmp_path / "release", fractured=20, non_fractured=16)
    export, groups = two_category_export(release, tmp_path / "export", fractured=20, negatives=16)
    result = system.dispatch(
        "pipeline", "--source", str(export), "--groups", str(groups), "--dataset-id", str(DATASET), "--size", "64",
        "--folds", "0-1", *TINY_TRAINER, "--classifier-epochs", "1", "--wait", "--json", timeout=900,
    )  # fmt: skip
    run = json.loads(result.stdout)
    assert result.returncode == 0, run["error"]
    metrics = run["metrics"]
    assert metrics["labels"] == list(CATEGORIES) and metrics["given_groups"] == 12
    per_category = metrics["test_dice_per_category"]
    assert set(per_category) == set(CATEGORIES) and all(0 <= value <= 1 for value in per_category.values())
    assert metrics["test_cases_per_category"]["plate"] >= 1
    assert 0 <= metrics["test_dice_category_mean"] <= 1
    assert set(metrics["test_intervals"]["dice_per_category"]) == set(CATEGORIES)
    shown = system.dispatch("show", run["ref"]).stdout
    assert "Dice on fracture (" in shown and "Dice on plate (" in shown and "mean Dice over the categories" in shown

    figures = mlflow_run_of(system, run).data.metrics
    for name in CATEGORIES:
        assert figures[f"test_dice_per_category/{name}"] == pytest.approx(per_category[name])
    assert figures["test_dice_category_mean"] == pytest.approx(metrics["test_dice_category_mean"])

    pictures = sorted((export / "images").glob("*.jpg"))[:2]
    out = tmp_path / "predictions"
    predicted = system.dispatch("predict", *map(str, pictures), "--out", str(out), "--wait", "--json", timeout=600)
    assert predicted.returncode == 0, predicted.stdout
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {"area_px_fracture", "area_px_plate"} <= set(rows[0])
    for picture, row in zip(pictures, rows, strict=True):
        masks = [out / f"{picture.stem}_mask_{name}.png" for name in CATEGORIES]
        assert row["mask"] == ";".join(mask.name for mask in masks)
        for mask, name in zip(masks, CATEGORIES, strict=True):
            pixels = np.asarray(Image.open(mask))
            assert pixels.shape == np.asarray(ImageOps.exif_transpose(Image.open(picture)).convert("L")).shape
            assert int((pixels > 0).sum()) == int(row[f"area_px_{name}"])
        overlay = np.asarray(Image.open(out / row["overlay"]))
        assert tuple(overlay[5, 5]) == (0, 0, 0), "the legend's box in the corner"
        swatches = {tuple(overlay[y, 10]) for y in range(6, 40)}
        assert (255, 40, 40) in swatches and (40, 200, 255) in swatches, "a swatch per category"
