"""`dispatch predict`: new radiographs through the nnU-Net fold ensemble and the classifier.

Per picture: a mask PNG per category of the dataset (one `_mask.png` where it has one), an overlay PNG (each
category in its colour, with a legend where there are several) at the picture's own size, and a row of
predictions.csv; per DICOM picture also a DICOM SEG of the masks and a DICOM SR of the classifier's answer.
A file that cannot be read is reported by name and skipped; the others go on. Each picture takes the path
of the training data: resized to the ingest's working size (aspect kept, unless that ingest squashed) for
nnU-Net, letterboxed onto the cache's square, then brought to the classifier's input size.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from shared.contract import Experiment
from shared.defaults import IMAGE_SEG
from shared.errors import InputError
from shared.layout import case_id
from shared.settings import Settings
from workers.classifier.dicom_report import write_report
from workers.classifier.dicom_seg import Algorithm, write_segmentation
from workers.classifier.input_size import resized as at_input_size
from workers.classifier.model import build_model
from workers.classifier.radiographs import read_radiograph
from workers.classifier.train import predict_scores
from workers.device import torch_device
from workers.files import replacing
from workers.imaging.dicom import read_identity
from workers.imaging.geometry import letterbox, resized, working_shape
from workers.imaging.pseudonyms import picture_pseudonym
from workers.nnunet.dataset_labels import label_names
from workers.nnunet.ensemble import predict_probabilities

# One colour per category, the first the single-category overlay's red.
OVERLAY_COLOURS = np.array(
    [[255, 40, 40], [40, 200, 255], [255, 200, 0], [60, 220, 60], [220, 60, 220], [255, 130, 0]], dtype=np.float32
)
OVERLAY_ALPHA = 0.45


@dataclass(frozen=True)
class Classifier:
    model: torch.nn.Module
    input: str
    input_size: int
    threshold: float
    seg_run: int | None
    working_size: int  # the ingest's: the square its pictures were letterboxed on
    square: bool  # that ingest squashed the pictures (the notebook's layout)


def load_classifier(path: Path) -> Classifier:
    content: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(int(content["channels"]), content.get("backbone", "resnet18"))  # older: all ResNet18
    model.load_state_dict(content["state_dict"])
    input_size = int(content["size"])  # the file's keys: "size" is the input size, "cache_size" the working size
    return Classifier(
        model,
        content["input"],
        input_size,
        float(content["threshold"]),
        content["seg_run"],
        int(content.get("cache_size", input_size)),  # a checkpoint from before the working size: squares
        bool(content.get("square", True)),
    )


def at_working_size(pixels: np.ndarray, working_size: int, square: bool) -> np.ndarray:
    """A (rows, columns) picture at the ingest's working size (as workers/imaging/pictures.py resizes)."""
    shape = working_shape(pixels.shape[1], pixels.shape[0], working_size, square)
    return np.asarray(resized(Image.fromarray(pixels), shape))


def _overlay(pixels: np.ndarray, labels: np.ndarray, names: list[str]) -> Image.Image:
    """The picture with each category's pixels in its colour; a legend in the corner where there are several."""
    rgb = np.repeat(pixels[:, :, None].astype(np.float32), 3, axis=2)
    for index in range(len(names)):
        mask = labels == index + 1
        colour = OVERLAY_COLOURS[index % len(OVERLAY_COLOURS)]
        rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * colour
    picture = Image.fromarray(rgb.astype(np.uint8))
    if len(names) > 1:
        _draw_legend(picture, names)
    return picture


