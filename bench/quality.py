"""`make bench-quality [SOURCE=path] [QUALITY_EPOCHS=N]`: the classifier on the notebook's pictures beside the
new defaults, on the same release, with the same epochs, seed and split, as a table of test metrics with
their 95% bootstrap intervals and the seconds each took.

notebook  every picture squashed to a 224 x 224 square (`dispatch ingest --square 224`, dataset 922), the
          classifier at 224
defaults  the long side at 512 with the aspect kept, letterboxed (`dispatch ingest`, dataset 921), the
          classifier at 384

`--source` ingests the release into a scratch folder first; `--data-root` uses datasets 921 and 922 already
ingested there (the GPU check's kit carries them).

`--backbones resnet18,densenet121` compares classifier backbones instead, on the defaults' dataset, with the
same epochs, split and starting weights (`--weights`, default none: from scratch). `--results FILE` appends
the table to FILE in docs/results.md's format (bench/results.py).

`--sr-model FILE --size N` compares the small pictures' enlargement instead, at one working size N (908:
twice the small pictures' long side): `--upscale bicubic` (dataset 923) against the super-resolution
network FILE (`make bench-sr`'s or a sr-train run's model_x2.pth; dataset 924), the classifier at N.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from bench.release_cache import ingest_in_process
from bench.results import append as append_results
from services.dispatcher.render import table
from shared.contract import ClassifyRequest
from shared.defaults import CLASSIFY, INGEST
from shared.results_table import with_interval
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


def train_one(
    data_root: Path, dataset_id: int, input_size: int, epochs: int, backbone: str = "resnet18", weights: str = "none"
) -> dict[str, Any]:
    request = ClassifyRequest(
        dataset_id=dataset_id, input_size=input_size, epochs=epochs, patience=epochs, batch_size=32, seed=0,
        backbone=backbone, weights=weights,
    )  # fmt: skip
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
@click.option("--backbones", default="", help="Compare these backbones (resnet18,densenet121) at the defaults.")
@click.option("--weights", default="none", show_default=True, help="Every classifier's start: none, auto, imagenet.")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path), help="Append the table here.")
def main(
    source: Path | None,
    data_root: Path | None,
    epochs: int,
    sr_model: Path | None,
    size: int,
    backbones: str,
    weights: str,
    results: Path | None,
) -> None:
    if (source is None) == (data_root is None):
        raise click.UsageError("give --source (a release to ingest) or --data-root (datasets 921 and 922 in it)")
    if sr_model and not source:
        raise click.UsageError("--sr-model compares two ingests of --source")
    setups = upscale_setups(sr_model, size) if sr_model else SETUPS
    chosen = [name.strip() for name in backbones.split(",") if name.strip()]
    if chosen:  # one setup, the defaults, once per backbone
        defaults = list(SETUPS)[-1]
        setups = {defaults: SETUPS[defaults]}
    with tempfile.TemporaryDirectory() as scratch:
        root = data_root or Path(scratch)
        ingest_s = ingest_both(source, root, setups) if source else {}
        if chosen:
            (dataset_id, _, input_size), seconds = next(iter(setups.values())), next(iter(ingest_s.values()), None)
            trained = {
                backbone: {**train_one(root, dataset_id, input_size, epochs, backbone, weights), "ingest_s": seconds}
                for backbone in chosen
            }
        else:
            trained = {
                name: {**train_one(root, dataset_id, side, epochs, weights=weights), "ingest_s": ingest_s.get(name)}
                for name, (dataset_id, _, side) in setups.items()
            }
    first = next(iter(trained.values()))
    what = (
        f"{'the backbones' if chosen else 'ResNet18'} ({first['weights']}) on {source or data_root} "
        f"({torch_device()}), {epochs} epochs, seed 0, the same split: "
        f"{first['split']['train']} train / {first['split']['val']} val / {first['test']['images']} test images"
    )
    click.echo(what)
    rows = [[label, *(with_interval(r["test"].get(key), r["test"]["intervals"].get(key)) for r in trained.values())]
            for label, key in ROWS]  # fmt: skip
    rows.append(["best val AUC (epoch)", *(f"{r['best_val_auc']:.3f} ({r['best_epoch']})" for r in trained.values())])
    rows.append(["ingest s", *("-" if r["ingest_s"] is None else f"{r['ingest_s']:.1f}" for r in trained.values())])
    rows.append(["training + test s", *(f"{r['train_s']:.1f}" for r in trained.values())])
    click.echo(table(rows, ["TEST [95% CI]", *trained]))
    if results:
        command = "python -m bench.quality " + " ".join(sys.argv[1:])
        append_results(results, what, command, ["test [95% CI]", *trained], rows)


if __name__ == "__main__":
    main()
