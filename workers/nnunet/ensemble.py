"""Fracture probability maps for arbitrary 2D pictures from a trained run's nnU-Net folds.

The pictures are written as the same NIfTI cases ingest writes, `nnUNetv2_predict` runs the fold
ensemble in a child process with `--save_probabilities`, and the probability of any label (one minus the
background's: with one label, that label's own) is read back as (rows, columns) float32 maps in the
pictures' own orientation.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.contract import Experiment
from shared.settings import Settings
from workers.child import ToolRun
from workers.nnunet.commands import environment, run_tool
from workers.nnunet.folds import predict_command
from workers.nnunet.nifti import read_case, write_case

BACKGROUND = 0


def fracture_channel(npz: Path) -> np.ndarray:
    """The probability of any label: nnU-Net's saved probabilities are (classes, 1, rows, columns) for our
    2D cases, and sum to one over the classes."""
    with np.load(npz) as content:
        return (1 - content["probabilities"][BACKGROUND, 0]).astype(np.float32)


@dataclass(frozen=True)
class EnsembleMaps:
    """What the fold ensemble says of one picture, in its own orientation."""

    fracture: np.ndarray  # (rows, columns) float32: the probability of any label
    labels: np.ndarray | None = None  # (rows, columns): nnU-Net's segmentation, its label per pixel
    per_label: np.ndarray | None = None  # (labels, rows, columns) float32: each label's own probability


def predict_probabilities(
    settings: Settings,
    experiment: Experiment,
    folds: list[int],
    pictures: Iterable[tuple[str, np.ndarray]],
    work: Path,
    run: ToolRun,
    segmentations: bool = False,
) -> dict[str, EnsembleMaps]:
    """name -> the ensemble's maps, for each (name, (rows, columns) uint8 picture); with `segmentations`, also
    nnU-Net's segmentation and each label's own probability (kept only where asked: they are large)."""
    inputs, outputs = work / "inputs", work / "outputs"
    shutil.rmtree(work, ignore_errors=True)
    inputs.mkdir(parents=True)
    names = []
    for name, pixels in pictures:
        write_case(inputs / f"{name}_0000.nii.gz", np.ascontiguousarray(pixels))
        names.append(name)
    try:
        if not names:
            return {}
        command = predict_command(experiment, inputs, outputs, folds, probabilities=True)
        run_tool("nnUNetv2_predict", command, environment(settings), run)
        return {name: _maps(outputs, name, segmentations) for name in names}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _maps(outputs: Path, name: str, segmentations: bool) -> EnsembleMaps:
    if not segmentations:
        return EnsembleMaps(fracture_channel(outputs / f"{name}.npz"))
    with np.load(outputs / f"{name}.npz") as content:
        probabilities = content["probabilities"][:, 0]
    return EnsembleMaps(
        (1 - probabilities[BACKGROUND]).astype(np.float32),
        read_case(outputs / f"{name}.nii.gz"),
        probabilities[1:].astype(np.float32),
    )
