"""The learning-rate schedule the project's own trainings share (the classifier, the super-resolution networks)."""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(total_steps: int, warmup_share: float = 0.1) -> Callable[[int], float]:
    """The learning rate's factor at each step: a linear warm-up, then a cosine down to zero. (torch's
    OneCycleLR divides by zero when the warm-up is exactly one step long.)"""
    warmup = max(1, round(total_steps * warmup_share))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return factor
