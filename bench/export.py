"""`make bench-export [SOURCE=path]`: what a bundle weighs and what exporting and importing it cost, for
five folds and a classifier, against nnU-Net's own commands in the same run.

Site A (a local stack of its own) ingests SOURCE (or a synthetic release) at --size, trains five folds and
a classifier at a token budget (their weights are as large as a full training's: the network is the
plans'), then `dispatch export` writes the bundle; plain `nnUNetv2_export_model_to_zip` of the same folds is
the baseline. Site B (a second stack, an empty data root) runs `dispatch import`; plain
`nnUNetv2_install_pretrained_model_from_zip` into an empty folder is its baseline. The ratios are the
system's cost: checksums (twice on import), the classifier's ONNX, the model card, the job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from bench.stack import PROJECT, dispatch_json, own_stack
from services.dispatcher.render import table

DATASET = 970
TINY = ("--epochs", "1", "--iterations", "2")


def _run(env: dict[str, str], *args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    run = dispatch_json(env, *args, "--wait")
    if run.get("state") != "succeeded":
        raise click.ClickException(f"dispatch {' '.join(args)} ended {run.get('state')}: {run.get('error')}")
    return run, time.perf_counter() - started


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


@click.command()
@click.option("--source", default="", help="A release to train on [default: a synthetic one].")
@click.option("--size", default=256, show_default=True, help="The ingest's working size (the network follows it).")
def main(source: str, size: int) -> None:
    from workers.ingest.synthetic import make_synthetic_release

    tool = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        root = Path(scratch)
        release = source or str(make_synthetic_release(root / "release", fractured=20, non_fractured=16))
        quiet = {"MLFLOW_TRACKING_URI": "none", "OMP_NUM_THREADS": "1", "nnUNet_n_proc_DA": "0"}
        with own_stack(root / "site-a", GPU_WORKERS="2", **quiet) as env:
            dataset = ("--dataset-id", str(DATASET))
            _run(env, "ingest", "--source", release, *dataset, "--size", str(size))
            _run(env, "preprocess", *dataset)
            trained, train_s = _run(env, "train", *dataset, "--folds", "all", *TINY)
            classified, _ = _run(env, "classify", *dataset, "--input", "image", "--epochs", "1", "--weights", "none")
            bundle = root / "bundle.zip"
            exported, export_s = _run(env, "export", trained["ref"], "--classifier", classified["ref"], "--out",
                                      str(bundle))  # fmt: skip
            plain = root / "plain.zip"
            nnunet = {**env, "nnUNet_raw": f"{env['DATA_ROOT']}/nnUNet_raw",
                      "nnUNet_preprocessed": f"{env['DATA_ROOT']}/nnUNet_preprocessed",
                      "nnUNet_results": f"{env['DATA_ROOT']}/nnUNet_results"}  # fmt: skip
            plain_export_s = _timed(
                [str(tool / "nnUNetv2_export_model_to_zip"), "-d", str(DATASET), "-o", str(plain), "-c", "2d",
                 "-tr", trained["params"]["trainer"], "-p", trained["params"]["plans"], "-f", "0", "1", "2", "3", "4"],
                nnunet,
            )  # fmt: skip
        with own_stack(root / "site-b", **quiet) as env:
            _imported, import_s = _run(env, "import", str(bundle))
        elsewhere = {**os.environ, "nnUNet_results": str(root / "plain-results")}
        plain_import_s = _timed([str(tool / "nnUNetv2_install_pretrained_model_from_zip"), str(plain)], elsewhere)
        sizes = bundle.stat().st_size / 2**20, plain.stat().st_size / 2**20
    rows = [
        ["size (MB)", f"{sizes[0]:.1f}", f"{sizes[1]:.1f}", f"{sizes[0] / sizes[1]:.2f}"],
        ["export (s)", f"{export_s:.1f}", f"{plain_export_s:.1f}", f"{export_s / plain_export_s:.2f}"],
        ["import (s)", f"{import_s:.1f}", f"{plain_import_s:.1f}", f"{import_s / plain_import_s:.2f}"],
    ]  # fmt: skip
    click.echo(f"five folds of dataset {DATASET} at {size} px ({train_s:.0f} s to train at {' '.join(TINY)}) "
               f"and a ResNet18 classifier: {exported['metrics']['files']} files")  # fmt: skip
    click.echo(table(rows, ["BUNDLE", "DISPATCH", "NNU-NET ALONE", "RATIO"]))


if __name__ == "__main__":
    main()
