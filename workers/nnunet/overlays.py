"""Test cases with their masks, as people would rather look at them than read them: the radiograph, the ground
truth and nnU-Net's prediction side by side; with several categories, each in its colour and a legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # workers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from workers.nnunet.dataset_labels import label_names  # noqa: E402
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


CATEGORY_COLOURS = ((0.95, 0.2, 0.2), (0.15, 0.75, 1.0), (1.0, 0.8, 0.0), (0.25, 0.85, 0.25), (0.85, 0.25, 0.85))
ONE_LABEL_COLOURS = {"ground truth": (0.1, 0.9, 0.2), "prediction": (0.95, 0.2, 0.2)}


def case_overlay_png(
    image: Path, truth: Path, prediction: Path, title: str, out: Path, names: list[str] | None = None
) -> Path:
    """The radiograph, the ground truth over it and the prediction over it, side by side; `names`: the
    labels 1..K (several: each in its colour, with a legend)."""
    names = names or ["fracture"]
    pixels, truth_labels, predicted = read_case(image), read_case(truth), read_case(prediction)
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.4), dpi=110)
    for axis, labels, panel in (
        (axes[0], None, "radiograph"),
        (axes[1], truth_labels, "ground truth"),
        (axes[2], predicted, "prediction"),
    ):
        axis.imshow(pixels, cmap="gray")
        if labels is not None and labels.any():
            layer = np.zeros((*labels.shape, 4))
            for index in range(len(names)):
                colour = ONE_LABEL_COLOURS[panel] if len(names) == 1 else CATEGORY_COLOURS[index % 5]
                layer[labels == index + 1] = (*colour, 0.45)
            axis.imshow(layer)
        axis.set_title(panel, fontsize=9)
        axis.axis("off")
    if len(names) > 1:
        handles = [Patch(color=CATEGORY_COLOURS[i % 5], label=name) for i, name in enumerate(names)]
        figure.legend(handles=handles, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0.08 if len(names) > 1 else 0, 1, 1))  # room for the legend
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out


def held_out_case_overlays(raw: Path, predictions: Path, per_case: dict[str, float | None], out: Path) -> list[Path]:
    """Overlays of the best, median and worst test case; the Dice in each title."""
    names = label_names(raw / "dataset.json")
    pictures = []
    for label, case, dice in chosen_cases(per_case):
        pictures.append(
            case_overlay_png(
                raw / "imagesTs" / f"{case}_0000.nii.gz",
                raw / "labelsTs" / f"{case}.nii.gz",
                predictions / f"{case}.nii.gz",
                f"{label} test case {case}: Dice {dice:.3f}",
                out / f"test_case_{label}.png",
                names,
            )
        )
    return pictures
