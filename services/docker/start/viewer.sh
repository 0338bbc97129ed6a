#!/usr/bin/env bash
# The stack's own viewer (PACS=1): OHIF served by nginx, with the PACS's /dicom-web on the same origin.
set -euo pipefail
exec python -m services.viewer.serve viewer
