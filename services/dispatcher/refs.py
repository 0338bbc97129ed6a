"""Run and job references as users type them: `r12` or `12` is run 12, `j34` is job 34."""

from __future__ import annotations

import re

import click

PATTERN = re.compile(r"^(?P<kind>[rj]?)(?P<id>\d+)$")


def parse_ref(text: str) -> tuple[str, int]:
    """('run' | 'job', id)."""
    match = PATTERN.match(text.strip().lower())
    if not match:
        raise click.BadParameter(f"{text!r} is neither a run (r12, or 12) nor a job (j34)")
    return ("job" if match["kind"] == "j" else "run"), int(match["id"])


def run_number(ref: str | None, option: str) -> int | None:
    """A run named by the user for `option` (r12, or 12), or None."""
    if ref is None:
        return None
    kind, number = parse_ref(ref)
    if kind != "run":
        raise click.BadParameter(f"{ref} is a job; {option} takes a run (r12)", param_hint=option)
    return number
