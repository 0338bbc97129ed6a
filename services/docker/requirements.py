"""The pins an image installs, read from pyproject.toml so that the images and `make install` never differ.

`python services/docker/requirements.py torch` prints torch and torchvision (the layer every worker image
shares), `app` every other dependency of the project, and `mlflow` what the tracking server's image needs:
the `tracking-server` extra and the packages its start steps import (settings, the job table's driver,
Redis), without torch. Run by the Dockerfile before the project is installed, so it imports nothing of it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

TORCH = {"torch", "torchvision"}
# What services/docker/{prestart,mlflow_setup,health}.py and shared/ import in the mlflow image.
MLFLOW_START_STEPS = {"redis", "sqlalchemy", "psycopg", "pydantic-settings", "pyyaml", "click", "tenacity"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].strip().lower()


def pins(role: str, pyproject: Path) -> list[str]:
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


if __name__ == "__main__":
    pyproject = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[2] / "pyproject.toml"
    print("\n".join(pins(sys.argv[1], pyproject)))
