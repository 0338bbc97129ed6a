"""`dispatch predict` on files: new radiographs through a run's nnU-Net fold ensemble and its classifier.

Per picture: a mask PNG per category of the dataset (one `_mask.png` where it has one), an overlay PNG (each
category in its colour, with a legend where there are several) at the picture's own size, and a row of
predictions.csv; per DICOM picture also a DICOM SEG of the masks and a DICOM SR of the classifier's answer.
A file that cannot be read is reported by name and skipped; the others go on. Each picture takes the path
of the training data: brought to the ingest's working size by the ingest's own resize (workers/imaging) for
nnU-Net, letterboxed onto the cache's square, then brought to the classifier's input size.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.contract import Experiment
from shared.errors import InputError
from shared.settings import Settings
from workers.child import ToolRun
from workers.classifier.apply import fracture_scores
from workers.classifier.model import Classifier
from workers.files import replacing
from workers.imaging.dicom import read_identity
from workers.imaging.pseudonyms import picture_pseudonym
from workers.imaging.radiographs import Radiograph, read_radiograph
from workers.nnunet.dataset_labels import label_names
from workers.nnunet.ensemble import EnsembleMaps, predict_probabilities
from workers.predict.dicom_report import write_report
from workers.predict.dicom_seg import Algorithm, write_segmentation
from workers.predict.overlays import mask_files, overlay


@dataclass(frozen=True)
class DicomOutput:
    """What a DICOM input gets beside the PNGs: its pseudonym names its outputs, a SEG and a report are
    written into `folder` (they carry the patient's header: --out, or else the data root's private folder)."""

    folder: Path
    key: bytes  # the data root's pseudonym key
    algorithm: Algorithm  # the nnU-Net model's, in the SEG
    classifier: Algorithm  # the classifier's, in the report
    fractional: bool  # --probabilities: each category's probability, not the predicted labels


@dataclass(frozen=True)
class Predictor:
    """The models a prediction runs: a run's finished nnU-Net folds and a classifier."""

    settings: Settings
    classifier: Classifier
    experiment: Experiment
    folds: list[int]
    dicom: DicomOutput


@dataclass(frozen=True)
class Input:
    stem: str  # its outputs' names: the file's own, or a DICOM picture's pseudonym; numbered where two share one
    path: Path
    radiograph: Radiograph
    is_dicom: bool


