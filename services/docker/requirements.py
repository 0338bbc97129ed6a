"""The pins an image installs, read from pyproject.toml so that the images and `make install` never differ.

Role `torch` is torch and torchvision (the layer every worker image shares), `app` every other dependency
of the project, and `mlflow` what the tracking server's image needs: the `tracking-server` extra and the
packages its start steps import (settings, the job table's driver, Redis), without torch.

`make docker-pins` writes one file per role into services/docker/pins/, which the Dockerfile's package
layers copy one each: an edit of pyproject.toml rebuilds only the layers whose pins it changed (torch is
3.3 GB). A test checks that the files are what pyproject.toml says.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROLES = ("torch", "app", "mlflow")
PINS_DIR = Path(__file__).resolve().parent / "pins"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
TORCH = {"torch", "torchvision"}
# What services/docker/{prestart,mlflow_setup,health}.py and shared/ import in the mlflow image.
MLFLOW_START_STEPS = {"redis", "sqlalchemy", "psycopg", "pydantic-settings", "pyyaml", "click", "tenacity"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].strip().lower()


def pins(role: str, pyproject: Path = PYPROJECT) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    dependencies: list[str] = project["dependencies"]
    if role == "torch":
        return [pin for pin in dependencies if _name(pin) in TORCH]
    if role == "app":
        return ["setuptools>=68", *(pin for pin in dependencies if _name(pin) not in TORCH)]
    if role == "mlflow":
        server = project["optional-dependencies"]["tracking-server"]
        return ["setuptools>=68", *server, *(pin for pin in dependencies if _name(pin) in MLFLOW_START_STEPS)]
    raise SystemExit(f"unknown role {role!r}: torch, app or mlflow")


def pins_file_text(role: str, pyproject: Path = PYPROJECT) -> str:
    return f"# {role}: written by `make docker-pins` from pyproject.toml; do not edit\n" + "".join(
        f"{pin}\n" for pin in pins(role, pyproject)
    )


def write_pins_files(folder: Path = PINS_DIR) -> None:
    folder.mkdir(exist_ok=True)
    for role in ROLES:
        (folder / f"{role}.txt").write_text(pins_file_text(role))


if __name__ == "__main__":
    write_pins_files()
