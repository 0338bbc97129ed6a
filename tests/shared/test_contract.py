"""The typed requests, the run plans and the layout: refused values name their option, stored parameters
parse back to the same request, and stages come in the documented order."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from services.dispatcher.cli import main
from shared import plans
from shared.contract import (
    BadOption,
    ChannelRequest,
    ClassifyRequest,
    IngestRequest,
    PacsSource,
    PipelineRequest,
    PredictRequest,
    TrainRequest,
)
from shared.defaults import JOBS_TRAINER, TRAINER
from shared.layout import DataRoot, dataset_name


def test_a_refused_value_names_its_option() -> None:
    with pytest.raises(BadOption, match="greater than or equal to 32") as refused:
        IngestRequest.build(source="/r", size=20)
    assert refused.value.option == "--size"
    with pytest.raises(BadOption, match="folds run from 0 to 4") as refused:
        TrainRequest.build(folds="3-5")
    assert refused.value.option == "--folds"
    with pytest.raises(BadOption) as refused:
        IngestRequest.build(source="/r", test_fraction=1.0)
    assert refused.value.option == "--test-fraction"
    with pytest.raises(BadOption, match="leaves no images to train on"):
        ClassifyRequest.build(val_fraction=0.5, test_fraction=0.5)


def test_the_trainer_follows_the_options_that_need_it() -> None:
    assert TrainRequest.build().trainer == TRAINER
    assert TrainRequest.build(epochs=3).trainer == JOBS_TRAINER
    with pytest.raises(BadOption, match="--epochs, --save-every work through nnUNetTrainerJobs") as refused:
        TrainRequest.build(trainer="nnUNetTrainer", epochs=3, save_every=1)
    assert refused.value.option == "--trainer"


@pytest.mark.parametrize(
    ("text", "folds"), [("0-4", [0, 1, 2, 3, 4]), ("0,2", [0, 2]), ("3", [3]), ("all", [0, 1, 2, 3, 4])]
)
def test_folds_as_users_write_them(text: str, folds: list[int]) -> None:
    assert TrainRequest.build(folds=text).folds == folds


def test_stored_parameters_parse_back_and_each_job_takes_its_part() -> None:
    request = PipelineRequest.build(source="/r", dataset_id=7, folds="0-1", epochs=2, classifier_epochs=3)
    stored = request.params()
    assert PipelineRequest.parse(stored) == request
    assert TrainRequest.parse(stored).experiment.trainer == JOBS_TRAINER
    assert IngestRequest.parse(stored).dataset_name == "Dataset007_FracAtlas"
    # a pipeline's classifier job: its own epochs and fractions win over the run's (nnU-Net's) ones
    job = ClassifyRequest.for_job(stored, {"epochs": 3, "test_fraction": 0.15, "input": "image", "seg_run": None})
    assert (job.epochs, job.test_fraction, job.input, job.seg_run) == (3, 0.15, "image", None)
    # the channel job reads only what it needs, whatever the run's other fields hold
    assert ChannelRequest.parse({**stored, "test_fraction": 0.9}).dataset_id == 7


def test_plans_put_the_stages_in_order() -> None:
    request = PipelineRequest.build(source="/r", classifier_epochs=2)
    stages = [(spec.kind, spec.stage) for spec in plans.pipeline(request)]
    assert stages == [
        ("plan", 0),
        ("preprocess", plans.INGEST_STAGES),
        *[("fold", 4)] * 5,
        ("evaluate", 5),
        ("channel", 6),
        ("classifier", 7),
    ]
    converts, assemble = plans.ingest_fan_out(plan_stage=0, chunks=[[0, 8], [8, 10]])
    assert [spec.stage for spec in converts] == [1, 1] and assemble.stage == plans.INGEST_STAGES - 1
    assert converts[1].params == {"start": 8, "stop": 10} and converts[1].name == "convert 8-9"
    some = plans.pipeline(PipelineRequest.build(source="/r", folds="0-1", classifier_epochs=2))
    assert [spec.params.get("input") for spec in some if spec.kind == "classifier"] == ["image"]


def test_the_layout_names_every_folder_once(tmp_path: Path) -> None:
    layout = DataRoot(tmp_path)
    assert dataset_name(921) == "Dataset921_FracAtlas"
    assert layout.classification_cache(921) == tmp_path / "classification" / "Dataset921_FracAtlas"
    (layout.nnunet_preprocessed / "Dataset921_FracAtlas").mkdir(parents=True)
    (layout.nnunet_preprocessed / "Dataset921_FracAtlas" / "nnUNetPlans.json").write_text("{}")
    experiment = TrainRequest.build(epochs=1).experiment
    assert experiment.fold_folder(layout, 2) == (
        tmp_path / "nnUNet_results" / "Dataset921_FracAtlas" / "nnUNetTrainerJobs__nnUNetPlans__2d" / "fold_2"
    )


def test_dispatch_refuses_a_bad_option_before_a_run_exists(tmp_path: Path) -> None:
    """Exit 2 and the option's name; no job table is touched (DATABASE_URL points nowhere)."""
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "DATA_ROOT": str(tmp_path)}
    for args, option in (
        (["ingest", "--source", str(tmp_path), "--size", "20"], "--size"),
        (["train", "--folds", "7"], "--folds"),
        (["classify", "--val-fraction", "0.6", "--test-fraction", "0.6"], "--val-fraction/--test-fraction"),
    ):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 2, result.output
        assert f"Invalid value for {option}" in result.output and "Traceback" not in result.output


def test_a_prediction_takes_files_or_a_pacs_study() -> None:
    common = {"classifier_run": 3, "input": "image", "checkpoint": "/c.pt", "seg_run": 2, "dataset_id": 501}
    study = PacsSource(url="http://pacs/dicom-web", request="a1b2", store=True)
    stored = PredictRequest.build(pacs=study, **common).params()
    assert stored["pacs"] == {"url": "http://pacs/dicom-web", "request": "a1b2", "store": True, "keep_local": False}
    assert PredictRequest.parse(stored).pacs == study
    for sources in ({}, {"files": ["/x.dcm"], "pacs": study}):
        with pytest.raises(BadOption, match="give radiograph files or a PACS study"):
            PredictRequest.build(**sources, **common)
