"""What `dispatch` prints once a run is recorded: its ref, or (--wait) the run followed to its end."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from services.dispatcher import render

# --wait reads the run every 0.2 s for half a minute (a short run, an ingest say, is seen to end promptly),
# then every second: each read costs a few milliseconds of CPU, which a follower of an hours-long fold
# should not take from the training.
WAIT_POLL_S = 0.2
WAIT_POLL_SLOW_S = 1.0
WAIT_FAST_FOR_S = 30.0


def emit_json(content: Any) -> None:
    click.echo(json.dumps(content, indent=2, default=str))


def finish(run_id: int, wait: bool, as_json: bool) -> None:
    from shared.read_model import get_run

    if not wait:
        run = get_run(run_id)
        if as_json:
            emit_json(run)
        else:
            click.echo(f"run r{run_id} queued; follow it with `dispatch show r{run_id}` or `dispatch jobs`")
        return
    run = _wait(run_id, as_json)
    if as_json:
        emit_json(run)
    else:
        click.echo(render.show_run(run))
    if run["state"] != "succeeded":
        raise SystemExit(1)


def _wait(run_id: int, as_json: bool) -> dict[str, Any]:
    """Follow a run until it ends, drawing one live line on a terminal (stderr)."""
    from shared.read_model import get_run

    live = sys.stderr.isatty() and not as_json
    last = ""
    started = time.monotonic()
    while True:
        run = _read_through_outages(get_run, run_id)
        line = render.run_line(run)
        if live:
            click.echo("\r" + line[:200].ljust(len(click.unstyle(last))), nl=False, err=True)
        elif not as_json and click.unstyle(line) != click.unstyle(last):
            click.echo(line, err=True)
        last = line
        if run["state"] in ("succeeded", "failed", "cancelled"):
            if live:
                click.echo(err=True)
            return run
        time.sleep(WAIT_POLL_S if time.monotonic() - started < WAIT_FAST_FOR_S else WAIT_POLL_SLOW_S)


def _read_through_outages(read: Callable[[int], dict[str, Any]], run_id: int) -> dict[str, Any]:
    """A follower of a days-long run outlives a database restart: it says so once and reads again."""
    from shared.db.transient import is_transient

    said = False
    while True:
        try:
            return read(run_id)
        except Exception as error:
            if not is_transient(error):
                raise
            if not said:
                click.echo("\nthe job table does not answer; still following the run", err=True)
                said = True
            time.sleep(WAIT_POLL_SLOW_S)
