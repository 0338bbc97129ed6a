"""Container images, start scripts and the docker-compose helpers."""
