"""Prediction: new radiographs, given as files or as a PACS study, through a run's nnU-Net folds and its
classifier; masks, overlays and predictions.csv, and for DICOM inputs a DICOM SEG and a structured report."""
