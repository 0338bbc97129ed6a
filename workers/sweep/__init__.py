"""`dispatch sweep`: the classifier's hyperparameter search, one Optuna study per sweep run, a job per trial."""
