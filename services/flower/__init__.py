"""Flower settings (the Celery side of the system, on FLOWER_PORT)."""
