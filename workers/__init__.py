"""Celery tasks and the domain code they run (workers/cpu, workers/gpu)."""
