"""`make install WHEELHOUSE=dir` on a server whose torch lives in a venv of its own (services/offline/venv_over.py)."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from conftest import PROJECT

PROBE = "offline_probe-1.0"


def probe_wheel(folder: Path) -> Path:
    """A wheel of two modules, the kind `make wheelhouse` collects."""
    folder.mkdir()
    wheel = folder / f"{PROBE}-py3-none-any.whl"
    files = {
        "offline_probe.py": "",
        "shadowed.py": "WHERE = 'wheel'\n",
        f"{PROBE}.dist-info/METADATA": "Metadata-Version: 2.1\nName: offline-probe\nVersion: 1.0\n",
        f"{PROBE}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in [*files, f"{PROBE}.dist-info/RECORD"])
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in {**files, f"{PROBE}.dist-info/RECORD": record}.items():
            archive.writestr(name, text)
    return wheel


def server_venv(folder: Path) -> Path:
    """A "server" Python that is itself a venv, with a package and a .pth file of its own (as setuptools' shim)."""
    venv.create(folder, with_pip=False)
    purelib = next((folder / "lib").glob("python3*/site-packages"))
    (purelib / "server_torch.py").write_text("")
    (purelib / "shadowed.py").write_text("WHERE = 'server'\n")
    (purelib / "shim.pth").write_text("import sys; sys.server_shim_ran = True\n")
    return folder / "bin" / "python"


def test_the_venv_sees_a_venv_servers_packages_after_its_own(tmp_path: Path) -> None:
    server = server_venv(tmp_path / "server")
    probe_wheel(tmp_path / "wheels")
    project = tmp_path / "checkout"
    project.mkdir()
    target = tmp_path / "target"
    over = [str(server), "-m", "services.offline.venv_over", str(target), str(tmp_path / "wheels")]
    subprocess.run(
        [*over, "--project", str(project)],
        cwd=PROJECT,
        check=True,
        timeout=300,
    )
    check = (
        "import sys, server_torch, offline_probe, shadowed; "
        "print(sys.server_shim_ran, shadowed.WHERE, sys.argv[1] in sys.path)"
    )
    shown = subprocess.run(
        [str(target / "bin" / "python"), "-c", check, str(project)], capture_output=True, text=True, check=True
    )
    assert shown.stdout.split() == ["True", "wheel", "True"]
    # What --system-site-packages gives (the old way) shows none of it: the base installation only.
    old_way = tmp_path / "old-way"
    subprocess.run([str(server), "-m", "venv", "--system-site-packages", "--without-pip", str(old_way)], check=True)
    assert subprocess.run([str(old_way / "bin" / "python"), "-c", "import server_torch"]).returncode != 0


def test_an_empty_wheel_folder_is_named_and_no_venv_is_made(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "services.offline.venv_over", str(tmp_path / "venv"), str(tmp_path / "wheels")],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert f"no wheels in {tmp_path / 'wheels'}: run `make wheelhouse`" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_a_failed_install_leaves_no_half_made_venv(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip file")
    done = subprocess.run(
        [sys.executable, "-m", "services.offline.venv_over", str(tmp_path / "venv"), str(tmp_path / "wheels")],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert f"{tmp_path / 'venv'}: " in done.stderr and "exited with" in done.stderr
    assert not (tmp_path / "venv").exists()
