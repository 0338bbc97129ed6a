"""The ingest: a radiograph release read and checked, its pictures decoded, hashed into duplicate groups
and split, written as nnU-Net's raw dataset and the classifier's cache (docs/ingest.md)."""
