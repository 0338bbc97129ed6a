"""`make bench-classify [SOURCE=path]`: training images per second of the classifier against a plain
torchvision baseline, in one run, on this machine.

baseline  an ImageFolder-style dataset that decodes each JPEG every epoch (EXIF applied, grey, resized),
          random flips, a DataLoader with worker processes, the same ResNet18 and batch
system    the project's loop: the ingest's cache held on the device as uint8, augmentation there
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.release_cache import ingest_in_process
from workers.classifier.data import load_set
from workers.classifier.model import build_model
from workers.classifier.train import TrainConfig, train


class JpegFolder(Dataset):
    """What the notebook did: images/<class>/*.jpg decoded on every access (truncated JPEGs accepted, as
    anyone training on the release has to)."""

    def __init__(self, release: Path, size: int) -> None:
        self.items = [
            (path, label)
            for label, folder in ((1, "Fractured"), (0, "Non_fractured"))
            for path in sorted((release / "images" / folder).glob("*.jpg"))
        ]
        self.transform = transforms.Compose(
            [
                transforms.Resize((size, size)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize([0.5], [0.25]),
            ]
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        ImageFile.LOAD_TRUNCATED_IMAGES = True  # where the decoding happens: in each DataLoader worker
        with Image.open(path) as image:
            image.load()
            return self.transform(ImageOps.exif_transpose(image).convert("L")), label


def baseline_speed(release: Path, size: int, batch_size: int, epochs: int, device: torch.device) -> float:
    """Images per second over the epochs after the first."""
    loader = DataLoader(
        JpegFolder(release, size), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=os.cpu_count() or 1
    )
    model = build_model(1).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    speeds = []
    for _ in range(epochs):
        started, seen = time.perf_counter(), 0
        for images, labels in loader:
            loss = F.cross_entropy(model(images.to(device)), labels.to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            seen += len(labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        speeds.append(seen / (time.perf_counter() - started))
    return sum(speeds[1:]) / len(speeds[1:]) if len(speeds) > 1 else speeds[0]


def system_speed(cache: Path, batch_size: int, epochs: int, device: torch.device) -> float:
    classification = load_set(cache)
    images = torch.from_numpy(classification.images[:, None].copy()).to(device)
    labels = torch.from_numpy(classification.labels).to(device)
    everything = torch.arange(len(labels), device=device)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, patience=epochs)
    trained = train(build_model(1), images, labels, everything, everything[:64], config, lambda _: None, lambda: None)
    return trained.train_images_per_s


@click.command()
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--size", default=224, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--epochs", default=3, show_default=True, help="The first one warms up and is not counted.")
def main(source: Path, size: int, batch_size: int, epochs: int) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        cache = ingest_in_process(source, Path(scratch), square=size)  # the baseline's squares too
        click.echo(f"cache of {source} at {size} px built once by ingest: {time.perf_counter() - started:.1f} s")
        system = system_speed(cache, batch_size, epochs, device)
    baseline = baseline_speed(source, size, batch_size, epochs, device)
    click.echo(f"ResNet18 training on {device}, {size}x{size}, batch {batch_size}, images/s after the first epoch:")
    click.echo(f"  baseline (ImageFolder-style JPEG decoding + DataLoader)      {baseline:8.1f}")
    click.echo(f"  job system's loop (cache on the device, augmentation there)  {system:8.1f}")
    click.echo(f"  ratio: {system / baseline:.2f}x")


if __name__ == "__main__":
    main()
