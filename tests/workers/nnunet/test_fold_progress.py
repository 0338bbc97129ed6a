"""A fold's progress read from nnU-Net's log lines as nnU-Net prints them, a label without any foreground in
the epoch's validation batches (its pseudo Dice NaN) and several labels included."""

from __future__ import annotations

import math

from workers.nnunet.folds import EpochProgress

EPOCH = [
    "2026-12-06 16:21:10.000001: Epoch 0",
    "2026-12-06 16:21:10.000002: Current learning rate: 0.01",
    "2026-12-06 16:21:19.534061: train_loss -0.1204",
    "2026-12-06 16:21:19.534062: val_loss -0.0311",
    "2026-12-06 16:21:19.534063: Pseudo dice {dice}",
    "2026-12-06 16:21:19.534064: Epoch time: 9.53 s",
]


def feed(progress: EpochProgress, dice: str) -> list[bool]:
    return [progress.feed(line.format(dice=dice)) for line in EPOCH]


def test_a_nan_pseudo_dice_is_read_and_left_out_of_the_message() -> None:
    progress = EpochProgress(total=2)
    assert feed(progress, "[np.float32(nan)]") == [False] * 5 + [True]
    assert math.isnan(progress.values["pseudo_dice"][0]) and progress.completed == 1
    assert progress.message() == "epoch 1/2, train_loss -0.1204, val_loss -0.0311, 9.5 s/epoch"


def test_several_labels_show_their_mean() -> None:
    progress = EpochProgress(total=2)
    feed(progress, "[np.float32(0.5), np.float32(nan), np.float32(0.7)]")
    assert progress.values["pseudo_dice"][0] == 0.5 and len(progress.values["pseudo_dice"]) == 3
    assert "pseudo Dice 0.600" in progress.message()
    feed(progress, "[0.25]")
    assert progress.values["pseudo_dice"] == [0.25] and "pseudo Dice 0.250" in progress.message()
