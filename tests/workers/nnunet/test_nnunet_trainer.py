"""The project's nnU-Net trainer on its own: checkpoints land whole or not at all."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from workers.nnunet.commands import TRAINERS_DIR


@pytest.fixture(scope="module")
def trainer_class() -> type:
    # nnU-Net finds the trainer by its folder (nnUNet_extTrainer), not as a package module.
    spec = importlib.util.spec_from_file_location("nnUNetTrainerJobs", TRAINERS_DIR / "nnUNetTrainerJobs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.nnUNetTrainerJobs


def test_a_checkpoint_interrupted_while_written_leaves_the_previous_one_whole(
    trainer_class: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    latest = tmp_path / "checkpoint_latest.pth"

    def write_epoch(epoch: int, killed_halfway: bool) -> Callable[[object, str], None]:
        """nnU-Net's save_checkpoint, writing a real torch file, or half of one before the worker dies."""

        def save(self: object, filename: str) -> None:
            buffer = io.BytesIO()
            torch.save({"current_epoch": epoch}, buffer)
            payload = buffer.getvalue()
            Path(filename).write_bytes(payload[: len(payload) // 2] if killed_halfway else payload)
            if killed_halfway:
                raise KeyboardInterrupt("the worker was killed")

        return save

    trainer = object.__new__(trainer_class)  # save_checkpoint needs no initialised network here
    monkeypatch.setattr(nnUNetTrainer, "save_checkpoint", write_epoch(3, killed_halfway=False))
    trainer.save_checkpoint(str(latest))
    monkeypatch.setattr(nnUNetTrainer, "save_checkpoint", write_epoch(4, killed_halfway=True))
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(str(latest))
    assert torch.load(latest, weights_only=False) == {"current_epoch": 3}
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "checkpoint_latest.pth",
        "checkpoint_latest.pth.partial",
    ]
