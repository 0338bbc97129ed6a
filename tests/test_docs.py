"""The documentation stays true to the tree: every link and every file it or a comment names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import PROJECT

DOCS = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CITED_PATH = re.compile(r"\b(?:services|workers|shared|tests|bench|docs)/[\w./-]*\w\.(?:py|md|sh|yml|mako)\b")


def code_files() -> list[Path]:
    return [
        path
        for folder in ("services", "workers", "shared", "tests", "bench")
        for path in (PROJECT / folder).rglob("*")
        if path.suffix in (".py", ".sh") and "__pycache__" not in path.parts
    ]


def test_every_link_of_the_docs_leads_to_a_file() -> None:
    broken = [
        f"{doc.relative_to(PROJECT)}: {target}"
        for doc in DOCS
        for target in LINK.findall(doc.read_text())
        if not target.startswith(("http://", "https://", "mailto:")) and not (doc.parent / target).exists()
    ]
    assert not broken, broken


def test_every_file_the_docs_or_the_code_cite_exists() -> None:
    missing = sorted(
        {
            f"{source.relative_to(PROJECT)}: {cited}"
            for source in [*DOCS, *code_files()]
            for cited in CITED_PATH.findall(source.read_text())
            if not (PROJECT / cited).exists()
        }
    )
    assert not missing, missing


def test_nothing_cites_the_design_sketch_outside_the_repository() -> None:
    sketch = "DESIGN" + ".md"  # ../shared's first sketch; spelt in two so that this file does not cite it
    citing = [path for path in [*DOCS, *code_files()] if sketch in path.read_text()]
    assert not citing, "cite docs/design.md, which a clone holds"


def test_make_help_lists_every_target_with_its_line() -> None:
    makefile = (PROJECT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony is not None, "the Makefile names its targets in .PHONY"
    described = re.findall(r"^([a-z][a-z0-9 -]*):[^=\n]*## (.+)$", makefile, re.MULTILINE)
    assert {name for names, _ in described for name in names.split()} == set(phony.group(1).split())
    shown = subprocess.run(["make", "-s", "help"], cwd=PROJECT, capture_output=True, text=True, check=True).stdout
    for names, line in described:
        assert f"make {names} " in shown and line in shown, f"make help does not show {names}: {line}"
