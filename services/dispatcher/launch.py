"""Start a planned run: record it, send what can start, then follow it or print its id."""

from __future__ import annotations

from typing import Any

import click

from services.dispatcher.follow import finish


def start(kind: str, params: dict[str, Any], specs: list[Any], wait: bool, as_json: bool) -> None:
    from services.dispatcher.online import any_worker_online
    from services.dispatcher.submit import submit

    run_id = submit(kind, params, specs)
    if wait and not as_json and not any_worker_online():
        click.echo("warning: no worker answers; the run waits in the queue until `make up` starts some", err=True)
    finish(run_id, wait, as_json)
