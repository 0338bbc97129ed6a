"""The annotation tools for real, as `make annotator-tools` installs them in .tools/ (each in a virtual
environment of its own): a Label Studio started on a free port with a generated user and API token, its data
in the test's folder, serving the pictures of `document_root` as its local files; and Datumaro, CVAT's format
library, reading a COCO 1.0 export as CVAT reads it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from conftest import PROJECT, free_port, require

LABEL_STUDIO = PROJECT / ".tools" / "label-studio" / "bin" / "label-studio"
DATUMARO = PROJECT / ".tools" / "datumaro" / "bin" / "python"
# Each picture's masks as Datumaro reads them (its polygons drawn by pycocotools, its RLE masks decoded), per
# picture and label name.
DATUMARO_MASKS = """
import sys
import numpy as np
import datumaro as dm
from pycocotools import mask as coco_mask
dataset = dm.Dataset.import_from(sys.argv[1], "coco_instances")
names = dataset.categories()[dm.AnnotationType.label]
masks = {}
for item in dataset:
    height, width = item.media.size
    for shape in item.annotations:
        if shape.type == dm.AnnotationType.polygon:
            drawn = coco_mask.decode(coco_mask.frPyObjects([shape.points], height, width))[:, :, 0] > 0
        elif shape.type == dm.AnnotationType.mask:
            drawn = shape.image > 0
        else:
            continue
        key = f"{item.id}|{names[shape.label].name}"
        masks[key] = np.logical_or(masks.get(key, np.zeros((height, width), bool)), drawn)
np.savez(sys.argv[2], **masks)
"""


def datumaro_masks(cvat_zip: Path, scratch: Path) -> dict[str, np.ndarray]:
    """'<item id>|<label>' -> its mask, for a CVAT COCO 1.0 zip read by Datumaro's coco_instances."""
    require(DATUMARO.is_file(), f"no {DATUMARO}: run make annotator-tools")
    shutil.unpack_archive(cvat_zip, scratch)
    (scratch / "images" / "default").mkdir(parents=True, exist_ok=True)  # the task's frames, which CVAT has
    command = [str(DATUMARO), "-c", DATUMARO_MASKS, str(scratch), str(scratch / "masks.npz")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(scratch / "masks.npz") as read:
        return {key: read[key] for key in read.files}


START_SECONDS = 240  # its first start migrates its database: 40 s on an idle 2-core machine


@dataclass(frozen=True)
class LabelStudio:
    url: str
    token: str

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Token {self.token}"}
        answer = requests.request(method, f"{self.url}{path}", headers=headers, timeout=120, **kwargs)
        assert answer.ok, f"{method} {path}: {answer.status_code} {answer.text[:2000]}"
        return answer


@contextmanager
def label_studio(folder: Path, document_root: Path) -> Iterator[LabelStudio]:
    require(LABEL_STUDIO.is_file(), f"no {LABEL_STUDIO}: run make annotator-tools")
    folder.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(20)
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(folder),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        # The token given at start is a legacy one, which new organisations refuse unless this is set.
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LATEST_VERSION_CHECK": "false",  # no call to PyPI at its start
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    env.pop("HOST", None)
    login = ["--username", "annotator@example.org", "--password", secrets.token_hex(8), "--user-token", token]
    command = [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port), *login]
    log = (folder / "label-studio.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get(f"{url}/health", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            raise AssertionError(f"Label Studio did not start: {(folder / 'label-studio.log').read_text()[-3000:]}")
        yield LabelStudio(url, token)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
