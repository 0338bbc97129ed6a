"""Another site's bundle installed here (`dispatch import`): checked whole again, its folds installed by
nnU-Net's own `nnUNetv2_install_pretrained_model_from_zip` (under another dataset id where asked), its
classifier, its training pictures' hashes and its model card kept in the data root.

Everything is made in a staging folder of the data root and moved into place at the end, the folds last: a
bundle that fails any check, or an install that fails, leaves nothing installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from shared.bundles import CARD, CARD_MARKDOWN, CLASSIFIER_FOLDER, NNUNET_FOLDER, PICTURE_HASHES, checked_card
from shared.contract import ImportRequest
from shared.defaults import JOBS_TRAINER
from shared.errors import InputError
from shared.layout import DataRoot, dataset_name, training_name
from shared.settings import Settings
from workers.child import ToolRun
from workers.nnunet.commands import environment, run_tool, tool

INSTALL = "nnUNetv2_install_pretrained_model_from_zip"


def install_bundle(settings: Settings, request: ImportRequest, keep: Path, run: ToolRun) -> dict[str, Any]:
    """Install `request.bundle`; its classifier and card go to `keep`. Returns the model card."""
    layout = settings.layout
    _refuse_taken(layout, request.dataset_id)
    _refuse_unknown_trainer(request.trainer)
    layout.staging_dir.mkdir(parents=True, exist_ok=True)  # beside nnUNet_results: the folds move by rename
    work = Path(tempfile.mkdtemp(dir=layout.staging_dir, prefix=".import-"))
    try:
        # The copy is what is checked and unpacked: the user's file may change meanwhile.
        bundle = shutil.copyfile(request.bundle, work / "bundle.zip")
        card = checked_card(bundle)
        unpacked = work / "bundle"
        with zipfile.ZipFile(bundle) as archive:
            archive.extractall(unpacked)
        source, target = dataset_name(request.bundle_dataset_id), dataset_name(request.dataset_id)
        folds_zip = _under_name(unpacked / NNUNET_FOLDER / f"{source}.zip", source, target, work / f"{target}.zip")
        results = work / "nnUNet_results"
        run_tool(INSTALL, [tool(INSTALL), str(folds_zip)], environment(settings, {"nnUNet_results": str(results)}), run)
        training = results / target / training_name(request.trainer, request.plans, request.configuration)
        _check_folds(training, request.folds)
        kept = work / "keep"
        kept.mkdir()
        for folder in (CLASSIFIER_FOLDER, Path(PICTURE_HASHES).parent):
            if (unpacked / folder).is_dir():
                shutil.copytree(unpacked / folder, kept / folder)
        for name in (CARD, CARD_MARKDOWN):
            shutil.copyfile(unpacked / name, kept / name)
        _refuse_taken(layout, request.dataset_id)  # another import may have taken the id meanwhile
        keep.parent.mkdir(parents=True, exist_ok=True)
        kept.rename(keep)
        layout.nnunet_results.mkdir(parents=True, exist_ok=True)
        try:
            (results / target).rename(layout.nnunet_results / target)
        except OSError:
            shutil.rmtree(keep, ignore_errors=True)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return card


def _refuse_taken(layout: DataRoot, dataset_id: int) -> None:
    taken = layout.nnunet_datasets(dataset_id)
    if taken:
        raise InputError(
            f"dataset {dataset_id} is in this data root already ({taken[0]}); import under a free id with --dataset-id"
        )


def _refuse_unknown_trainer(trainer: str) -> None:
    """nnU-Net rebuilds the network by the trainer class the folds name: this project's, or one of nnU-Net's."""
    if trainer == JOBS_TRAINER:
        return
    spec = importlib.util.find_spec("nnunetv2")
    assert spec is not None and spec.submodule_search_locations
    trainers = Path(spec.submodule_search_locations[0]) / "training" / "nnUNetTrainer"
    defined = re.compile(rf"^class {re.escape(trainer)}\(", re.MULTILINE)
    if not any(defined.search(path.read_text(errors="replace")) for path in trainers.rglob("*.py")):
        raise InputError(
            f"the bundle's folds were trained with {trainer}, a trainer neither nnU-Net nor this project has; "
            "install the nnU-Net version that has it (the model card names the versions)"
        )


def _under_name(folds_zip: Path, source: str, target: str, renamed: Path) -> Path:
    """nnU-Net's export holds `<source>/...`; under another dataset id here it must hold `<target>/...` (and
    its plans name the dataset so)."""
    if not folds_zip.is_file():
        raise InputError(f"the bundle has no {NNUNET_FOLDER}/{folds_zip.name}, nnU-Net's export of its folds")
    with zipfile.ZipFile(folds_zip) as archive:
        outside = [info.filename for info in archive.infolist() if not info.filename.startswith(f"{source}/")]
        if outside:
            raise InputError(f"{folds_zip.name} holds {outside[0]!r}, outside {source}/; it is not installed")
        if source == target:
            return folds_zip
        with zipfile.ZipFile(renamed, "w", zipfile.ZIP_DEFLATED) as out:
            for info in archive.infolist():
                name = target + info.filename.removeprefix(source)
                if name.endswith("/plans.json"):
                    plans = json.loads(archive.read(info))
                    out.writestr(name, json.dumps({**plans, "dataset_name": target}, indent=4))
                    continue
                with archive.open(info) as reader, out.open(name, "w") as writer:
                    shutil.copyfileobj(reader, writer, 2**20)
    return renamed


def _check_folds(training: Path, folds: list[int]) -> None:
    numbers = [path.parent.name.removeprefix("fold_") for path in training.glob("fold_*/checkpoint_final.pth")]
    installed = sorted(int(number) for number in numbers if number.isdigit())
    if installed != sorted(folds):
        raise InputError(f"the bundle's model card names folds {folds}, but nnU-Net installed {installed}")
