"""`dispatch predict`: new radiographs through the nnU-Net fold ensemble and the classifier.

Per picture: a mask PNG and an overlay PNG at the picture's own size, and a row of predictions.csv.
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
from PIL import Image

from shared.contract import Experiment
from shared.defaults import IMAGE_SEG
from shared.errors import InputError
from shared.settings import Settings
from workers.classifier.input_size import resized as at_input_size
from workers.classifier.model import build_model
from workers.classifier.radiographs import read_radiograph
from workers.classifier.train import predict_scores
from workers.device import torch_device
from workers.files import replacing
from workers.imaging.geometry import letterbox, resized, working_shape
from workers.nnunet.ensemble import predict_probabilities

MASK_THRESHOLD = 0.5
OVERLAY_COLOUR = np.array([255, 40, 40], dtype=np.float32)
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
    model = build_model(int(content["channels"]))
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


def _overlay(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = np.repeat(pixels[:, :, None].astype(np.float32), 3, axis=2)
    rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * OVERLAY_COLOUR
    return rgb.astype(np.uint8)


def _stems(paths: list[Path]) -> list[str]:
    """Output names: the file's stem, numbered where two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = path.name.split(".")[0]
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


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
) -> tuple[dict[str, Any], dict[str, str]]:
    pictures: dict[str, np.ndarray] = {}
    sources: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for path, stem in zip(files, _stems(files), strict=True):
        try:
            pictures[stem] = read_radiograph(path)
            sources[stem] = path
        except InputError as error:
            skipped[str(path)] = str(error)
    if not pictures:
        raise InputError("no file could be read: " + "; ".join(skipped.values()))
    working = {
        stem: at_working_size(pixels, classifier.working_size, classifier.square) for stem, pixels in pictures.items()
    }
    out.mkdir(parents=True, exist_ok=True)
    # A folder of its own, made here and removed here: nothing else under --out is ever deleted.
    work = Path(tempfile.mkdtemp(dir=out, prefix=".predict-work-"))
    try:
        maps = predict_probabilities(settings, experiment, folds, working.items(), work, log, on_line, should_stop)
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
    rows = []
    for stem, score in zip(stems, scores, strict=True):
        pixels = pictures[stem]
        small_mask = Image.fromarray((maps[stem] >= MASK_THRESHOLD).astype(np.uint8) * 255)
        mask = np.asarray(small_mask.resize(pixels.shape[::-1], Image.Resampling.NEAREST)) > 0
        mask_file, overlay_file = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
        # Replaced, never written through: a link planted at one of these names is itself replaced.
        with replacing(mask_file) as handle:
            Image.fromarray(mask.astype(np.uint8) * 255).save(handle, format="PNG")
        with replacing(overlay_file) as handle:
            Image.fromarray(_overlay(pixels, mask)).save(handle, format="PNG")
        rows.append(
            {
                "file": str(sources[stem]),
                "fracture_probability": f"{score:.4f}",
                "predicted_label": "fracture" if score >= classifier.threshold else "no fracture",
                "fracture_area_px": int(mask.sum()),
                "mask": mask_file.name,
                "overlay": overlay_file.name,
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
