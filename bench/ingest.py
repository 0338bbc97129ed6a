"""`make bench-ingest [SOURCE=path] [FULL_SIZE=1]`: ingest through the job system against the sequential
baseline, in one run, on this machine. FULL_SIZE=1 turns the 160-image mini set into a release of the full
one's size and make-up by linking its pictures under new names: fractured ones 9 times, the others 42
times (720 + 3,360 = 4,080 images; the release has 717 + 3,366 = 4,083).

Then the same pictures as a COCO release and as a COCO release of DICOM files (bench/coco_release.py; not at
FULL_SIZE) against the FracAtlas layout, alternated on one stack at the defaults: the COCO reader's and the
DICOM reader's time beside the FracAtlas reader's.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from bench.baseline_ingest import baseline_ingest
from bench.coco_release import as_coco_release, as_dicom_release
from bench.stack import dispatch_json, own_stack
from workers.ingest.fracatlas import COCO_RELATIVE
from workers.nnunet.nifti import read_case

FULL_SIZE_COPIES = {"Fractured": 9, "Non_fractured": 42}


def replicate(source: Path, copies: dict[str, int], target: Path) -> Path:
    """A release with each folder's pictures linked `copies[folder]` times, the COCO file extended to match."""
    coco = json.loads((source / COCO_RELATIVE).read_text())
    out = {**coco, "images": [], "annotations": []}
    for folder in ("Fractured", "Non_fractured"):
        (target / "images" / folder).mkdir(parents=True)
    rows = (source / "dataset.csv").read_text().splitlines()
    csv_rows = [rows[0]]
    fractured = {path.name for path in (source / "images" / "Fractured").glob("*.jpg")}
    for k in range(max(copies.values())):
        for folder, count in copies.items():
            if k < count:
                for path in sorted((source / "images" / folder).glob("*.jpg")):
                    os.link(path, target / "images" / folder / f"R{k:02d}{path.name}")
        if k < copies["Fractured"]:
            offset = k * 100_000
            out["images"] += [
                {**i, "id": i["id"] + offset, "file_name": f"R{k:02d}{i['file_name']}"} for i in coco["images"]
            ]
            out["annotations"] += [
                {**a, "id": a["id"] + offset, "image_id": a["image_id"] + offset} for a in coco["annotations"]
            ]
        csv_rows += [
            f"R{k:02d}{row}"
            for row in rows[1:]
            if k < copies["Fractured" if row.split(",", 1)[0] in fractured else "Non_fractured"]
        ]
    (target / COCO_RELATIVE).parent.mkdir(parents=True)
    (target / COCO_RELATIVE).write_text(json.dumps(out))
    (target / "dataset.csv").write_text("\n".join(csv_rows) + "\n")
    return target


# The baseline's work: 224 squares of the fractured pictures only (the notebook's dataset).
BASELINE_LAYOUT = ("--square", "224", "--negatives", "none")


def system_ingest(
    source: Path, data_root: Path, repeats: int, tracking: bool
) -> tuple[float, list[float], dict, float]:
    """On a freshly started stack: one ingest of `source` in the baseline's layout (cold: the pool processes
    and MLflow's server have done nothing yet), `repeats` more (warm), into dataset ids 921, 922, ...; then
    one at the defaults (long side 512, negatives 1). Their times and the last warm run."""
    times, runs = [], []
    settings = {} if tracking else {"MLFLOW_TRACKING_URI": "none"}
    with own_stack(data_root, GPU_WORKERS="0", **settings) as env:
        for repeat in range(repeats + 2):
            layout = BASELINE_LAYOUT if repeat <= repeats else ()
            started = time.perf_counter()
            ingest = ("ingest", "--source", str(source), "--dataset-id", str(921 + repeat), *layout, "--wait")
            latest = dispatch_json(env, *ingest)
            times.append(time.perf_counter() - started)
            if latest["state"] != "succeeded":
                raise click.ClickException(f"the ingest failed: {latest['error']}")
            runs.append(latest)
    return times[0], times[1:-1], runs[-2], times[-1]


