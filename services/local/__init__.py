"""The local stack: the processes docker-compose would run, under supervisord, with no Docker."""
