"""Training images per second of the classifier's own loop (bench/gpu_check.sh): `--images` random
pictures held on the device as uint8, augmented there, bf16 and channels_last on CUDA. Prints JSON."""

from __future__ import annotations

import json

import click
import torch

from workers.classifier.model import build_model
from workers.classifier.train import TrainConfig, train


@click.command()
@click.option("--images", default=4083, show_default=True, help="The release's size.")
@click.option("--size", default=224, show_default=True)
@click.option("--channels", default=1, show_default=True, type=click.IntRange(1, 2))
@click.option("--batch-size", default=256, show_default=True)
@click.option("--epochs", default=4, show_default=True, help="The first one warms up and is not counted.")
@click.option("--device", default="cuda" if torch.cuda.is_available() else "cpu", show_default=True)
def main(images: int, size: int, channels: int, batch_size: int, epochs: int, device: str) -> None:
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (images, channels, size, size), dtype=torch.uint8, generator=generator).to(device)
    labels = (torch.rand(images, generator=generator) < 0.18).long().to(device)
    everything = torch.arange(images, device=device)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, patience=epochs)
    model = build_model(channels)
    trained = train(model, data, labels, everything, everything[:512], config, lambda _: None, lambda: None)
    speed = trained.train_images_per_s
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    click.echo(
        json.dumps(
            {
                "device": name,
                "images": images,
                "size": size,
                "batch_size": batch_size,
                "images_per_s": round(speed, 1),
                "epoch_s": round(images / speed, 3),
                "per_epoch_images_per_s": [round(epoch["images_per_s"], 1) for epoch in trained.history],
            }
        )
    )


if __name__ == "__main__":
    main()
