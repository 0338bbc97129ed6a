"""Every bad input of the ingest, through the real stack: a clear message naming the item, a non-zero
exit, the job row failed with that message, and nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Stack, wait_for

from workers.ingest.fracatlas import COCO_RELATIVE
from workers.nnunet.nifti import read_case


def edit_coco(root: Path, change: Callable[[dict], None]) -> None:
    path = root / COCO_RELATIVE
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def _first_polygon(content: dict) -> list[float]:
    return content["annotations"][0]["segmentation"][0]


def _first_other(root: Path) -> Path:
    """The first non-fractured picture, which the hostile cases below replace."""
    picture = sorted((root / "images" / "Non_fractured").iterdir())[0]
    picture.unlink()
    return picture


def _link_out(root: Path, target: Path) -> None:
    _first_other(root).symlink_to(target)


def _outside_picture(root: Path) -> Path:
    outside = root.parent / f"outside-{root.name}.jpg"
    shutil.copy(sorted((root / "images" / "Non_fractured").iterdir())[-1], outside)
    return outside


def _bomb(root: Path) -> None:
    from PIL import Image

    _first_other(root)
    Image.new("1", (9000, 9000)).save(root / "images" / "Non_fractured" / "IMG9999999.png")


def _nested(root: Path) -> None:
    (root / COCO_RELATIVE).write_text('{"images": ' + "[" * 5000 + "]" * 5000 + "}")


BAD_INPUTS: dict[str, tuple[Callable[[Path], None], str]] = {
    # Hostile files: refused by name before anything opens them (docs/security.md).
    "symlink to a picture outside": (
        lambda root: _link_out(root, _outside_picture(root)),
        "is a symbolic link to",
    ),
    "symlink to /etc/passwd": (lambda root: _link_out(root, Path("/etc/passwd")), "outside the release"),
    "symlink to /dev/zero": (lambda root: _link_out(root, Path("/dev/zero")), "/dev/zero, outside the release"),
    "FIFO named .jpg": (lambda root: os.mkfifo(_first_other(root)), "is a FIFO (named pipe), not a regular file"),
    "folder named .jpg": (lambda root: _first_other(root).mkdir(), "is a folder, not a regular file"),
    "file name not UTF-8": (
        lambda root: (Path(os.fsdecode(bytes(root / "images" / "Non_fractured") + b"/IMG\xff.jpg"))).write_bytes(b"x"),
        "has a name that is not UTF-8",
    ),
    "decompression bomb PNG": (_bomb, "is 9000x9000 pixels, over the cap of 64 million"),
    "duplicate image id": (
        lambda root: edit_coco(root, lambda c: c["images"][1].update(id=c["images"][0]["id"])),
        "image id 1 appears more than once",
    ),
    "duplicate file_name": (
        lambda root: edit_coco(root, lambda c: c["images"][1].update(file_name=c["images"][0]["file_name"])),
        "file_name 'IMG0000001.jpg' appears more than once",
    ),
    "duplicate annotation id": (
        lambda root: edit_coco(root, lambda c: c["annotations"][1].update(id=c["annotations"][0]["id"])),
        "appears more than once",
    ),
    "coordinate as a string": (
        lambda root: edit_coco(root, lambda c: _first_polygon(c).__setitem__(0, "12")),
        "has the coordinate '12', which is not a finite number",
    ),
    "NaN coordinate": (
        lambda root: edit_coco(root, lambda c: _first_polygon(c).__setitem__(1, float("nan"))),
        "has the coordinate nan, which is not a finite number",
    ),
    "RLE whose runs do not fill it": (
        lambda root: edit_coco(
            root, lambda c: c["annotations"][0].update(segmentation={"counts": [1, 2], "size": [4, 4]})
        ),
        "has RLE counts that add up to 3 pixels, not its size's 4x4",
    ),
    "polygon over the point cap": (
        lambda root: edit_coco(root, lambda c: c["annotations"][0].update(segmentation=[[1.0, 1.0] * 20_001])),
        "has a polygon of 20001 points, over the cap of 20000",
    ),
    "deeply nested JSON": (_nested, "nests 5001 levels deep, over the cap of 32"),
    "JSON not UTF-8": (
        lambda root: (root / COCO_RELATIVE).write_bytes((root / COCO_RELATIVE).read_bytes().replace(b'"', b'"\xe9', 1)),
        "is not UTF-8 text",
    ),
    "not a release": (lambda root: shutil.rmtree(root / "images"), "images/Fractured is missing"),
    "missing COCO file": (lambda root: (root / COCO_RELATIVE).unlink(), "COCO_fracture_masks.json is missing"),
    "malformed JSON": (lambda root: (root / COCO_RELATIVE).write_text('{"images": ['), "is not valid JSON (line 1"),
    "not COCO": (lambda root: (root / COCO_RELATIVE).write_text("[]"), "is not a COCO file"),
    "image file missing": (
        lambda root: (root / "images" / "Fractured" / "IMG0000003.jpg").unlink(),
        "names IMG0000003.jpg, but no such file exists",
    ),
    "annotation of unknown image": (
        lambda root: edit_coco(root, lambda c: c["annotations"][0].update(image_id=999)),
        "refers to image id 999",
    ),
    "polygon of two points": (
        lambda root: edit_coco(root, lambda c: c["annotations"][0].update(segmentation=[[1.0, 2.0, 3.0, 4.0]])),
        "a polygon of 2 points; a polygon needs at least 3",
    ),
    "polygon outside the image": (
        lambda root: edit_coco(root, lambda c: _first_polygon(c).__setitem__(0, 5000.0)),
        "has the point (5000.0,",
    ),
    "path in file_name": (
        lambda root: edit_coco(root, lambda c: c["images"][2].update(file_name="../IMG0000003.jpg")),
        "has file_name '../IMG0000003.jpg'; a file name must be a bare name",
    ),
    "no fractured category": (
        lambda root: edit_coco(root, lambda c: c["categories"][0].update(name="broken")),
        "has no category named 'fractured' (it has: 'broken')",
    ),
    "size mismatch after EXIF": (
        lambda root: edit_coco(root, lambda c: c["images"][2].update(width=800, height=1000)),
        "is 400x500 after its EXIF orientation, but COCO image id 3 says 800x1000",
    ),
}


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_cleanly(case: str, system: Stack, release: Callable[..., Path]) -> None:
    damage, message = BAD_INPUTS[case]
    root = release()
    damage(root)
    dataset_id = 200 + sorted(BAD_INPUTS).index(case)
    # Never a hang: a refused release fails in seconds (the timeout turns a hang into a failure).
    result = system.dispatch("ingest", "--source", str(root), "--dataset-id", str(dataset_id), "--wait")
    assert result.returncode == 1
    assert message in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    run_ref = result.stdout.split()[1]
    run = json.loads(system.dispatch("show", run_ref, "--json").stdout)
    assert run["state"] == "failed" and message in run["error"]
    failed = [job for job in run["jobs"] if job["state"] == "failed"]
    assert len(failed) == 1 and message in failed[0]["error"]
    assert not list((system.data_root / "nnUNet_raw").glob(f"Dataset{dataset_id}_*"))
    assert not (system.data_root / "classification" / f"Dataset{dataset_id}_FracAtlas").exists()
    wait_for(
        lambda: not (system.data_root / "staging" / f"run-{run['id']}").exists(),
        timeout=30,
        what="the staging folder to be removed",
    )


def test_existing_dataset_needs_overwrite(system: Stack, release: Callable[..., Path]) -> None:
    root = release()
    first = system.dispatch("ingest", "--source", str(root), "--dataset-id", "230", "--wait")
    assert first.returncode == 0, first.stdout
    dataset = system.data_root / "nnUNet_raw" / "Dataset230_FracAtlas"
    before = (dataset / "dataset.json").stat().st_mtime_ns
    again = system.dispatch("ingest", "--source", str(root), "--dataset-id", "230", "--wait")
    assert again.returncode == 1 and "Dataset230_FracAtlas exists already; pass --overwrite" in again.stdout
    assert (dataset / "dataset.json").stat().st_mtime_ns == before, "the existing dataset is untouched"
    replaced = system.dispatch(
        "ingest", "--source", str(root), "--dataset-id", "230", "--split", "official", "--overwrite", "--wait", "--json"
    )
    assert replaced.returncode == 0
    split = json.loads((dataset / "split.json").read_text())
    fractured_in_test = [case for case in split["test"] if read_case(dataset / "labelsTs" / f"{case}.nii.gz").any()]
    assert split["method"] == "official" and fractured_in_test == ["IMG0000001"], "the release's test split"
    assert len(split["test"]) == 2, "and one of the two negatives, split with the seed"


def test_overwrite_replaces_only_a_dataset_this_project_made(system: Stack, release: Callable[..., Path]) -> None:
    foreign = system.data_root / "nnUNet_raw" / "Dataset231_SomeoneElses"
    foreign.mkdir(parents=True)
    (foreign / "dataset.json").write_text("{}")
    result = system.dispatch("ingest", "--source", str(release()), "--dataset-id", "231", "--overwrite", "--wait")
    assert result.returncode == 1
    assert "Dataset231_SomeoneElses was not made by this project's ingest" in result.stdout
    assert (foreign / "dataset.json").read_text() == "{}", "the other dataset is untouched"
    assert not (system.data_root / "nnUNet_raw" / "Dataset231_FracAtlas").exists()
