"""The task runtime's interruption of a cancelled job (workers/runtime.py), without a worker."""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from workers import runtime


def test_a_cancelled_job_is_interrupted_but_never_inside_an_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = threading.Event()
    stopped.set()
    monkeypatch.setattr(runtime, "_running", SimpleNamespace(job_id=7, stopped=stopped))
    # A module whose import is interrupted, as torch's was while a cancelled trial imported it: raising
    # there would leave it half made in sys.modules for every later job of the pool process.
    (tmp_path / "interrupted_while_imported.py").write_text(
        "import sys\nfrom workers import runtime\nruntime._interrupt(0, sys._getframe())\nCOMPLETE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.import_module("interrupted_while_imported").COMPLETE
    with pytest.raises(runtime.JobStopped, match="job 7 was interrupted"):
        runtime._interrupt(0, sys._getframe())
