"""The data root's layout: every folder under DATA_ROOT, the names nnU-Net gives datasets and trainings, and
the files of the classification cache. The one module that spells them (docs/design.md, "Layout").

    DATA_ROOT/
      nnUNet_raw/Dataset921_FracAtlas/           the ingest's dataset (imagesTr, labelsTr, imagesTs, labelsTs)
      nnUNet_preprocessed/Dataset921_FracAtlas/  nnU-Net's plans, preprocessed data and splits_final.json
      nnUNet_results/Dataset921_FracAtlas/<trainer>__<plans>__<configuration>/fold_<N>/
      classification/Dataset921_FracAtlas/       images.npy, labels.csv, fracture_probability_r<N>.npy
      staging/run-<N>/                           an ingest in progress (renamed into place at its end)
      runs/r<N>/                                 each run's logs and outputs
      synthetic/FracAtlas/                       the demo's synthetic release
      stack/, logs/, redis/                      the local stack: supervisord, its programs' logs, Redis's AOF
      mlflow/                                    the local stack's MLflow server (stores, artifacts)
      tracking/spool/                            what jobs could not send to MLflow yet
      compose/                                   generated compose files (*.override.yml, worker-host.yml), secrets.env
      imported/r<N>/                             a `dispatch import`'s classifier, picture hashes and model card
      private/                                   readable by its owner alone: the pseudonym key and, per
                                                 dataset, the map from DICOM pseudonyms to files and UIDs;
                                                 predictions/r<N>/, a prediction's DICOM SEGs and reports
                                                 (they carry the patient's header) where no --out was given
      jobs.sqlite                                the job table in the local mode
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from shared.errors import InputError

DATASET_NAME = "FracAtlas"
CACHE_IMAGES, CACHE_LABELS = "images.npy", "labels.csv"
CACHE_GEOMETRY = "geometry.json"  # the cache's square side, and whether the pictures were squashed into it
GROUPS_FILE = "groups.json"  # in a raw dataset: its groups of duplicate pictures (workers/ingest/duplicates.py)


def dataset_name(dataset_id: int) -> str:
    """nnU-Net's folder name of a dataset: Dataset921_FracAtlas."""
    return f"Dataset{dataset_id:03d}_{DATASET_NAME}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def case_id(file_name: str) -> str:
    """nnU-Net's case id of a picture: its file name (a path under the images folder, for a COCO release)
    without the extension, folders joined by '__', other characters than letters, digits, '.', '_' and '-'
    as '_'. The ingest names cases by it and the classifier finds them by it."""
    stem = os.path.splitext(file_name)[0]  # Path(...).stem, at a tenth of the cost for 4,083 images
    return stem if "/" not in stem and not _UNSAFE.search(stem) else _UNSAFE.sub("_", stem.replace("/", "__"))


def existing_datasets(root: Path, dataset_id: int) -> list[Path]:
    """The folders of `dataset_id` under an nnU-Net root, whatever their name after the id (nnU-Net's rule)."""
    return sorted(root.glob(f"Dataset{dataset_id:03d}_*")) if root.is_dir() else []


def find_dataset(root: Path, dataset_id: int) -> Path:
    found = existing_datasets(root, dataset_id)
    if not found:
        raise InputError(f"no Dataset{dataset_id:03d}_* under {root}")
    return found[0]


def training_name(trainer: str, plans: str, configuration: str) -> str:
    """nnU-Net's folder of one training setup under the dataset's results."""
    return f"{trainer}__{plans}__{configuration}"


@dataclass(frozen=True)
class DataRoot:
    root: Path

    @property
    def nnunet_raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def nnunet_preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def nnunet_results(self) -> Path:
        return self.root / "nnUNet_results"

    @property
    def classification_dir(self) -> Path:
        return self.root / "classification"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def stack_dir(self) -> Path:
        return self.root / "stack"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def compose_dir(self) -> Path:
        return self.root / "compose"

    @property
    def viewer_links(self) -> Path:
        """The viewer's links to studies (shared/viewer_links.py): private, since each names a study's UIDs."""
        return self.private_dir / "viewer-links"

    @property
    def pacs_dir(self) -> Path:
        """The stack's own PACS (PACS=1): Orthanc's storage and index, in the private folder since every file
        there is a patient's."""
        return self.private_dir / "orthanc"

    @property
    def mlflow_dir(self) -> Path:
        """The local stack's MLflow server: its SQLite stores and its artifacts."""
        return self.root / "mlflow"

    @property
    def tracking_spool(self) -> Path:
        """What jobs could not send to MLflow; the reaper replays it."""
        return self.root / "tracking" / "spool"

    @property
    def synthetic_release(self) -> Path:
        return self.root / "synthetic" / DATASET_NAME

    @property
    def sqlite_job_table(self) -> Path:
        return self.root / "jobs.sqlite"

    @property
    def private_dir(self) -> Path:
        """What identifies a patient's pictures (docs/dicom.md): the owner's alone (0700)."""
        return self.root / "private"

    def private_predictions(self, run_id: int) -> Path:
        """A prediction's DICOM outputs where the user named no --out: patient data, so kept private."""
        return self.private_dir / "predictions" / f"r{run_id}"

    def imported(self, run_id: int) -> Path:
        """What `dispatch import` keeps of a bundle beside the folds it installs: classifier and model card."""
        return self.root / "imported" / f"r{run_id}"

    def nnunet_datasets(self, dataset_id: int) -> list[Path]:
        """Every folder of `dataset_id` under nnU-Net's three roots."""
        roots = (self.nnunet_raw, self.nnunet_preprocessed, self.nnunet_results)
        return [folder for root in roots for folder in existing_datasets(root, dataset_id)]

    def pseudonym_map(self, dataset_id: int) -> Path:
        return self.private_dir / dataset_name(dataset_id) / "pseudonyms.csv"

    def classification_cache(self, dataset_id: int) -> Path:
        return self.classification_dir / dataset_name(dataset_id)

    def staging(self, run_id: int) -> Path:
        return self.staging_dir / f"run-{run_id}"

    def run_folder(self, run_id: int) -> Path:
        return self.runs_dir / f"r{run_id}"

    def nnunet_environ(self) -> dict[str, str]:
        """nnU-Net's three folder variables."""
        return {
            "nnUNet_raw": str(self.nnunet_raw),
            "nnUNet_preprocessed": str(self.nnunet_preprocessed),
            "nnUNet_results": str(self.nnunet_results),
        }


def segmentation_channel_file(cache: Path, seg_run: int) -> Path:
    """The fracture probability map of every cached image, from the folds of run `seg_run`."""
    return cache / f"fracture_probability_r{seg_run}.npy"
