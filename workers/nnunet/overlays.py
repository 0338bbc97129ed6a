"""Test cases with their masks, as people would rather look at them than read them: the radiograph, the ground
truth and nnU-Net's prediction side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # workers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from workers.nnunet.nifti import read_case  # noqa: E402


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
