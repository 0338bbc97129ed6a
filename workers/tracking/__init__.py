"""Experiment tracking in MLflow: what jobs log, sent in the background, never at a job's cost."""
