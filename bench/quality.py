"""`make bench-quality [SOURCE=path] [QUALITY_EPOCHS=N]`: the classifier on the notebook's pictures beside the
new defaults, on the same release, with the same epochs, seed and split, as a table of test metrics with
their 95% bootstrap intervals and the seconds each took.

notebook  every picture squashed to a 224 x 224 square (`dispatch ingest --square 224`, dataset 922), the
          classifier at 224
defaults  the long side at 512 with the aspect kept, letterboxed (`dispatch ingest`, dataset 921), the
          classifier at 384

`--source` ingests the release into a scratch folder first; `--data-root` uses datasets 921 and 922 already
ingested there (the GPU check's kit carries them).

`--sr-model FILE --size N` compares the small pictures' enlargement instead, at one working size N (908:
twice the small pictures' long side): `--upscale bicubic` (dataset 923) against the super-resolution
network FILE (`make bench-sr`'s or a sr-train run's model_x2.pth; dataset 924), the classifier at N.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import click

from bench.release_cache import ingest_in_process
from services.dispatcher.render import table, with_interval
from shared.contract import ClassifyRequest
from shared.defaults import CLASSIFY, INGEST
from shared.settings import Settings
from workers.classifier.fit import fit_classifier
from workers.device import torch_device

ROWS = (
    ("ROC AUC", "roc_auc"),
    ("PR AUC", "pr_auc"),
    ("balanced accuracy", "balanced_accuracy"),
    ("sensitivity at 90% specificity", "sensitivity_at_90_specificity"),
)


# name -> (dataset id, ingest options, classifier input size)
SETUPS: dict[str, tuple[int, dict[str, Any], int]] = {
    "notebook 224 square": (922, {"square": 224}, 224),
    f"long side {INGEST['size']} -> {CLASSIFY['input_size']}": (921, {}, CLASSIFY["input_size"]),
}


def upscale_setups(model: Path, size: int) -> dict[str, tuple[int, dict[str, Any], int]]:
    return {
        f"bicubic at {size}": (923, {"size": size}, size),
        f"sr at {size}": (924, {"size": size, "upscale": "sr", "upscale_models": {2: str(model.resolve())}}, size),
    }


def ingest_both(source: Path, data_root: Path, setups: dict[str, tuple[int, dict[str, Any], int]]) -> dict[str, float]:
    """Each setup's dataset from the same release; the seconds each ingest took."""
    seconds = {}
    for name, (dataset_id, options, _) in setups.items():
        started = time.perf_counter()
        ingest_in_process(source, data_root, dataset_id, **options)
        seconds[name] = time.perf_counter() - started
    return seconds


def train_one(data_root: Path, dataset_id: int, input_size: int, epochs: int) -> dict[str, Any]:
    request = ClassifyRequest(
        dataset_id=dataset_id, input_size=input_size, epochs=epochs, patience=epochs, batch_size=32, seed=0
    )
    started = time.perf_counter()
    metrics, _ = fit_classifier(
        Settings(DATA_ROOT=data_root), request, data_root / f"out-{dataset_id}", lambda _: None, lambda: None
    )
    return {**metrics, "train_s": time.perf_counter() - started}


@click.command()
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--epochs", default=10, show_default=True)
@click.option("--sr-model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--size", default=908, show_default=True, help="The working size of the --sr-model comparison.")
def main(source: Path | None, data_root: Path | None, epochs: int, sr_model: Path | None, size: int) -> None:
    if (source is None) == (data_root is None):
        raise click.UsageError("give --source (a release to ingest) or --data-root (datasets 921 and 922 in it)")
    if sr_model and not source:
        raise click.UsageError("--sr-model compares two ingests of --source")
    setups = upscale_setups(sr_model, size) if sr_model else SETUPS
    with tempfile.TemporaryDirectory() as scratch:
        root = data_root or Path(scratch)
        ingest_s = ingest_both(source, root, setups) if source else {}
        results = {
            name: {**train_one(root, dataset_id, input_size, epochs), "ingest_s": ingest_s.get(name)}
            for name, (dataset_id, _, input_size) in setups.items()
        }
    first = next(iter(results.values()))
    click.echo(
        f"ResNet18 from scratch on {source or data_root} ({torch_device()}), {epochs} epochs, seed 0, "
        f"the same split: "
        f"{first['split']['train']} train / {first['split']['val']} val / {first['test']['images']} test images"
    )
    rows = [[label, *(with_interval(r["test"].get(key), r["test"]["intervals"].get(key)) for r in results.values())]
            for label, key in ROWS]  # fmt: skip
    rows.append(["best val AUC (epoch)", *(f"{r['best_val_auc']:.3f} ({r['best_epoch']})" for r in results.values())])
    rows.append(["ingest s", *("-" if r["ingest_s"] is None else f"{r['ingest_s']:.1f}" for r in results.values())])
    rows.append(["training + test s", *(f"{r['train_s']:.1f}" for r in results.values())])
    click.echo(table(rows, ["TEST [95% CI]", *results]))


if __name__ == "__main__":
    main()
