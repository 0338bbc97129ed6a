"""A COCO release with two categories and patient groups through the whole chain at a tiny budget: ingest,
preprocess, two folds, the ensemble's Dice per category (in `dispatch show` and MLflow), the classifier, and
`dispatch predict` writing a mask per category and an overlay with a legend, and for a DICOM radiograph a
DICOM Segmentation (FRACTIONAL with --probabilities, else BINARY) and report on top of it; last, the PACS round
trip with a real Orthanc, one study in each transfer syntax a hospital's archive keeps radiographs in."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import PACS_PASSWORD, TINY_TRAINER, Stack, free_port, wait_for
from dicom_files import PATIENT, dicom_from
from orthanc import running_orthanc
from own_releases import two_category_export
from PIL import Image, ImageOps
from tracking_reads import mlflow_run_of

from workers.ingest.synthetic import make_synthetic_release

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
DATASET = 430
CATEGORIES = ("fracture", "plate")
# One study each, as the PACS keeps it: Orthanc as Debian ships it (no GDCM plugin) cannot transcode the
# compressed ones, so the worker asks for them as stored.
PACS_STUDIES = {
    "uncompressed, MONOCHROME1, no file extension": {"photometric": "MONOCHROME1"},
    "RLE Lossless": {"codec": "rle"},
    "JPEG 2000 Lossless": {"codec": "jpeg2000"},
    "JPEG Lossless": {"codec": "jpeg-lossless"},
}


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
    assert_pacs_round_trips(system, sorted((export / "images").glob("*.jpg"))[2:6], tmp_path)


def assert_pacs_round_trips(system: Stack, pictures: list[Path], tmp_path: Path) -> None:
    """`dispatch predict --pacs ... --store` against a real Orthanc, a study per transfer syntax: each study's
    radiograph fetched as stored and predicted, its SEG and report stored back into the study and the local
    copies removed (kept in --out with --keep-local); each SEG read back from the PACS is the PNG mask; and no
    value or UID of the planted files anywhere outside the data root's private folder: files, logs, the job
    table, MLflow's stores, what dispatch printed."""
    planted = []
    (tmp_path / "pacs-in").mkdir()
    for index, (picture, options) in enumerate(zip(pictures, PACS_STUDIES.values(), strict=True)):
        with Image.open(picture) as image:
            grey = np.asarray(ImageOps.exif_transpose(image).convert("L"))
        name = f"study{index}" if index == 0 else f"study{index}.dcm"  # the first without an extension
        patient = {**PATIENT, "PatientID": f"{PATIENT['PatientID']}-{index}"}
        planted.append(dicom_from(grey, tmp_path / "pacs-in" / name, patient=patient, **options))
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in planted]
    kept = tmp_path / "kept"
    with running_orthanc(tmp_path / "orthanc") as orthanc:
        for path in planted:
            orthanc.upload(path)
        down = f"http://127.0.0.1:{free_port()}/dicom-web"
        refused = system.dispatch("predict", "--pacs", down, "--study", headers[0].StudyInstanceUID)
        assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
            f"Error: cannot reach the PACS at {down} (ConnectionError); check --pacs and that the PACS is up"
        ]
        printed, runs = refused.stdout + refused.stderr, []
        for index, header in enumerate(headers):
            local = ["--out", str(kept), "--keep-local"] if index == len(headers) - 1 else []
            started = system.dispatch(
                "predict", "--pacs", orthanc.dicomweb, "--study", header.StudyInstanceUID, "--store", *local, "--json"
            )
            printed += started.stdout + started.stderr
            assert started.returncode == 0, started.stderr
            runs.append(json.loads(started.stdout))
        for position, run in enumerate(runs):
            runs[position] = wait_for(lambda run=run: finished(system, run), timeout=600, what=f"{run['ref']} to end")
        printed += system.dispatch("jobs", "--all").stdout
        seg_of = _segmentations_held(orthanc)
        for run, header, syntax in zip(runs, headers, PACS_STUDIES, strict=True):
            printed += json.dumps(run)
            assert run["state"] == "succeeded", f"{syntax}: {run['error']}"
            assert run["metrics"]["stored"] == 2 and run["metrics"]["pacs"] == orthanc.dicomweb, syntax
            out = Path(run["artifacts"]["out"])
            with (out / "predictions.csv").open() as handle:
                row = next(csv.DictReader(handle))
            back = tmp_path / "back" / run["ref"]
            back.mkdir(parents=True)
            (back / row["seg"]).write_bytes(seg_of[header.SOPInstanceUID])
            assert_segmentation_over(planted[headers.index(header)], back, row, fractional=False, masks=out)
            private_copies = system.data_root / "private" / "predictions" / run["ref"]
            if out == kept:
                assert (kept / row["seg"]).is_file() and (kept / row["report"]).is_file(), "--keep-local keeps them"
            else:
                assert not private_copies.exists(), f"{syntax}: the local SEG and report removed once stored"
                assert not list(out.glob("*.dcm")), "no DICOM output outside the private folder"
            mlflow_run_of(system, run)  # what the run's jobs send to MLflow has arrived
        assert len(seg_of) == len(headers), "a SEG for each study, nothing else sent"

    private = system.data_root / "private"
    assert not (private / "pacs").exists() or not any((private / "pacs").iterdir()), "the fetched copies removed"
    secrets = [*PATIENT.values(), *(f"{PATIENT['PatientID']}-{index}" for index in range(len(headers)))]
    secrets += [str(header[key].value) for header in headers for key in ("StudyInstanceUID", "SeriesInstanceUID")]
    secrets += [str(header.SOPInstanceUID) for header in headers]
    written = [path for path in system.data_root.rglob("*") if path.is_file() and private not in path.parents]
    for value in secrets:
        assert value not in printed, f"{value} in dispatch's output"
        leaks = [path for path in written if value.encode() in path.read_bytes()]
        assert not leaks, f"{value} in {leaks[:3]}"
    # The stack's own PACS (PACS=1) takes the same login: its 0600 files in the stack folder hold it
    # (tests/services/test_secrets.py), and nothing else does.
    holders = {system.data_root / "stack" / name for name in ("orthanc.json", "pacs_server")}
    assert not [path for path in written if PACS_PASSWORD.encode() in path.read_bytes() and path not in holders]


def finished(system: Stack, run: dict) -> dict | None:
    shown = json.loads(system.dispatch("show", run["ref"], "--json").stdout)
    return shown if shown["state"] in ("succeeded", "failed", "cancelled") else None


def _segmentations_held(orthanc: object) -> dict[str, bytes]:
    """The PACS's SEGs by the SOP instance each is on."""
    held = {}
    for item in orthanc.instances():  # type: ignore[attr-defined]
        content = orthanc.file(item["ID"])  # type: ignore[attr-defined]
        dataset = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
        if dataset.Modality == "SEG":
            on = dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
            held[str(on)] = content
    return held


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
