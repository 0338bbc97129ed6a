"""nnU-Net v2 through its own command-line tools: plan and preprocess, the cross-validation folds, the
project's trainer, prediction, ensembling, evaluation and NIfTI I/O (docs/training.md)."""
