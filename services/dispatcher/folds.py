"""`--folds` as users write it: `0-4`, `0,2`, `3` or `all` (the five cross-validation folds)."""

from __future__ import annotations

import click

from workers.nnunet import FOLDS


def parse_folds(text: str) -> list[int]:
    if text.strip().lower() == "all":
        return list(range(FOLDS))
    folds: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            folds.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise click.BadParameter(f"{text!r}: write folds as 0-4, 0,2 or all", param_hint="--folds") from None
    if not folds or min(folds) < 0 or max(folds) >= FOLDS:
        raise click.BadParameter(f"{text!r}: folds run from 0 to {FOLDS - 1}", param_hint="--folds")
    return sorted(folds)
