"""Flower's config file (`celery flower --conf=...`): address, port and basic auth from the environment.

Flower executes this file at start, which is also where /metrics is put behind the same basic auth as
every other page (Flower 2.2 serves it to anyone).
"""

import os

from flower.views import monitor
from tornado.web import authenticated

port = int(os.environ.get("FLOWER_PORT", "5555"))
# The local stack keeps Flower on this machine; compose sets 0.0.0.0 so that the published port reaches it.
address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
basic_auth = [os.environ["FLOWER_BASIC_AUTH"]]  # user:password; the stack never starts Flower without it
persistent = False
# Keep Flower's memory flat on long training days.
max_tasks = 10000

monitor.Metrics.get = authenticated(monitor.Metrics.get)
