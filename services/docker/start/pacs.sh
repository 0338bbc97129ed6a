#!/usr/bin/env bash
# The stack's own PACS (PACS=1): Orthanc with its DICOMweb plugin, its storage in the data root's private folder.
set -euo pipefail
exec python -m services.viewer.serve pacs
