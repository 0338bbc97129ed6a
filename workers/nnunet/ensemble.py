"""Fracture probability maps for arbitrary 2D pictures from a trained run's nnU-Net folds.

The pictures are written as the same NIfTI cases ingest writes, `nnUNetv2_predict` runs the fold
ensemble in a child process with `--save_probabilities`, and the probability of any label (one minus the
background's: with one label, that label's own) is read back as (rows, columns) float32 maps in the
pictures' own orientation.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from shared.contract import Experiment
from shared.settings import Settings
from workers.nnunet.commands import environment, run_tool
from workers.nnunet.folds import predict_command
from workers.nnunet.nifti import read_case, write_case

BACKGROUND = 0


def fracture_channel(npz: Path) -> np.ndarray:
    """The probability of any label: nnU-Net's saved probabilities are (classes, 1, rows, columns) for our
    2D cases, and sum to one over the classes."""
    with np.load(npz) as content:
        return (1 - content["probabilities"][BACKGROUND, 0]).astype(np.float32)


def predict_probabilities(
    settings: Settings,
    experiment: Experiment,
    folds: list[int],
    pictures: Iterable[tuple[str, np.ndarray]],
    work: Path,
    log: Path,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool],
    label_maps: dict[str, np.ndarray] | None = None,
    class_maps: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """name -> fracture probability map, for each (name, (rows, columns) uint8 picture); with `label_maps`,
    nnU-Net's segmentation of each (its label per pixel) is put there too, and with `class_maps` each
    label's own probability ((labels, rows, columns), background left out)."""
    inputs, outputs = work / "inputs", work / "outputs"
    shutil.rmtree(work, ignore_errors=True)
    inputs.mkdir(parents=True)
    names = []
    for name, pixels in pictures:
        write_case(inputs / f"{name}_0000.nii.gz", np.ascontiguousarray(pixels))
        names.append(name)
    if not names:
        shutil.rmtree(work, ignore_errors=True)
        return {}
    command = predict_command(experiment, inputs, outputs, folds, probabilities=True)
    run_tool("nnUNetv2_predict", command, environment(settings), log, on_line, should_stop)
    maps = {name: fracture_channel(outputs / f"{name}.npz") for name in names}
    if label_maps is not None:
        label_maps.update({name: read_case(outputs / f"{name}.nii.gz") for name in names})
    if class_maps is not None:
        for name in names:
            with np.load(outputs / f"{name}.npz") as content:
                class_maps[name] = content["probabilities"][1:, 0].astype(np.float32)
    shutil.rmtree(work, ignore_errors=True)
    return maps
