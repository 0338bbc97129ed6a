"""Super-resolution for the release's small radiographs, learned from its large ones (docs/superres.md)."""
