#!/usr/bin/env python3
"""A stand-in for nnUNetv2_train that sleeps, printing nnU-Net's epoch lines.

bench/dispatch.py points NNUNET_TRAIN_COMMAND at it, so that what is timed is the job system: queueing,
five workers taking a fold each, child processes, progress rows, the end of the folds. Each epoch takes a
fifth of SLEEP_FOLD_SECONDS; there are 5 epochs, or NNUNET_JOBS_EPOCHS (the project's trainer's setting,
which `dispatch train --epochs N` passes) where set. The fault tests use it for folds of a given length.
"""

import os
import sys
import time

if __name__ == "__main__":
    epoch_seconds = float(os.environ.get("SLEEP_FOLD_SECONDS", "10")) / 5
    epochs = int(os.environ.get("NNUNET_JOBS_EPOCHS", "5"))
    print(f"stand-in training: {' '.join(sys.argv[1:])}", flush=True)
    for epoch in range(epochs):
        print(f"Epoch {epoch}", flush=True)
        time.sleep(epoch_seconds)
        print(f"Epoch time: {epoch_seconds:.2f} s", flush=True)
