"""A sweep's search space: which classifier settings its trials vary, and how.

Written as YAML (`dispatch sweep --space FILE`), a mapping from a setting of `dispatch classify` to
- a list of choices:              `batch_size: [32, 64, 128]`
- a range, optionally on a log scale or in steps:  `learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}`
- one value (not searched):       `weights: none`
Each value is checked against the classifier's own bounds (shared/contract.py): a bad file is refused by
the dispatcher with one line that names the key. Stored normalised in the sweep's parameters.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from shared.errors import InputError

# The settings a sweep may vary, with the type of their values.
SEARCHABLE: dict[str, type] = {
    "learning_rate": float,
    "weight_decay": float,
    "batch_size": int,
    "augment": float,
    "input": str,
    "weights": str,
    "backbone": str,
    "epochs": int,
    "patience": int,
}
MAX_FILE_BYTES = 64 * 1024
MAX_GRID_POINTS = 1000


class SpaceError(InputError):
    """A search space that cannot be used; the message names the key."""


def default_space(inputs: list[str], weights: list[str]) -> dict[str, dict[str, Any]]:
    """What matters for this classifier, where the dispatcher found no --space: the inputs and starting
    weights that this machine can offer."""
    return {
        "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
        "batch_size": {"choices": [32, 64, 128]},
        "augment": {"low": 0.0, "high": 2.0},
        "input": {"choices": inputs},
        "weights": {"choices": weights},
    }


def read_space(path: Path) -> dict[str, Any]:
    """The YAML file as written (checked by `normalise`)."""
    import yaml

    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpaceError(f"{path} is over {MAX_FILE_BYTES // 1024} KiB; a search space is a few lines")
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SpaceError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise SpaceError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise SpaceError(f"{path}{where}: {problem}") from None
    if not isinstance(content, dict) or not content:
        raise SpaceError(f"{path}: write a mapping of settings, such as `learning_rate: {{low: 1e-4, high: 1e-2}}`")
    return content


def normalise(space: dict[str, Any], check_value: Any) -> dict[str, dict[str, Any]]:
    """Every entry as {"choices": [...]} or {"low", "high", "log", "step"}; `check_value(key, value)` raises
    ValueError where the classifier refuses a value."""
    normalised = {}
    for key, spec in space.items():
        if key not in SEARCHABLE:
            raise SpaceError(f"{key}: not a setting a sweep can vary; use {', '.join(SEARCHABLE)}")
        normalised[key] = _entry(str(key), spec, SEARCHABLE[key], check_value)
    return normalised


def _entry(key: str, spec: Any, kind: type, check_value: Any) -> dict[str, Any]:
    def value(raw: Any, where: str) -> Any:
        if kind is str:
            typed = "none" if raw is None else raw
            ok = isinstance(typed, str)
        elif kind is int:
            typed, ok = raw, isinstance(raw, int) and not isinstance(raw, bool)
        else:
            typed = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else raw
            ok = isinstance(typed, float) and math.isfinite(typed)
        if not ok:
            raise SpaceError(f"{where}: {raw!r} is not {'a whole number' if kind is int else kind.__name__}")
        try:
            check_value(key, typed)
        except ValueError as error:
            raise SpaceError(f"{where}: {error}") from None
        return typed

    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        return {"choices": [value(spec, key)]}
    if "choices" in spec:
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
            raise SpaceError(f"{key}: give `choices` a non-empty list and nothing beside it")
        choices = [value(item, f"{key}.choices") for item in spec["choices"]]
        if len(set(map(str, choices))) != len(choices):
            raise SpaceError(f"{key}.choices: a value appears twice")
        return {"choices": choices}
    if kind is str:
        raise SpaceError(f"{key}: a text setting takes choices, such as [{key}-a, {key}-b]")
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown or "low" not in spec or "high" not in spec:
        raise SpaceError(f"{key}: a range is {{low: ..., high: ...}} with optional log: true or step: ...")
    low, high = value(spec["low"], f"{key}.low"), value(spec["high"], f"{key}.high")
    if not low < high:
        raise SpaceError(f"{key}: low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{key}.log: write true or false")
    if log and low <= 0:
        raise SpaceError(f"{key}: a log range needs low above 0")
    step = spec.get("step")
    if step is not None:
        step = value(step, f"{key}.step") if kind is int else float(step)
        if log or not step > 0:
            raise SpaceError(f"{key}.step: a step is above 0, and a log range takes none")
    return {"low": low, "high": high, "log": log, "step": step}


def grid(space: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every point of a space of choices and stepped ranges, for the grid sampler."""
    axes = {}
    for key, spec in space.items():
        if "choices" in spec:
            axes[key] = spec["choices"]
        elif spec["step"] is not None:
            count = int(round((spec["high"] - spec["low"]) / spec["step"])) + 1
            axes[key] = [
                spec["low"] + i * spec["step"]
                for i in range(count)
                if spec["low"] + i * spec["step"] <= spec["high"] + 1e-12
            ]
        else:
            raise SpaceError(f"{key}: the grid sampler needs choices or a step, not a continuous range")
    points = math.prod(len(values) for values in axes.values())
    if points > MAX_GRID_POINTS:
        raise SpaceError(f"the grid has {points} points (over {MAX_GRID_POINTS}); use fewer choices or --sampler tpe")
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def choices(space: dict[str, dict[str, Any]], key: str) -> list[Any] | None:
    """The values `key` may take where the space lists them; None where it is a range or absent."""
    spec = space.get(key)
    return None if spec is None or "choices" not in spec else list(spec["choices"])
