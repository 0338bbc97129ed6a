"""The stack's own PACS and viewer (`make up PACS=1`) for real: Orthanc with its DICOMweb plugin, OHIF served
by nginx on one origin with /dicom-web, nginx checking the login. A radiograph and its SEG go in with
`dispatch pacs upload`; headless Chromium opens the printed link, and the screenshot must show the SEG's colour
over the radiograph where the mask is."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pydicom
import pytest
import requests
from browser import chromium
from conftest import PACS_PASSWORD, PACS_USERNAME, Stack
from dicom_files import dicom_from
from PIL import Image
from scipy import ndimage

from workers.predict.dicom_report import write_report
from workers.predict.dicom_seg import Algorithm, write_segmentation

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)  # the PACS is the same on either
ROWS, COLUMNS = 400, 300
CATEGORY = "scaphoid"  # the segment's name: a word that appears nowhere else on the viewer's page
LOGIN = (PACS_USERNAME, PACS_PASSWORD)


def fracture_mask() -> np.ndarray:
    """An oval and a crack running out of it."""
    rows, columns = np.mgrid[:ROWS, :COLUMNS]
    mask = ((rows - 160) / 60) ** 2 + ((columns - 130) / 45) ** 2 < 1
    mask |= (np.abs(rows - 1.2 * columns - 50) < 4) & (rows > 200) & (rows < 330)
    return mask


def red(shot: np.ndarray) -> np.ndarray:
    """The SEG's colour (the overlays' red, drawn half see-through) as the screenshot holds it."""
    r, g, b = (shot[:, :, channel].astype(int) for channel in range(3))
    return (r > g + 40) & (r > b + 40)


def radiograph_box(shot: np.ndarray) -> tuple[slice, slice]:
    """Where the radiograph is drawn: the largest region of grey (or the SEG's red over grey)."""
    r, g, b = (shot[:, :, channel].astype(int) for channel in range(3))
    grey = (abs(r - g) < 10) & (abs(g - b) < 10) & (r >= 25)
    regions, _ = ndimage.label(grey | red(shot))
    largest = np.bincount(regions.ravel())[1:].argmax() + 1
    return ndimage.find_objects((regions == largest).astype(int))[0]


def test_a_seg_uploaded_shows_over_its_radiograph_in_the_viewer(system: Stack, tmp_path: Path) -> None:
    own = json.loads((system.data_root / "stack" / "pacs_server").read_text())
    viewer = own["viewer"]
    folder = tmp_path / "study"
    folder.mkdir()
    rows, columns = np.mgrid[:ROWS, :COLUMNS]
    radiograph = dicom_from(((rows + columns) % 256 // 2 + 40).astype(np.uint8), folder / "dx.dcm")
    mask = fracture_mask()
    algorithm = Algorithm("Dataset400_FracAtlas-nnunet", "r1")
    write_segmentation(radiograph, [CATEGORY], algorithm, folder / "seg.dcm", labels=mask.astype(np.uint8))
    classifier = Algorithm("Dataset400_FracAtlas-classifier", "r2")
    report = pydicom.dcmread(write_report(radiograph, 0.87, 0.5, classifier, folder / "report.dcm", mask))
    study = pydicom.dcmread(radiograph).StudyInstanceUID

    uploaded = system.dispatch("pacs", "upload", str(folder), "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    answer = json.loads(uploaded.stdout)
    assert (answer["instances"], answer["studies"]) == (3, 1)
    [link] = answer["viewer"]
    assert link.startswith(f"{viewer}/studies/") and study not in link, "the link names no patient data"

    # One origin, behind the login: the proxy refuses a wrong one before Orthanc sees it.
    for login in (None, (PACS_USERNAME, "wrong")):
        refused = requests.get(f"{viewer}/dicom-web/studies", auth=login, timeout=10)
        assert refused.status_code == 401 and refused.headers["Server"].startswith("nginx")
    assert "<html" in requests.get(f"{viewer}/", auth=LOGIN, timeout=10).text.lower()
    found = requests.get(f"{viewer}/dicom-web/studies", auth=LOGIN, timeout=10).json()
    assert [item["0020000D"]["Value"][0] for item in found] == [study]
    assert requests.get(f"{viewer}/studies/not-a-token-of-ours", auth=LOGIN, timeout=10).status_code == 404

    # predict --store-to: refused before a run where nothing could go (no DICOM file, a PACS that is down).
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "plain.png")
    not_dicom = system.dispatch("predict", str(tmp_path / "plain.png"), "--store-to", own["dicomweb"])
    assert not_dicom.returncode == 2 and "none of the files is DICOM" in not_dicom.stderr
    down = system.dispatch("predict", str(radiograph), "--store-to", "http://127.0.0.1:9/dicom-web")
    assert down.returncode == 1 and "cannot reach the PACS at http://127.0.0.1:9/dicom-web" in down.stderr

    with chromium() as page:
        page.open(link, LOGIN)
        shot = page.wait_for(lambda seen: red(seen).sum() > 2000, timeout=120)
        Image.fromarray(shot).save(tmp_path / "viewer.png")
        # The segment's name, in the segmentation panel: opened by its button, as a user does.
        page.evaluate("document.querySelector('[data-cy=side-panel-header-right]').click()")
        named = page.wait_for_text(CATEGORY, timeout=30) and page.wait_for_text(f"segmentation by {algorithm.name}", 5)
        Image.fromarray(page.screenshot()).save(tmp_path / "panel.png")

        # The report: its finding in the study's series list, its probability beside its region.
        opened = urlencode({"StudyInstanceUIDs": study, "initialSeriesInstanceUID": report.SeriesInstanceUID})
        page.open(f"{viewer}/viewer?{opened}", LOGIN)
        written = page.wait_for_text("Probability: 87.00 %", timeout=120)
        described = page.wait_for_text("fracture present, probability 87%", timeout=5)
        boxed = page.screenshot()
        Image.fromarray(boxed).save(tmp_path / "report.png")
    console = page.console[-15:]
    assert_seg_over_radiograph(shot, mask, tmp_path / "viewer.png", console)
    assert named, f"no segment name {CATEGORY!r} or SEG series name on the page (screenshot {tmp_path / 'panel.png'})"
    assert written and described, f"the report's text not shown (screenshot {tmp_path / 'report.png'}); {console}"
    assert_box_drawn(boxed, mask, tmp_path / "report.png")


def assert_seg_over_radiograph(shot: np.ndarray, mask: np.ndarray, saved: Path, console: list[str]) -> None:
    drawn = red(shot)
    assert drawn.sum() > 2000, f"no SEG drawn (screenshot {saved}); console: {console}"
    box = radiograph_box(shot)
    height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
    assert abs(height / width - ROWS / COLUMNS) < 0.03, "the radiograph drawn whole, at its own proportions"
    expected = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    shown = drawn[box]
    iou = (shown & expected).sum() / (shown | expected).sum()
    assert iou > 0.85, f"the SEG's colour where the mask is: IoU {iou:.3f} (screenshot {saved})"
    assert not drawn[: box[0].start].any() and not drawn[box[0].stop :].any(), "nothing red off the radiograph"


def assert_box_drawn(shot: np.ndarray, mask: np.ndarray, saved: Path) -> None:
    """The report's region, OHIF's dashed green outline, along each side of the box around the mask."""
    r, g, b = (shot[:, :, channel].astype(int) for channel in range(3))
    green = (g > r + 80) & (g > b + 80)
    rows, columns = radiograph_box(shot)
    scale = (rows.stop - rows.start) / ROWS
    found_rows, found_columns = np.nonzero(mask)
    top, bottom = (rows.start + scale * v for v in (found_rows.min(), found_rows.max() + 1))
    left, right = (columns.start + scale * v for v in (found_columns.min(), found_columns.max() + 1))

    def dashed(band: np.ndarray) -> float:  # the share of the side's length with green beside it
        return float(band.any(axis=0).mean())

    def near(v: float) -> slice:
        return slice(round(v) - 3, round(v) + 4)

    across, down = slice(round(left), round(right)), slice(round(top), round(bottom))
    sides = {
        "top": dashed(green[near(top), across]), "bottom": dashed(green[near(bottom), across]),
        "left": dashed(green[down, near(left)].T), "right": dashed(green[down, near(right)].T),
    }  # fmt: skip
    assert min(sides.values()) > 0.4, f"the report's box not where the mask is: {sides} (screenshot {saved})"
