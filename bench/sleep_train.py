#!/usr/bin/env python3
"""A stand-in for nnUNetv2_train that sleeps SLEEP_FOLD_SECONDS, printing nnU-Net's epoch lines.

bench/dispatch.py points NNUNET_TRAIN_COMMAND at it, so that what is timed is the job system: queueing,
five workers taking a fold each, child processes, progress rows, the end of the folds.
"""

import os
import sys
import time

EPOCHS = 5

if __name__ == "__main__":
    seconds = float(os.environ.get("SLEEP_FOLD_SECONDS", "10"))
    print(f"stand-in training: {' '.join(sys.argv[1:])}", flush=True)
    for epoch in range(EPOCHS):
        print(f"Epoch {epoch}", flush=True)
        time.sleep(seconds / EPOCHS)
        print(f"Epoch time: {seconds / EPOCHS:.2f} s", flush=True)
