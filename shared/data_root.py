"""The shared data root's marker: every host's workers must see the first host's DATA_ROOT.

The first host (its migration step, or `make up` in the local mode) writes a random id into
`$DATA_ROOT/.fracatlas-data-root` and registers it in Redis. A worker starting on any host reads its
DATA_ROOT's marker and compares; a worker on a local disk instead of the shared mount refuses to start.
"""

from __future__ import annotations

import os
import uuid

import redis

from shared.redact import redact_url
from shared.settings import Settings

MARKER = ".fracatlas-data-root"
REDIS_KEY = "fracatlas:data-root-id"


class DataRootMismatch(RuntimeError):
    pass


def claim_data_root(settings: Settings) -> str:
    """On the first host: write the marker if there is none and register it as the shared data root.

    The first host is the authority: registering again (after `make clean`, say) replaces the old id.
    """
    path = settings.root / MARKER
    if not path.exists():
        settings.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{MARKER}.tmp")
        tmp.write_text(uuid.uuid4().hex)
        os.replace(tmp, path)
    marker = path.read_text().strip()
    redis.Redis.from_url(settings.broker).set(REDIS_KEY, marker)
    return marker


def check_data_root(settings: Settings) -> str:
    """On a worker: the DATA_ROOT it sees must be the one the first host registered."""
    registered = redis.Redis.from_url(settings.broker).get(REDIS_KEY)
    if registered is None:
        raise DataRootMismatch(
            f"no data root is registered at {redact_url(settings.broker)}; start the first host "
            "(its migrate service, or `make up`) before workers on other hosts"
        )
    path = settings.root / MARKER
    marker = path.read_text().strip() if path.exists() else None
    if marker != registered.decode():
        raise DataRootMismatch(
            f"DATA_ROOT {settings.root} is not the shared data root (its marker is {marker or 'missing'}, the "
            f"first host's is {registered.decode()}): mount the first host's DATA_ROOT (NFS or similar) at "
            f"{settings.root} on this host and start the worker again"
        )
    return marker


def main() -> None:
    """`python -m shared.data_root claim|check`: the start scripts' pre-flight step."""
    import sys

    from shared.settings import get_settings

    action = sys.argv[1] if len(sys.argv) > 1 else "check"
    try:
        marker = (claim_data_root if action == "claim" else check_data_root)(get_settings())
    except (DataRootMismatch, redis.RedisError) as error:
        print(f"refusing to start: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    print(f"data root {get_settings().root} ({marker})")


if __name__ == "__main__":
    main()
