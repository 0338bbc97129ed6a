"""The labels of an nnU-Net dataset by name: its dataset.json's, in label order, background left out (one per
category of the release the ingest read)."""

from __future__ import annotations

import json
from pathlib import Path


def label_names(dataset_json: Path) -> list[str]:
    """Labels 1..K by name."""
    labels: dict[str, int] = json.loads(dataset_json.read_text())["labels"]
    return [name for name, value in sorted(labels.items(), key=lambda item: item[1]) if value]