def layouts_ingest(sources: list[Path], data_root: Path, repeats: int) -> list[list[float]]:
    """Each release of the same pictures at the defaults, alternated on one stack (a cold run of each first,
    not counted); their times, in the order given."""
    times: list[list[float]] = [[] for _ in sources]
    with own_stack(data_root, GPU_WORKERS="0", MLFLOW_TRACKING_URI="none") as env:
        for repeat in range(repeats + 1):
            for index, source in enumerate(sources):
                started = time.perf_counter()
                dataset = str(941 + len(sources) * repeat + index)
                run = dispatch_json(env, "ingest", "--source", str(source), "--dataset-id", dataset, "--wait")
                if run["state"] != "succeeded":
                    raise click.ClickException(f"the ingest of {source} failed: {run['error']}")
                if repeat:
                    times[index].append(time.perf_counter() - started)
    return times


def agreement(dataset: Path, baseline_labels: Path) -> float:
    """Median IoU between the system's labels and the baseline's."""
    scores = []
    for label in list((dataset / "labelsTr").glob("*.nii.gz")) + list((dataset / "labelsTs").glob("*.nii.gz")):
        ours, theirs = read_case(label).astype(bool), read_case(baseline_labels / label.name).astype(bool)
        scores.append((ours & theirs).sum() / max((ours | theirs).sum(), 1))
    return float(np.median(scores))


@click.command()
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--full-size", is_flag=True, help="Link the pictures into a release of the full one's size.")
@click.option("--repeats", default=3, show_default=True, help="Warm ingests after the cold one; their median counts.")
@click.option("--tracking/--no-tracking", default=True, show_default=True, help="The stack's own MLflow, or none.")
def main(source: Path, full_size: bool, repeats: int, tracking: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        release = replicate(source, FULL_SIZE_COPIES, work / "release") if full_size else source
        started = time.perf_counter()
        images = baseline_ingest(release, work / "baseline")
        baseline_s = time.perf_counter() - started
        # The baseline runs for a minute and averages this shared machine's noise over it; one ingest of
        # a few seconds does not, so the system's warm figure is the median of several.
        cold_s, times, run, defaults_s = system_ingest(release, work / "var", repeats, tracking)
        system_s = statistics.median(times)
        iou = agreement(Path(run["artifacts"]["dataset"]), work / "baseline" / "labels")
        cases = run["metrics"]["cases"]
        click.echo(f"ingest of {images} images ({cases} into nnU-Net's layout) on {os.cpu_count()} cores")
        click.echo(f"  baseline (sequential, full decode): {baseline_s:8.2f} s  {images / baseline_s:7.1f} images/s")
        click.echo(
            f"  job system, cold (first after up) : {cold_s:8.2f} s  {images / cold_s:7.1f} images/s"
            f"   speed-up {baseline_s / cold_s:.2f}x"
        )
        click.echo(
            f"  job system, warm (dispatch --wait): {system_s:8.2f} s  {images / system_s:7.1f} images/s"
            f"   speed-up {baseline_s / system_s:.2f}x  (median of {', '.join(f'{t:.2f}' for t in times)})"
        )
        click.echo(f"  label agreement with baseline (median IoU): {iou:.3f}")
        click.echo(
            f"  at the defaults (long side 512, every picture a case, negatives 1:1):     {defaults_s:8.2f} s  "
            f"{images / defaults_s:7.1f} images/s"
        )
        coco = as_coco_release(release, work / "coco")
        # At FULL_SIZE each linked copy would need a DICOM file of its own (its own SOP Instance UID).
        dicom = None if full_size else as_dicom_release(coco, work / "dicom")
        layouts = layouts_ingest([release, coco, *([dicom] if dicom else [])], work / "layouts", repeats)
        fracatlas_s, coco_s = statistics.median(layouts[0]), statistics.median(layouts[1])
        click.echo(
            f"  the same pictures as a COCO release, at the defaults (median of {repeats}, alternated): FracAtlas "
            f"layout {fracatlas_s:.2f} s, COCO layout {coco_s:.2f} s, ratio COCO/FracAtlas {coco_s / fracatlas_s:.2f}"
        )
        if dicom:
            dicom_s = statistics.median(layouts[2])
            click.echo(
                f"  and as DICOM files (12-bit DX, uncompressed) in that COCO release: {dicom_s:.2f} s, "
                f"ratio DICOM/JPEG {dicom_s / coco_s:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
