"""The stack's own PACS and viewer (`make up PACS=1`): Orthanc with its DICOMweb plugin, and OHIF served by
nginx on one origin with Orthanc's /dicom-web, nginx checking the login (docs/viewer.md)."""
