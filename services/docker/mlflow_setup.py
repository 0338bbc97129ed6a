"""The mlflow service's first steps: its two databases beside the job table's (runs and registry; logins),
made once, and the basic-auth app's config (0600). Prints the backend store's URL for the start script."""

from __future__ import annotations

import sys
from pathlib import Path

from services.tracking_store import auth_config, create_databases, database_url
from shared.private_files import write_private
from shared.settings import get_settings

RUNS, LOGINS = "mlflow", "mlflow_auth"


def main() -> None:
    settings = get_settings()
    create_databases(settings.db_url, [RUNS, LOGINS])
    logins = database_url(settings.db_url, LOGINS)
    config = auth_config(logins, *settings.tracking_credentials, settings.mlflow_auth_cache_seconds)
    write_private(Path(sys.argv[1]), config)
    print(database_url(settings.db_url, RUNS))


if __name__ == "__main__":
    main()
