"""Train one scale's network on random crops of the training pairs, with checkpoints to resume from.

L1 loss (EDSR's: sharper than L2 for the same PSNR), Adam, a warm-up then a cosine schedule, random flips and
quarter turns of each crop. Every `save_every` iterations the model, the optimiser, the schedule and the
random state are saved: a job that is re-queued (a worker stopped, killed) resumes at its last save.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from workers.learning_rate import warmup_cosine
from workers.superres.network import NetworkShape, SuperResolution
from workers.superres.pairs import Pair
from workers.superres.quality import psnr

VALIDATION_CROP = 192  # of the input: the held-out pictures' centres, checked at every save


@dataclass(frozen=True)
class TrainSettings:
    iterations: int
    patch: int  # input pixels per side of a crop
    batch_size: int
    learning_rate: float
    save_every: int
    seed: int


@dataclass
class Trained:
    model: SuperResolution
    history: list[dict[str, float]]
    resumed_at: int  # the iteration of the checkpoint it went on from; 0 for a fresh start


@dataclass
class Step:
    iteration: int
    iterations: int
    loss: float
    val_psnr: float
    crops_per_s: float


def _crops(pairs: list[Pair], count: int, patch: int, scale: int, generator: torch.Generator) -> tuple[Any, Any]:
    """`count` random (input, truth) crops, each picture chosen in proportion to its area, flipped and
    turned at random; float tensors in [0, 1]."""
    areas = torch.tensor([pair.small.size for pair in pairs], dtype=torch.float64)
    chosen = torch.multinomial(areas, count, replacement=True, generator=generator).tolist()
    inputs, truths = [], []
    for index in chosen:
        pair = pairs[index]
        rows, columns = pair.small.shape
        top = int(torch.randint(0, rows - patch + 1, (1,), generator=generator))
        left = int(torch.randint(0, columns - patch + 1, (1,), generator=generator))
        small = pair.small[top : top + patch, left : left + patch]
        truth = pair.truth[scale * top : scale * (top + patch), scale * left : scale * (left + patch)]
        turns, flip = (
            int(torch.randint(0, 4, (1,), generator=generator)),
            bool(torch.randint(0, 2, (1,), generator=generator)),
        )
        small, truth = np.rot90(small, turns), np.rot90(truth, turns)
        if flip:
            small, truth = small[:, ::-1], truth[:, ::-1]
        inputs.append(np.ascontiguousarray(small))
        truths.append(np.ascontiguousarray(truth))
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)[:, None]).float() / 255  # noqa: E731
    return as_tensor(inputs), as_tensor(truths)


def _centre(pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = pair.small.shape
    side = min(VALIDATION_CROP, rows, columns)
    top, left = (rows - side) // 2, (columns - side) // 2
    small = pair.small[top : top + side, left : left + side]
    return small, pair.truth[scale * top : scale * (top + side), scale * left : scale * (left + side)]


@torch.no_grad()
def validation_psnr(model: SuperResolution, held_out: list[Pair], device: torch.device) -> float:
    """Mean PSNR over the held-out pictures' centre crops: cheap enough for every save."""
    model.eval()
    values = []
    scale = model.shape.scale
    for pair in held_out:
        small, truth = _centre(pair, scale)
        x = torch.from_numpy(np.ascontiguousarray(small)).to(device)[None, None].float() / 255
        estimate = model(x)[0, 0].clamp(0, 1).mul(255).round().byte().cpu().numpy()
        values.append(psnr(truth[scale:-scale, scale:-scale], estimate[scale:-scale, scale:-scale]))
    model.train()
    return float(np.mean(values))


def train(
    shape: NetworkShape,
    settings: TrainSettings,
    pairs: list[Pair],
    held_out: list[Pair],
    checkpoint: Path,
    device: torch.device,
    on_step: Callable[[Step], None],
    check: Callable[[], None],
    on_resume: Callable[[list[dict[str, float]]], None],
) -> Trained:
    """Train (or resume from `checkpoint`) to `settings.iterations`; `on_resume` gets the saved history first."""
    torch.manual_seed(settings.seed)
    model = SuperResolution(shape).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, warmup_cosine(settings.iterations, 0.02))
    generator = torch.Generator().manual_seed(settings.seed)
    done, history = 0, []
    resumed_at = 0
    if checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        done, history = saved["iteration"], saved["history"]
        on_resume(history)
    resumed_at = done
    model.train()
    losses, started = [], time.perf_counter()
    for iteration in range(done + 1, settings.iterations + 1):
        check()
        inputs, truths = _crops(pairs, settings.batch_size, settings.patch, shape.scale, generator)
        loss = F.l1_loss(model(inputs.to(device)), truths.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if iteration % settings.save_every == 0 or iteration == settings.iterations:
            seconds = time.perf_counter() - started
            step = Step(
                iteration,
                settings.iterations,
                float(np.mean(losses)),
                validation_psnr(model, held_out, device),
                len(losses) * settings.batch_size / seconds,
            )
            history.append(dict(step.__dict__))
            _save(checkpoint, model, optimiser, schedule, generator, iteration, history)
            on_step(step)
            losses, started = [], time.perf_counter()
    return Trained(model.eval(), history, resumed_at)


def _save(
    checkpoint: Path, model: Any, optimiser: Any, schedule: Any, generator: Any, iteration: int, history: Any
) -> None:
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    temporary = checkpoint.with_name(checkpoint.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "generator": generator.get_state(),
            "iteration": iteration,
            "history": history,
        },
        temporary,
    )
    temporary.replace(checkpoint)  # a kill mid-save leaves the previous checkpoint whole
