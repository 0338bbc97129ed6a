"""A release ingested in this process (no stack): the nnU-Net raw dataset and the classification cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from shared.contract import IngestRequest
from shared.defaults import INGEST
from shared.layout import DataRoot
from workers.ingest.steps import assemble, convert_chunk, plan


def ingest_in_process(
    source: Path, data_root: Path, dataset_id: int = 921, size: int = INGEST["size"], **options: Any
) -> Path:
    """Returns the classification cache folder under `data_root`; `options`: more IngestRequest fields."""
    staging = data_root / "staging" / "in-process"
    request = IngestRequest(source=str(source), dataset_id=dataset_id, size=size, **options)
    layout = DataRoot(data_root)
    metrics = plan(request, source, staging, layout.nnunet_raw, chunk_size=100_000)
    for start, _stop in metrics["chunks"]:
        convert_chunk(request, staging, start, lambda *_: None)
    assemble(request, staging, layout)
    shutil.rmtree(layout.staging_dir, ignore_errors=True)
    return layout.classification_cache(dataset_id)
