"""A release ingested in this process (no stack): the nnU-Net raw dataset and the classification cache."""

from __future__ import annotations

import shutil
from pathlib import Path

from workers.cpu.ingest import IngestRequest, assemble, convert_chunk, plan


def ingest_in_process(source: Path, data_root: Path, dataset_id: int = 921, size: int = 224) -> Path:
    """Returns the classification cache folder under `data_root`."""
    staging = data_root / "staging" / "in-process"
    request = IngestRequest(str(source), dataset_id, size)
    metrics = plan(request, staging, data_root / "nnUNet_raw", chunk_size=100_000)
    for start, _stop in metrics["chunks"]:
        convert_chunk(staging, start, lambda *_: None)
    assemble(staging, data_root / "nnUNet_raw", data_root / "classification")
    shutil.rmtree(data_root / "staging", ignore_errors=True)
    return data_root / "classification" / request.dataset_name
