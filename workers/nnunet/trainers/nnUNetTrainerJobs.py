"""The project's nnU-Net trainer, found by nnU-Net through `nnUNet_extTrainer` (set by the workers).

nnU-Net's own trainers have fixed lengths; this one reads its length and checkpoint period from the
environment, which the fold task sets from `dispatch train --epochs N`:
  NNUNET_JOBS_EPOCHS (1000), NNUNET_JOBS_ITERATIONS (250), NNUNET_JOBS_VAL_ITERATIONS (iterations / 5),
  NNUNET_JOBS_SAVE_EVERY (5: a lost worker costs at most five epochs, not nnU-Net's fifty).
When the fold task asks for it (FRACATLAS_EPOCH_LINES), a logger joins nnU-Net's own MetaLogger and prints
each epoch's figures as one line, which the fold task sends to the job's MLflow run
(workers/nnunet/epoch_lines.py).
Checkpoints are written under a temporary name and renamed into place: a worker killed while one is being
written leaves the previous one whole, and the fold resumes from it (`--c`) instead of failing to load it.
"""

import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

CUDA = torch.device("cuda")  # nnU-Net's default device


def _tracking_logger() -> object | None:
    try:
        from workers.nnunet.epoch_lines import EpochLines
    except ImportError:  # the trainer used outside this project's environment
        return None
    return EpochLines.from_environment()


class nnUNetTrainerJobs(nnUNetTrainer):  # noqa: N801 - nnU-Net finds trainers by this naming scheme
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = CUDA,
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("NNUNET_JOBS_EPOCHS", "1000"))
        self.num_iterations_per_epoch = int(os.environ.get("NNUNET_JOBS_ITERATIONS", "250"))
        # nnU-Net validates one iteration for every five it trains.
        default_val = max(1, self.num_iterations_per_epoch // 5)
        self.num_val_iterations_per_epoch = int(os.environ.get("NNUNET_JOBS_VAL_ITERATIONS", default_val))
        self.save_every = int(os.environ.get("NNUNET_JOBS_SAVE_EVERY", "5"))
        self.tracking = _tracking_logger()
        if self.tracking is not None:
            self.logger.loggers.append(self.tracking)

    def save_checkpoint(self, filename: str) -> None:
        partial = f"{filename}.partial"
        super().save_checkpoint(partial)
        if os.path.exists(partial):  # not written on other ranks or with checkpointing disabled
            os.replace(partial, filename)
