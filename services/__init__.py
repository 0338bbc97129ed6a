"""What runs as a service: the dispatch CLI, the local stack, container entrypoints."""
