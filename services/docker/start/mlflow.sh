#!/usr/bin/env bash
# MLflow's tracking server behind its basic-auth app (docs/tracking.md). Its databases are made the first
# time; the admin password and the database URL reach it through a 0600 file and the environment, never
# its command line.
set -euo pipefail
python -m services.docker.prestart
MLFLOW_BACKEND_STORE_URI="$(python -m services.docker.mlflow_setup /tmp/mlflow-auth.ini)"
export MLFLOW_BACKEND_STORE_URI MLFLOW_AUTH_CONFIG_PATH=/tmp/mlflow-auth.ini
export MLFLOW_ARTIFACTS_DESTINATION="$DATA_ROOT/mlflow/artifacts"
# No GenAI job runners (seven processes this project never uses): services/tracking_store.py says why.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
# Tracking is background work: where the cores are short the jobs come first (services/local/plan.py).
exec nice -n 5 mlflow server --host 0.0.0.0 --port 5000 --workers 2 --allowed-hosts "$MLFLOW_ALLOWED_HOSTS" --app-name basic-auth
