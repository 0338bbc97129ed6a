"""OHIF v3, the built viewer of the npm package `@ohif/app` (pinned in the Makefile, fetched at install or image
build, never at run time), with its shipped configuration replaced by one for the stack's Orthanc."""

from __future__ import annotations

import json
from pathlib import Path

DATA_SOURCE = "fracatlas-pacs"
# Orthanc's DICOMweb as OHIF's own recipe for it sets it up: no includefield in QIDO, frames over WADO-RS, bulk
# data by the URIs Orthanc gives. Paths only: the viewer and /dicom-web share nginx's origin (Orthanc sends no
# CORS headers).
DICOMWEB = {
    "friendlyName": "FracAtlas PACS",
    "name": "orthanc",
    "wadoUriRoot": "/wado",
    "qidoRoot": "/dicom-web",
    "wadoRoot": "/dicom-web",
    "qidoSupportsIncludeField": False,
    "supportsReject": False,
    "imageRendering": "wadors",
    "thumbnailRendering": "wadors",
    "enableStudyLazyLoad": True,
    "supportsFuzzyMatching": False,
    "supportsWildcard": True,
    "omitQuotationForMultipartRequest": True,
    "bulkDataURI": {"enabled": True},
}


def is_built(dist: Path) -> bool:
    return (dist / "index.html").is_file() and (dist / "app-config.js").is_file()


def app_config() -> str:
    """OHIF's app-config.js: the stack's PACS as its one data source; a SEG is laid over its radiograph
    without a question (disableConfirmationPrompts); no tour and no banner in the way of the picture."""
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": [{"ohif.tours": {"$set": []}}],
        "investigationalUseDialog": {"option": "never"},
        "disableConfirmationPrompts": True,
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showLoadingIndicator": True,
        "defaultDataSourceName": DATA_SOURCE,
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": DATA_SOURCE,
                "configuration": DICOMWEB,
            }
        ],
    }
    header = "// Written by services/viewer/ohif.py for the stack's own PACS.\n"
    return f"{header}window.config = {json.dumps(config, indent=2)};\n"
