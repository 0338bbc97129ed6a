"""Flower's config file (`celery flower --conf=...`): port and basic auth come from the environment."""

import os

port = int(os.environ.get("FLOWER_PORT", "5555"))
address = os.environ.get("FLOWER_ADDRESS", "0.0.0.0")
basic_auth = [os.environ["FLOWER_BASIC_AUTH"]]  # user:password; the stack never starts Flower without it
persistent = False
# Keep Flower's memory flat on long training days.
max_tasks = 10000