def predict_files(predictor: Predictor, files: list[Path], out: Path, run: ToolRun) -> tuple[dict[str, Any], dict]:
    """Predict `files` into `out`; returns the run's metrics and artifacts."""
    inputs, skipped = _read_inputs(files, predictor.dicom.key)
    classifier = predictor.classifier
    working = {i.stem: i.radiograph.at_working_size(classifier.working_size, classifier.square) for i in inputs}
    out.mkdir(parents=True, exist_ok=True)
    # A folder of its own, made here and removed here: nothing else under --out is ever deleted.
    work = Path(tempfile.mkdtemp(dir=out, prefix=".predict-work-"))
    try:
        maps = predict_probabilities(
            predictor.settings, predictor.experiment, predictor.folds, working.items(), work, run, segmentations=True
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scores = fracture_scores(classifier, [working[i.stem] for i in inputs], [maps[i.stem].fracture for i in inputs])
    names = label_names(
        predictor.experiment.results(predictor.settings.layout) / "dataset.json"
    )  # as nnU-Net copied it
    rows = [
        _write_outputs(i, maps[i.stem], float(score), names, out, predictor)
        for i, score in zip(inputs, scores, strict=True)
    ]
    table = out / "predictions.csv"
    with replacing(table, text=True) as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metrics = {
        "predicted": len(rows),
        "fractures": sum(row["predicted_label"] == "fracture" for row in rows),
        "skipped": skipped,
        "threshold": classifier.threshold,
    }
    artifacts = {"predictions": str(table), "out": str(out)}
    if any(row["seg"] for row in rows):
        artifacts["dicom"] = str(predictor.dicom.folder)
    return metrics, artifacts


def _read_inputs(files: list[Path], key: bytes) -> tuple[list[Input], dict[str, str]]:
    """The files that read as radiographs, and why each other one does not (file -> message)."""
    inputs: list[Input] = []
    skipped: dict[str, str] = {}
    for path in files:
        try:
            radiograph, identity = read_radiograph(path), read_identity(path)
        except InputError as error:
            skipped[str(path)] = str(error)
            continue
        name = picture_pseudonym(key, identity.sop_instance_uid) if identity else path.name.split(".")[0]
        inputs.append(Input(name, path, radiograph, identity is not None))
    if not inputs:
        raise InputError("no file could be read: " + "; ".join(skipped.values()))
    stems = _numbered([i.stem for i in inputs])
    return [replace(i, stem=stem) for i, stem in zip(inputs, stems, strict=True)], skipped


def _numbered(names: list[str]) -> list[str]:
    """Output names, numbered where two inputs share one."""
    seen: dict[str, int] = {}
    numbered = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        numbered.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return numbered


def _write_outputs(
    picture: Input, maps: EnsembleMaps, score: float, names: list[str], out: Path, predictor: Predictor
) -> dict[str, Any]:
    """The picture's masks and overlay (and for DICOM its SEG and report); returns its predictions.csv row."""
    assert maps.labels is not None and maps.per_label is not None  # asked with segmentations=True
    pixels, stem, threshold = picture.radiograph.pixels, picture.stem, predictor.classifier.threshold
    small = Image.fromarray(maps.labels.astype(np.uint8))
    labels = np.asarray(small.resize(pixels.shape[::-1], Image.Resampling.NEAREST))
    masks, overlay_file = mask_files(stem, names), out / f"{stem}_overlay.png"
    # Replaced, never written through: a link planted at one of these names is itself replaced.
    for index, mask_name in enumerate(masks.values(), start=1):
        with replacing(out / mask_name) as handle:
            Image.fromarray((labels == index).astype(np.uint8) * 255).save(handle, format="PNG")
    with replacing(overlay_file) as handle:
        overlay(pixels, labels, names).save(handle, format="PNG")
    areas = {f"area_px_{name}": int((labels == index).sum()) for index, name in enumerate(names, start=1)}
    seg = report = ""
    if picture.is_dicom:
        dicom = predictor.dicom
        dicom.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        seg = _segmentation(picture, names, labels, maps.per_label, dicom)
        report = f"{stem}_report.dcm"
        write_report(picture.path, score, threshold, dicom.classifier, dicom.folder / report)
    return {
        "name": stem,  # a DICOM input's pseudonym
        "file": str(picture.path),
        "fracture_probability": f"{score:.4f}",
        "predicted_label": "fracture" if score >= threshold else "no fracture",
        "fracture_area_px": int(np.count_nonzero(labels)),
        **(areas if len(names) > 1 else {}),
        "mask": ";".join(masks.values()),
        "overlay": overlay_file.name,
        "seg": seg,
        "report": report,
    }


def _segmentation(
    picture: Input, names: list[str], labels: np.ndarray, probabilities: np.ndarray, dicom: DicomOutput
) -> str:
    """A DICOM input's SEG (`<pseudonym>_seg.dcm`), BINARY from the labels or FRACTIONAL from each category's
    probability brought to the picture's size."""
    target = dicom.folder / f"{picture.stem}_seg.dcm"
    if dicom.fractional:
        rows, columns = picture.radiograph.pixels.shape
        full = [
            np.asarray(Image.fromarray(p.astype(np.float32)).resize((columns, rows), Image.Resampling.BILINEAR))
            for p in probabilities
        ]
        write_segmentation(picture.path, names, dicom.algorithm, target, probabilities=np.clip(np.stack(full), 0, 1))
    else:
        write_segmentation(picture.path, names, dicom.algorithm, target, labels=labels)
    return target.name
