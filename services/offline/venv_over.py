"""A venv over the packages of the Python that runs this module, filled from wheels with no index.

`make install WHEELHOUSE=dir` and bench/gpu_check.sh use it on GPU servers that bring their own CUDA
torch. That torch often lives in an environment of its own (a venv or conda environment, as in many CUDA
images), which `python -m venv --system-site-packages` does not show: it shows only the base
installation's packages. So the venv gets a .pth file that calls `site.addsitedir` on the site-packages of
the Python running this module, venv or not. addsitedir also runs that environment's own .pth files
(setuptools' distutils shim, which nnU-Net imports), which a plain path line in a .pth would not. The
venv's own packages come first on sys.path, the server's after them.

Standard library only: it runs before anything is installed.
  python3 -m services.offline.venv_over VENV WHEEL_DIR [--project DIR]
"""

from __future__ import annotations

import argparse
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

PTH_NAME = "server-packages.pth"


def create(target: Path) -> Path:
    """Make the venv (without pip where this Python has no ensurepip, as Debian's); return its python."""
    try:
        venv.create(target, with_pip=True)
    except subprocess.CalledProcessError:
        venv.create(target, with_pip=False)
    return target / "bin" / "python"


def venv_site_packages(python: Path) -> Path:
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", query], capture_output=True, text=True, check=True).stdout.strip())


def show_server_packages(python: Path, project: Path | None) -> None:
    folders = [folder for folder in site.getsitepackages() if Path(folder).is_dir()]
    purelib = venv_site_packages(python)
    # One line: a .pth file runs the lines that start with "import".
    (purelib / PTH_NAME).write_text("import site; " + "; ".join(f"site.addsitedir({f!r})" for f in folders) + "\n")
    if project is not None:  # the checkout itself on sys.path, where no wheel of the project is installed
        (purelib / "fracatlas-project.pth").write_text(f"{project.resolve()}\n")


def install_wheels(python: Path, wheels: list[Path]) -> None:
    """With the venv's pip, else with this Python's (pip 22.3 or newer installs into another environment)."""
    has_pip = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode == 0
    pip = [str(python), "-m", "pip"] if has_pip else [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run([*pip, "install", "-q", "--no-index", "--no-deps", *map(str, wheels)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("wheels", type=Path, help="a folder of wheels (make wheelhouse, make gpu-kit)")
    parser.add_argument("--project", type=Path, help="put this checkout on the venv's sys.path")
    args = parser.parse_args()
    wheels = sorted(args.wheels.glob("*.whl"))
    if not wheels:
        sys.exit(f"no wheels in {args.wheels}: run `make wheelhouse` (or `make gpu-kit`) where an index is reached")
    python = args.venv / "bin" / "python"
    made_here = not python.exists()
    try:
        if made_here:
            python = create(args.venv)
        show_server_packages(python, args.project)
        install_wheels(python, wheels)
    except subprocess.CalledProcessError as error:
        if made_here:  # no half-made venv for the next `make install` to take as done
            shutil.rmtree(args.venv, ignore_errors=True)
        sys.exit(f"{args.venv}: {' '.join(map(str, error.cmd[:4]))} ... exited with {error.returncode} (output above)")


if __name__ == "__main__":
    main()
