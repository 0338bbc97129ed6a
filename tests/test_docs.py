"""The documentation stays true to the tree: every link and every file it or a comment names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from conftest import PROJECT

DOCS = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]  # docs/README.md among them
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


def test_the_readme_is_one_short_page_and_the_docs_route_to_every_page() -> None:
    readme = (PROJECT / "README.md").read_text()
    assert len(readme.splitlines()) <= 80, "the README stays about 80 lines: the rest goes to docs/"
    assert "make demo" in readme.split("## ")[0] and "make test" in readme.split("## ")[0], "the first screen"
    assert "(docs/README.md)" in readme
    routed = set(LINK.findall((PROJECT / "docs" / "README.md").read_text()))
    pages = {path.name for path in (PROJECT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= routed, f"docs/README.md does not route to {sorted(pages - routed)}"


def test_no_page_a_user_reads_cites_an_issue_number() -> None:
    citing = [
        f"{doc.relative_to(PROJECT)}: {match.group(0)}"
        for doc in DOCS
        for match in re.finditer(r"\bissues? \d+", doc.read_text(), re.IGNORECASE)
    ]
    assert not citing, "say what changed, not its issue number, which a reader cannot follow: " + str(citing)


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


def _commands(group: Any, prefix: str = "dispatch") -> dict[str, Any]:
    """'dispatch NAME [SUB]' -> its click command, for every command and subcommand."""
    found = {}
    for name, command in group.commands.items():
        found[f"{prefix} {name}"] = command
        if hasattr(command, "commands"):
            found |= _commands(command, f"{prefix} {name}")
    return found


def test_every_option_of_every_command_is_in_docs_cli() -> None:
    """Each command's row (or rows) in docs/cli.md's table names every option it takes; `--json`, which every
    command takes, is said once below the table."""
    from services.dispatcher.cli import main

    text = (PROJECT / "docs" / "cli.md").read_text()
    cells = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| `dispatch ")]
    commands = _commands(main)
    assert "Every command takes `--json`" in text
    unsaid = [f"{name} --json" for name, command in commands.items() if "--json" not in _options(command)]
    for name, command in sorted(commands.items()):
        subcommands = [other.removeprefix(name + " ") for other in commands if other.startswith(name + " ")]
        not_sub = "".join(rf"(?!{re.escape(sub)}\b)" for sub in subcommands)
        said = " ".join(cell for cell in cells if re.search(rf"`{re.escape(name)}(?:`| {not_sub})", cell))
        if not said:
            unsaid.append(f"{name}: no row")
        options = _options(command) - {"--json"}
        unsaid += [f"{name} {option}" for option in options if not re.search(rf"{option}\b", said)]
    assert not unsaid, f"docs/cli.md's table does not say: {unsaid}"


def _options(command: Any) -> set[str]:
    """A command's options by their long names, --help aside."""
    names = {max(parameter.opts, key=len) for parameter in command.params}
    return {name for name in names if name.startswith("--") and name != "--help"}
