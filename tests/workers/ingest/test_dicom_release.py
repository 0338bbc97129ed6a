"""A COCO release whose pictures are DICOM files (written by the tests from the mini set, each way a modality
stores one, made-up patients in every identifying attribute, two pictures per patient) ingested through the
stack beside the same release as PNGs: the same masks, the same pictures after the same window, pseudonyms for
case ids, each patient on one side of the split, and none of the patients' values or UIDs anywhere in what
the run wrote, outside the data root's private map; and the hostile files a hospital's archive holds, each one
file among good ones, refused by name in seconds with nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import Stack
from dicom_files import HOSTILE, PATIENT, dicom_from
from own_releases import fracatlas_pictures
from PIL import Image, ImageOps
from tracking_reads import mlflow_run_of

from workers.nnunet.nifti import read_case

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
VARIANTS = (
    {},
    {"photometric": "MONOCHROME1"},
    {"voi": "lut"},
    {"codec": "jpeg2000"},
    {"codec": "jpeg2000", "photometric": "MONOCHROME1", "voi": "lut"},
    {"codec": "jpeg-lossless"},
)


def releases(mini: Path, root: Path) -> tuple[Path, Path]:
    """The same upright pictures and polygons as a PNG release and as a DICOM one (one file without a suffix)."""
    png, dicom = root / "png", root / "dicom"
    images: dict[str, list] = {"png": [], "dicom": []}
    annotations = []
    (png / "images").mkdir(parents=True)
    (dicom / "images").mkdir(parents=True)
    for index, picture in enumerate(fracatlas_pictures(mini, fractured=10, negatives=6)):
        with Image.open(picture["file"]) as image:
            grey = np.asarray(ImageOps.exif_transpose(image).convert("L"))
        stem = f"xray-{index:03d}"
        Image.fromarray(grey).save(png / "images" / f"{stem}.png")
        dicom_name = stem if index == 5 else f"{stem}.dcm"
        patient = {**PATIENT, "PatientID": f"{PATIENT['PatientID']}-{index // 2}"}
        dicom_from(grey, dicom / "images" / dicom_name, patient=patient, **VARIANTS[index % len(VARIANTS)])
        width, height = picture["size"]
        for kind, name in (("png", f"{stem}.png"), ("dicom", dicom_name)):
            images[kind].append({"id": index + 1, "file_name": f"images/{name}", "width": width, "height": height})
        if picture["polygons"]:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1,
                 "segmentation": picture["polygons"], "iscrowd": 0}
            )  # fmt: skip
    for kind, folder in (("png", png), ("dicom", dicom)):
        content = {"images": images[kind], "annotations": annotations, "categories": [{"id": 1, "name": "fracture"}]}
        (folder / "annotations.json").write_text(json.dumps(content))
    return png, dicom


def ingest(system: Stack, source: Path, dataset_id: int) -> dict:
    result = system.dispatch("ingest", "--source", str(source), "--dataset-id", str(dataset_id), "--size", "256",
                             "--wait", "--json")  # fmt: skip
    run = json.loads(result.stdout)
    assert result.returncode == 0, run["error"]
    return run


def cases(dataset: Path, folder: str) -> dict[str, np.ndarray]:
    """case id -> its picture (folder 'images') or label map ('labels'), train and test sides together."""
    return {
        path.name.removesuffix(".nii.gz").removesuffix("_0000"): read_case(path)
        for side in (f"{folder}Tr", f"{folder}Ts")
        for path in sorted((dataset / side).glob("*.nii.gz"))
    }


def test_a_dicom_release_ingests_as_its_pngs_and_keeps_no_patient_data(
    system: Stack, mini: Path, tmp_path: Path
) -> None:
    png, dicom = releases(mini, tmp_path)
    from_png, from_dicom = ingest(system, png, 340), ingest(system, dicom, 341)
    png_set, dicom_set = (Path(run["artifacts"]["dataset"]) for run in (from_png, from_dicom))
    private = system.data_root / "private"
    pseudonym_map = private / dicom_set.name / "pseudonyms.csv"
    assert oct(private.stat().st_mode & 0o777) == "0o700" and oct(pseudonym_map.stat().st_mode & 0o777) == "0o600"
    with pseudonym_map.open() as handle:
        mapped = list(csv.DictReader(handle))
    pseudonym_of = {"images__" + Path(row["file"]).name.removesuffix(".dcm"): row["pseudonym"] for row in mapped}
    assert len(mapped) == 16 and all(name.startswith("dcm-") for name in pseudonym_of.values())
    png_labels, dicom_labels = cases(png_set, "labels"), cases(dicom_set, "labels")
    assert {pseudonym_of[case] for case in png_labels} == set(dicom_labels), "pseudonyms for case ids"
    for case, label in png_labels.items():
        assert np.array_equal(label, dicom_labels[pseudonym_of[case]]), f"{case}: the same mask"
    dicom_pictures = cases(dicom_set, "images")
    for case, picture in cases(png_set, "images").items():
        difference = np.abs(picture.astype(int) - dicom_pictures[pseudonym_of[case]]).max()
        assert difference <= 2, f"{case}: the same picture after the same window ({difference})"
    with open(from_dicom["artifacts"]["manifest"]) as handle:
        rows = {row["case_id"]: row for row in csv.DictReader(handle)}
    assert {row["spacing_mm"] for row in rows.values()} == {"0.143x0.143"}, "the detector's spacing recorded"
    sides: dict[str, set[str]] = {}
    for row in mapped:
        sides.setdefault(row["patient"], set()).add(rows[row["pseudonym"]]["split"])
    # Every picture is a case (the negatives are fewer than the fractured ones): each has its side.
    assert len(sides) == 8 and all(len(side) == 1 and side <= {"train", "test"} for side in sides.values()), sides
    assert set().union(*sides.values()) == {"train", "test"}, "patients on both sides"

    # What the test planted, read from the planted files themselves (not from the system's own map).
    planted = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted((dicom / "images").iterdir())]
    identifying = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    secrets = [*PATIENT.values(), *(str(header[key].value) for header in planted for key in identifying)]
    mlflow_run_of(system, from_dicom)  # what the run's jobs send to MLflow has arrived
    shown = system.dispatch("show", from_dicom["ref"], "--json").stdout + system.dispatch("jobs").stdout
    written = [path for path in system.data_root.rglob("*") if path.is_file() and private not in path.parents]
    for value in secrets:
        assert value not in shown, f"{value} in dispatch's output"
        leaks = [path for path in written if value.encode() in path.read_bytes()]
        assert not leaks, f"{value} in {leaks[:3]}"


@pytest.fixture(scope="module")
def good_releases(mini: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return releases(mini, tmp_path_factory.mktemp("releases"))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_dicom_file_among_good_ones_is_refused_by_name_with_nothing_written(
    case: str, system: Stack, good_releases: tuple[Path, Path], tmp_path: Path
) -> None:
    png, good = good_releases
    release = shutil.copytree(good, tmp_path / "release")
    victim = release / "images" / "xray-002.dcm"
    make, said = HOSTILE[case]
    grey = np.asarray(Image.open(png / "images" / "xray-002.png"))
    make(grey, victim)
    dataset_id = 350 + sorted(HOSTILE).index(case)
    result = system.dispatch("ingest", "--source", str(release), "--dataset-id", str(dataset_id), "--wait")
    assert result.returncode == 1 and said in result.stdout and str(victim) in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    run = json.loads(system.dispatch("show", result.stdout.split()[1], "--json").stdout)
    (failed,) = [job for job in run["jobs"] if job["state"] == "failed"]
    took = datetime.fromisoformat(failed["finished_at"]) - datetime.fromisoformat(failed["started_at"])
    assert took.total_seconds() < 5, f"{failed['name']} took {took} to refuse {case}"
    assert not any(value in result.stdout + json.dumps(run) for value in PATIENT.values())
    assert not list((system.data_root / "nnUNet_raw").glob(f"Dataset{dataset_id}_*"))
    assert not list((system.data_root / "classification").glob(f"Dataset{dataset_id}_*"))
    assert not list((system.data_root / "private").glob(f"Dataset{dataset_id}_*")), "no pseudonym map"
