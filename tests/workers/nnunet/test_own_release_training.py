"""A COCO release with two categories and patient groups through the whole chain at a tiny budget: ingest,
preprocess, two folds, the ensemble's Dice per category (in `dispatch show` and MLflow), the classifier, and
`dispatch predict` writing a mask per category and an overlay with a legend, and for a DICOM radiograph a
DICOM Segmentation (FRACTIONAL with --probabilities, else BINARY) and report on top of it; then the PACS round
trip with a real Orthanc."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import PACS_PASSWORD, TINY_TRAINER, Stack, free_port
from dicom_files import PATIENT, dicom_from
from orthanc import running_orthanc
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
    with Image.open(pictures[0]) as image:
        dicom = dicom_from(np.asarray(ImageOps.exif_transpose(image).convert("L")), tmp_path / "radiograph.dcm")
    out = tmp_path / "predictions"
    predicted = system.dispatch(
        "predict", *map(str, pictures), str(dicom), "--probabilities", "--out", str(out), "--wait", "--json",
        timeout=600,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stdout
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {"area_px_fracture", "area_px_plate"} <= set(rows[0])
    assert_segmentation_over(dicom, out, rows[2], fractional=True)
    assert rows[2]["report"] == f"{rows[2]['name']}_report.dcm" and (out / rows[2]["report"]).is_file()
    assert not any(value in (out / "predictions.csv").read_text() + predicted.stdout for value in PATIENT.values())
    assert_pacs_round_trip(system, dicom, tmp_path)
    for picture, row in zip(pictures, rows[:2], strict=True):
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


def assert_pacs_round_trip(system: Stack, dicom: Path, tmp_path: Path) -> None:
    """`dispatch predict --pacs ... --store` against a real Orthanc: the study's radiograph fetched and
    predicted, its SEG and report stored back into the study; the SEG read back from the PACS is the PNG mask;
    neither the study's UIDs nor its patient reach the job table, the logs or the data root."""
    source = pydicom.dcmread(dicom, stop_before_pixels=True)
    with running_orthanc(tmp_path / "orthanc") as orthanc:
        orthanc.upload(dicom)
        down = f"http://127.0.0.1:{free_port()}/dicom-web"
        refused = system.dispatch("predict", "--pacs", down, "--study", source.StudyInstanceUID)
        assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
            f"Error: cannot reach the PACS at {down} (ConnectionError); check --pacs and that the PACS is up"
        ]
        out = tmp_path / "from-pacs"
        predicted = system.dispatch(
            "predict", "--pacs", orthanc.dicomweb, "--study", source.StudyInstanceUID, "--store", "--out", str(out),
            "--wait", "--json", timeout=600,
        )  # fmt: skip
        run = json.loads(predicted.stdout)
        assert predicted.returncode == 0, run["error"]
        assert run["metrics"]["stored"] == 2 and run["metrics"]["pacs"] == orthanc.dicomweb
        held = {item["MainDicomTags"]["SOPInstanceUID"]: item["ID"] for item in orthanc.instances()}
        with (out / "predictions.csv").open() as handle:
            row = next(csv.DictReader(handle))
        seg = pydicom.dcmread(out / row["seg"], stop_before_pixels=True)
        assert set(held) == {
            source.SOPInstanceUID,
            seg.SOPInstanceUID,
            pydicom.dcmread(out / row["report"]).SOPInstanceUID,
        }
        (tmp_path / "back").mkdir()
        (tmp_path / "back" / row["seg"]).write_bytes(orthanc.file(held[seg.SOPInstanceUID]))
    assert_segmentation_over(dicom, tmp_path / "back", row, fractional=False, masks=out)

    private = system.data_root / "private"
    assert not (private / "pacs").exists() or not any((private / "pacs").iterdir()), "the fetched copies removed"
    secrets = [*PATIENT.values(), source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID]
    shown = system.dispatch("show", run["ref"], "--json").stdout + system.dispatch("jobs", "--all").stdout
    written = [path for path in system.data_root.rglob("*") if path.is_file() and private not in path.parents]
    for value in secrets:
        assert value not in shown + predicted.stdout, f"{value} in dispatch's output"
        leaks = [path for path in written if value.encode() in path.read_bytes()]
        assert not leaks, f"{value} in {leaks[:3]}"
    assert not [path for path in written if PACS_PASSWORD.encode() in path.read_bytes()]


def assert_segmentation_over(
    source: Path, out: Path, row: dict[str, str], fractional: bool, masks: Path | None = None
) -> None:
    """The SEG of a DICOM input: named by its pseudonym, on its source instance, a segment per category with
    the nnU-Net model as the algorithm; BINARY equal to the PNG masks (in `masks`, default `out`), or
    FRACTIONAL probabilities."""
    import highdicom as hd
    import pydicom

    assert row["name"].startswith("dcm-") and row["seg"] == f"{row['name']}_seg.dcm"
    segmentation = hd.seg.segread(out / row["seg"])
    original = pydicom.dcmread(source, stop_before_pixels=True)
    referenced = segmentation.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert referenced.ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert segmentation.StudyInstanceUID == original.StudyInstanceUID, "in the radiograph's study"
    assert [item.SegmentLabel for item in segmentation.SegmentSequence] == list(CATEGORIES)
    algorithm = segmentation.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == f"Dataset{DATASET}_FracAtlas-nnunet"
    assert segmentation.SegmentationType == ("FRACTIONAL" if fractional else "BINARY")
    pixels = segmentation.get_pixels_by_source_instance([original.SOPInstanceUID])[0]
    assert pixels.shape == (original.Rows, original.Columns, len(CATEGORIES))
    if fractional:
        assert pixels.dtype.kind == "f" and 0 <= pixels.min() <= pixels.max() <= 1
        return
    for index, name in enumerate(CATEGORIES):
        mask = np.asarray(Image.open((masks or out) / f"{row['name']}_mask_{name}.png")) > 0
        assert np.array_equal(pixels[:, :, index] > 0, mask), f"the SEG's {name} is the PNG mask"
