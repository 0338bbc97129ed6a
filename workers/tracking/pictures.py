"""Pictures people would rather look at than read: test cases with their masks, and a run's jobs on a
timeline across its workers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # workers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from workers.nifti import read_case  # noqa: E402

STATE_COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "cancelled": "#f9a825", "running": "#0277bd"}


def chosen_cases(per_case: dict[str, float | None]) -> list[tuple[str, str, float]]:
    """The best, median and worst case by Dice (fewer when there are fewer cases)."""
    ranked = sorted(((dice, case) for case, dice in per_case.items() if dice is not None), reverse=True)
    if not ranked:
        return []
    picks = {"best": ranked[0], "median": ranked[len(ranked) // 2], "worst": ranked[-1]}
    seen: set[str] = set()
    chosen = []
    for label, (dice, case) in picks.items():
        if case not in seen:
            seen.add(case)
            chosen.append((label, case, dice))
    return chosen


def case_overlay_png(image: Path, truth: Path, prediction: Path, title: str, out: Path) -> Path:
    """The radiograph, the ground truth over it and the prediction over it, side by side."""
    pixels, truth_mask, predicted = read_case(image), read_case(truth) > 0, read_case(prediction) > 0
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.4), dpi=110)
    for axis, mask, name, colour in (
        (axes[0], None, "radiograph", None),
        (axes[1], truth_mask, "ground truth", (0.1, 0.9, 0.2)),
        (axes[2], predicted, "prediction", (0.95, 0.2, 0.2)),
    ):
        axis.imshow(pixels, cmap="gray")
        if mask is not None and mask.any():
            layer = np.zeros((*mask.shape, 4))
            layer[mask] = (*colour, 0.45)
            axis.imshow(layer)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out


def held_out_case_overlays(raw: Path, predictions: Path, per_case: dict[str, float | None], out: Path) -> list[Path]:
    """Overlays of the best, median and worst test case; the Dice in each title."""
    pictures = []
    for label, case, dice in chosen_cases(per_case):
        pictures.append(
            case_overlay_png(
                raw / "imagesTs" / f"{case}_0000.nii.gz",
                raw / "labelsTs" / f"{case}.nii.gz",
                predictions / f"{case}.nii.gz",
                f"{label} test case {case}: Dice {dice:.3f}",
                out / f"test_case_{label}.png",
            )
        )
    return pictures


def _time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def timeline_png(run: dict[str, Any], out: Path) -> Path:
    """One row per worker, one bar per job (its last attempt), coloured by state: folds side by side show as
    bars that overlap in time; a job that needed more than one attempt is marked."""
    jobs = [job for job in run["jobs"] if _time(job["started_at"]) is not None]
    workers = sorted({job["worker"] or "?" for job in jobs})
    start = min((_time(job["started_at"]) or 0.0 for job in jobs), default=0.0)
    figure, axes = plt.subplots(figsize=(9, 0.6 * len(workers) + 1.6), dpi=110)
    for job in jobs:
        began = (_time(job["started_at"]) or start) - start
        ended = (_time(job["finished_at"]) or _time(job["heartbeat_at"]) or began + start) - start
        row = workers.index(job["worker"] or "?")
        axes.barh(
            row,
            max(ended - began, 0.05),
            left=began,
            color=STATE_COLOURS.get(job["state"], "grey"),
            height=0.6,
            edgecolor="white",
        )
        label = job["name"] + (f" (attempt {job['attempt']})" if job["attempt"] > 1 else "")
        axes.text(began, row, " " + label, va="center", fontsize=7, color="black")
    axes.set_yticks(range(len(workers)), workers)
    axes.set_xlabel("seconds since the run's first job started")
    axes.set_title(f"r{run['id']} {run['kind']}: jobs across workers ({run['state']})")
    axes.invert_yaxis()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out
