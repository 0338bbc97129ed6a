#!/usr/bin/env python3
"""A stand-in for nnUNetv2_train that sleeps, printing nnU-Net's epoch lines.

bench/dispatch.py points NNUNET_TRAIN_COMMAND at it, so that what is timed is the job system: queueing,
five workers taking a fold each, child processes, progress rows, the end of the folds. Each epoch takes a
fifth of SLEEP_FOLD_SECONDS; there are 5 epochs, or NNUNET_JOBS_EPOCHS (the project's trainer's setting,
which `dispatch train --epochs N` passes) where set. The fault tests use it for folds of a given length.

Where the fold task asks for epoch lines (FRACATLAS_EPOCH_LINES=1: tracking is on), each epoch also logs
what nnU-Net's trainer logs, through the project's trainer's logger, as a real fold does (bench/tracking.py).
"""

import os
import sys
import time
from pathlib import Path


def epoch_logger():  # noqa: ANN201 - the project's EpochLines (standard library only), where asked for
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from workers.nnunet.epoch_lines import EpochLines

    return EpochLines.from_environment()


def log_epoch(logger, epoch: int, started: float) -> None:  # noqa: ANN001
    """The values nnU-Net's MetaLogger hands its loggers at the end of an epoch, in its order."""
    logger.log("epoch_start_timestamps", started, epoch)
    for key, value in (("lrs", 0.01), ("train_losses", -0.1 * epoch), ("val_losses", -0.09 * epoch)):
        logger.log(key, value, epoch)
    logger.log("dice_per_class_or_region/class_1", 0.1 * epoch, epoch)
    logger.log("mean_fg_dice", 0.1 * epoch, epoch)
    logger.log("ema_fg_dice", 0.09 * epoch, epoch)
    logger.log("epoch_end_timestamps", time.time(), epoch)


if __name__ == "__main__":
    epoch_seconds = float(os.environ.get("SLEEP_FOLD_SECONDS", "10")) / 5
    epochs = int(os.environ.get("NNUNET_JOBS_EPOCHS", "5"))
    logger = epoch_logger()
    print(f"stand-in training: {' '.join(sys.argv[1:])}", flush=True)
    for epoch in range(epochs):
        started = time.time()
        print(f"Epoch {epoch}", flush=True)
        time.sleep(epoch_seconds)
        print(f"Epoch time: {epoch_seconds:.2f} s", flush=True)
        if logger is not None:
            log_epoch(logger, epoch, started)
