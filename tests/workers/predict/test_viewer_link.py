"""`dispatch predict --pacs --store` against the stack's own PACS (PACS=1): the run's SEG and report go into the
study, and the run holds a link to it in the stack's viewer (in its metrics, `dispatch show` and MLflow) that
names no patient data; the link's page, behind the login, opens the study on the SEG the run stored. That OHIF
then draws that SEG over its radiograph is tests/services/test_viewer.py's."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pydicom
import pytest
import requests
from conftest import PACS_PASSWORD, PACS_USERNAME, Stack, run_json, tiny_model
from dicom_files import dicom_from
from PIL import Image
from tracking_reads import mlflow_client, mlflow_run_of

from workers.ingest.synthetic import make_synthetic_release

pytestmark = [
    pytest.mark.parametrize("stack", ["sqlite"], indirect=True),
    pytest.mark.timeout(1500),
    pytest.mark.long,
]
LOGIN = (PACS_USERNAME, PACS_PASSWORD)
SEG_MODALITY, SERIES_UID, MODALITY = "SEG", "0020000E", "00080060"


def test_a_prediction_stored_in_the_stacks_own_pacs_is_linked_in_its_viewer(system: Stack, tmp_path: Path) -> None:
    trained, classified = tiny_model(system, tmp_path / "train-release")
    release = make_synthetic_release(tmp_path / "release", fractured=4, non_fractured=2, seed=5)
    picture = sorted(release.rglob("*.jpg"))[0]
    study_folder = tmp_path / "study"
    study_folder.mkdir()
    radiograph = dicom_from(np.asarray(Image.open(picture).convert("L")), study_folder / "dx.dcm")
    study = pydicom.dcmread(radiograph).StudyInstanceUID
    own = json.loads((system.data_root / "stack" / "pacs_server").read_text())
    assert system.dispatch("pacs", "upload", str(study_folder)).returncode == 0

    run = run_json(system, "predict", "--pacs", own["dicomweb"], "--study", study, "--store",
                   "--segmentation", trained["ref"], "--classifier", classified["ref"])  # fmt: skip
    link = run["metrics"]["viewer"]
    assert link.startswith(f"{own['viewer']}/studies/")
    assert study not in json.dumps(run), "neither the link nor anything else of the run names the study"
    assert link in system.dispatch("show", run["ref"]).stdout

    # The link's page: behind the login, on to the study and the SEG series the run stored there.
    assert requests.get(link, timeout=10).status_code == 401
    page = requests.get(link, auth=LOGIN, timeout=10)
    target = unescape(re.search(r'url=([^"]+)"', page.text).group(1))
    query = parse_qs(urlsplit(target).query)
    assert urlsplit(target).path == "/viewer" and query["StudyInstanceUIDs"] == [study]
    series = requests.get(f"{own['viewer']}/dicom-web/studies/{study}/series", auth=LOGIN, timeout=10).json()
    segs = [item[SERIES_UID]["Value"][0] for item in series if item[MODALITY]["Value"] == [SEG_MODALITY]]
    assert query["initialSeriesInstanceUID"] == segs, "opened on the SEG the run stored"

    # predict on the DICOM file itself, --store-to the stack's PACS: its SEG and report into the same study.
    model = ("--segmentation", trained["ref"], "--classifier", classified["ref"])
    stored = run_json(system, "predict", str(radiograph), "--store-to", own["dicomweb"], *model)
    assert stored["metrics"]["stored"] == 2 and stored["metrics"]["viewer"].startswith(f"{own['viewer']}/studies/")
    series = requests.get(f"{own['viewer']}/dicom-web/studies/{study}/series", auth=LOGIN, timeout=10).json()
    assert sum(item[MODALITY]["Value"] == [SEG_MODALITY] for item in series) == 2

    # MLflow: the link, as the job's parameter.
    mlflow_run_of(system, run)
    client = mlflow_client(system)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    found = client.search_runs(experiments, filter_string=f"params.viewer = '{link}'")
    assert len(found) == 1 and found[0].data.tags["fracatlas.run"] == run["ref"]
