"""What the dispatcher and the workers both need: settings, the job table and the Celery app."""