def _draw_legend(picture: Image.Image, names: list[str]) -> None:
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(10, min(picture.size) // 40))
    line = int(font.size * 1.4)
    width = max(int(draw.textlength(name, font=font)) for name in names) + line + 12
    draw.rectangle([4, 4, 4 + width, 8 + line * len(names)], fill=(0, 0, 0))
    for index, name in enumerate(names):
        top = 6 + index * line
        colour = tuple(int(v) for v in OVERLAY_COLOURS[index % len(OVERLAY_COLOURS)])
        draw.rectangle([8, top + 2, 8 + line - 6, top + line - 4], fill=colour)
        draw.text((8 + line, top), name, fill=(255, 255, 255), font=font)


def _mask_files(stem: str, names: list[str]) -> dict[str, str]:
    """category -> its mask's file name: `<stem>_mask.png` for one category, `<stem>_mask_<name>.png` each for
    several."""
    if len(names) == 1:
        return {names[0]: f"{stem}_mask.png"}
    return {name: f"{stem}_mask_{case_id(name)}.png" for name in names}


def _numbered(names: list[str]) -> list[str]:
    """Output names, numbered where two inputs share one."""
    seen: dict[str, int] = {}
    numbered = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        numbered.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return numbered


@dataclass(frozen=True)
class DicomOutput:
    """What a DICOM input gets beside the PNGs: its pseudonym names its outputs, a SEG and a report are
    written."""

    key: bytes  # the data root's pseudonym key
    algorithm: Algorithm  # the nnU-Net model's, in the SEG
    classifier: Algorithm  # the classifier's, in the report
    fractional: bool  # --probabilities: each category's probability, not the predicted labels


def _segmentation(
    source: Path,
    stem: str,
    names: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    shape: tuple[int, ...],
    out: Path,
    dicom: DicomOutput,
) -> str:
    """A DICOM input's SEG (`<pseudonym>_seg.dcm`), BINARY from the labels or FRACTIONAL from each category's
    probability brought to the picture's size."""
    target = out / f"{stem}_seg.dcm"
    if dicom.fractional:
        size = (shape[1], shape[0])
        full = [
            np.asarray(Image.fromarray(p.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
            for p in probabilities
        ]
        write_segmentation(source, names, dicom.algorithm, target, probabilities=np.clip(np.stack(full), 0, 1))
    else:
        write_segmentation(source, names, dicom.algorithm, target, labels=labels)
    return target.name


def predict_files(
    settings: Settings,
    files: list[Path],
    out: Path,
    classifier: Classifier,
    experiment: Experiment,
    folds: list[int],
    log: Path,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool],
    dicom: DicomOutput,
) -> tuple[dict[str, Any], dict[str, str]]:
    read: list[tuple[Path, np.ndarray, str]] = []
    read_as_dicom: set[int] = set()  # positions in `read` of the DICOM inputs
    skipped: dict[str, str] = {}
    for path in files:
        try:
            pixels, identity = read_radiograph(path), read_identity(path)
        except InputError as error:
            skipped[str(path)] = str(error)
            continue
        name = picture_pseudonym(dicom.key, identity.sop_instance_uid) if identity else path.name.split(".")[0]
        if identity is not None:
            read_as_dicom.add(len(read))
        read.append((path, pixels, name))
    stems = _numbered([name for _path, _pixels, name in read])
    dicom_stems = {stems[position] for position in read_as_dicom}
    pictures = {stem: pixels for stem, (_path, pixels, _name) in zip(stems, read, strict=True)}
    sources = {stem: path for stem, (path, _pixels, _name) in zip(stems, read, strict=True)}
    if not pictures:
        raise InputError("no file could be read: " + "; ".join(skipped.values()))
    working = {
        stem: at_working_size(pixels, classifier.working_size, classifier.square) for stem, pixels in pictures.items()
    }
    out.mkdir(parents=True, exist_ok=True)
    # A folder of its own, made here and removed here: nothing else under --out is ever deleted.
    work = Path(tempfile.mkdtemp(dir=out, prefix=".predict-work-"))
    label_maps: dict[str, np.ndarray] = {}
    class_maps: dict[str, np.ndarray] = {}
    try:
        maps = predict_probabilities(
            settings, experiment, folds, working.items(), work, log, on_line, should_stop, label_maps, class_maps
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stems = list(working)
    channels = [np.stack([letterbox(working[stem], classifier.working_size) for stem in stems])]
    if classifier.input == IMAGE_SEG:
        probabilities = [np.rint(maps[stem] * 255).astype(np.uint8) for stem in stems]
        channels.append(np.stack([letterbox(p, classifier.working_size) for p in probabilities]))
    device = torch_device()
    batch = at_input_size(torch.from_numpy(np.stack(channels, 1)).to(device), classifier.input_size)
    scores = predict_scores(classifier.model.to(device), batch, device)
    names = label_names(experiment.results(settings.layout) / "dataset.json")  # as nnU-Net copied it
    rows = []
    for stem, score in zip(stems, scores, strict=True):
        pixels = pictures[stem]
        small = Image.fromarray(label_maps[stem].astype(np.uint8))
        labels = np.asarray(small.resize(pixels.shape[::-1], Image.Resampling.NEAREST))
        masks, overlay_file = _mask_files(stem, names), out / f"{stem}_overlay.png"
        # Replaced, never written through: a link planted at one of these names is itself replaced.
        for index, mask_name in enumerate(masks.values(), start=1):
            with replacing(out / mask_name) as handle:
                Image.fromarray((labels == index).astype(np.uint8) * 255).save(handle, format="PNG")
        with replacing(overlay_file) as handle:
            _overlay(pixels, labels, names).save(handle, format="PNG")
        areas = {f"area_px_{name}": int((labels == index).sum()) for index, name in enumerate(names, start=1)}
        seg = report = ""
        if stem in dicom_stems:
            seg = _segmentation(sources[stem], stem, names, labels, class_maps[stem], pixels.shape, out, dicom)
            report = f"{stem}_report.dcm"
            write_report(sources[stem], float(score), classifier.threshold, dicom.classifier, out / report)
        rows.append(
            {
                "name": stem,  # a DICOM input's pseudonym
                "file": str(sources[stem]),
                "fracture_probability": f"{score:.4f}",
                "predicted_label": "fracture" if score >= classifier.threshold else "no fracture",
                "fracture_area_px": int(np.count_nonzero(labels)),
                **(areas if len(names) > 1 else {}),
                "mask": ";".join(masks.values()),
                "overlay": overlay_file.name,
                "seg": seg,
                "report": report,
            }
        )
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
    return metrics, {"predictions": str(table), "out": str(out)}
