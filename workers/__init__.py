"""Celery tasks and the domain code they run, one folder per domain (ingest, nnunet, classifier, superres,
sweep, tracking), each with its thin tasks.py; runtime.py wraps every task (docs/design.md)."""
