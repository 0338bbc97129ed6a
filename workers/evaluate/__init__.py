"""External validation: a cohort from another site read as a release, predicted by a trained model's folds
and classifier, scored beside the internal test split with bootstrap intervals and calibration, never on
pictures the model saw."""
