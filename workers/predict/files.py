"""`dispatch predict` on files: new radiographs through a run's nnU-Net fold ensemble and its classifier.

Per picture: a mask PNG per category of the dataset (one `_mask.png` where it has one), an overlay PNG (each
category in its colour, with a legend where there are several) at the picture's own size, and a row of
predictions.csv; per DICOM picture also a DICOM SEG of the masks and a DICOM SR of the classifier's answer.
With `annotations`, the masks also as CVAT or Label Studio import them (workers/annotate/tools.py), and
`pictures/` the pictures as the tool is to show them: a JPEG or PNG copied as it is, one with an EXIF turn
written upright as PNG (the tools measure a picture as stored, the browser shows it turned: its shapes would
not fit), a DICOM picture as `<pseudonym>.png`, its pixels without its header.
A file that cannot be read is reported by name and skipped; the others go on. Each picture takes the path
of the training data: brought to the ingest's working size by the ingest's own resize (workers/imaging) for
nnU-Net, letterboxed onto the cache's square, then brought to the classifier's input size.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from shared.contract import Experiment
from shared.errors import InputError
from shared.settings import Settings
from workers.annotate.shapes import traced_shapes
from workers.annotate.tools import AnnotatedPicture, Tool, write_for
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
from workers.predict.overlays import hex_colours, mask_files, overlay


@dataclass(frozen=True)
class DicomOutput:
    """What a DICOM input gets beside the PNGs: its pseudonym names its outputs, a SEG and a report are
    written into `folder` (they carry the patient's header: --out, or else the data root's private folder)."""

    folder: Path
    key: bytes  # the data root's pseudonym key
    algorithm: Algorithm  # the nnU-Net model's, in the SEG
    classifier: Algorithm  # the classifier's, in the report
    fractional: bool  # --probabilities: each category's probability, not the predicted labels


PICTURES = "pictures"  # --annotations: the pictures as the tool is to show them


@dataclass(frozen=True)
class Annotations:
    """--annotations: the predictions for an annotation tool too."""

    tool: Tool
    model_version: str  # the runs that predicted, as the tool shows them
    image_url: str  # Label Studio: a task's image is this + the picture's file name


@dataclass(frozen=True)
class Predictor:
    """The models a prediction runs: a run's finished nnU-Net folds and a classifier."""

    settings: Settings
    classifier: Classifier
    experiment: Experiment
    folds: list[int]
    dicom: DicomOutput
    annotations: Annotations | None = None


@dataclass(frozen=True)
class Input:
    stem: str  # its outputs' names: the file's own, or a DICOM picture's pseudonym; numbered where two share one
    path: Path
    radiograph: Radiograph
    is_dicom: bool


def predict_files(predictor: Predictor, files: list[Path], out: Path, run: ToolRun) -> tuple[dict[str, Any], dict]:
    """Predict `files` into `out`; returns the run's metrics and artifacts."""
    inputs, skipped = read_inputs(files, predictor.dicom.key)
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
    rows, annotated = [], []
    for picture, score, file_name in zip(inputs, scores, tool_names(inputs), strict=True):
        labels = full_size(maps[picture.stem].labels, picture.radiograph.pixels.shape)
        rows.append(_write_outputs(picture, maps[picture.stem], labels, float(score), names, out, predictor))
        if predictor.annotations is not None:
            threshold = predictor.classifier.threshold
            annotated.append(annotated_picture(picture, file_name, labels, float(score), threshold, names, out))
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
    if predictor.annotations is not None:
        artifacts["annotations"] = write_annotations(predictor.annotations, out, annotated, names)
        metrics["annotations"] = predictor.annotations.tool
    if any(row["seg"] for row in rows):
        artifacts["dicom"] = str(predictor.dicom.folder)
    return metrics, artifacts


def write_annotations(
    annotations: Annotations, out: Path, pictures: list[AnnotatedPicture], names: list[str]
) -> list[str]:
    """The tool's files in `out`; returns their paths."""
    extra: dict[str, Any] = {}
    if annotations.tool == "label-studio":
        extra = {"image_url": annotations.image_url, "colours": hex_colours(len(names))}
    return [str(path) for path in write_for(annotations.tool, out, pictures, names, annotations.model_version, **extra)]


def read_inputs(files: list[Path], key: bytes) -> tuple[list[Input], dict[str, str]]:
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


def full_size(labels: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """nnU-Net's label map (at the working size) brought to the picture's own (rows, columns)."""
    assert labels is not None  # asked with segmentations=True
    small = Image.fromarray(labels.astype(np.uint8))
    return np.asarray(small.resize(shape[::-1], Image.Resampling.NEAREST))


def tool_names(inputs: list[Input]) -> list[str]:
    """Each picture's name in an annotation tool's task, and below `pictures/`: its path below the folder all
    the files share (`.png` where it is written anew); a DICOM picture's pseudonym."""
    files = [i.path.resolve() for i in inputs if not i.is_dicom]
    shared = Path(os.path.commonpath([f.parent for f in files])) if files else Path("/")
    names = []
    for picture in inputs:
        below = PurePosixPath(picture.path.resolve().relative_to(shared).as_posix()) if not picture.is_dicom else None
        if below is None:
            names.append(f"{picture.stem}.png")
        else:
            names.append(str(below if picture.radiograph.as_stored else below.with_suffix(".png")))
    return names


def annotated_picture(
    picture: Input, file_name: str, labels: np.ndarray, score: float, threshold: float, names: list[str], out: Path
) -> AnnotatedPicture:
    rows, columns = labels.shape
    target = out / PICTURES / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if picture.radiograph.as_stored:
        with replacing(target) as handle:
            handle.write(picture.path.read_bytes())
    else:
        with replacing(target) as handle:
            Image.fromarray(picture.radiograph.pixels).save(handle, format="PNG")
    return AnnotatedPicture(file_name, columns, rows, traced_shapes(labels, names), score, score >= threshold)


def _write_outputs(
    picture: Input,
    maps: EnsembleMaps,
    labels: np.ndarray,
    score: float,
    names: list[str],
    out: Path,
    predictor: Predictor,
) -> dict[str, Any]:
    """The picture's masks and overlay (and for DICOM its SEG and report); returns its predictions.csv row."""
    assert maps.per_label is not None  # asked with segmentations=True
    pixels, stem, threshold = picture.radiograph.pixels, picture.stem, predictor.classifier.threshold
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
        write_report(picture.path, score, threshold, dicom.classifier, dicom.folder / report, labels > 0)
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
