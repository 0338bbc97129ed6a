"""The house by domain (docs/design.md, "Shape of the repository"): each folder of workers/ holds one domain,
imports between domains go one way, domain code knows nothing of Celery, and tasks sit in each domain's
tasks.py with their queue decided in shared/tasknames.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import PROJECT

WORKERS = PROJECT / "workers"
DOMAINS = sorted(path.name for path in WORKERS.iterdir() if (path / "__init__.py").is_file())
CELERY_SIDE = ("celery", "workers.runtime", "shared.celery_app")
REGISTERING = ("job_task", "task")  # @job_task(NAME), @app.task(name=NAME)


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def domain_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "workers" and parts[1] in DOMAINS else None


def domain_edges() -> dict[tuple[str, str], str]:
    """(importer, imported) -> one file that makes the edge."""
    edges: dict[tuple[str, str], str] = {}
    for domain in DOMAINS:
        for path in sorted((WORKERS / domain).rglob("*.py")):
            for module in imported(path):
                target = domain_of(module)
                if target is not None and target != domain:
                    edges.setdefault((domain, target), str(path.relative_to(PROJECT)))
    return edges


def test_the_domains_are_the_folders_the_design_names() -> None:
    assert DOMAINS == [
        "annotate", "classifier", "evaluate", "imaging", "ingest", "nnunet", "predict", "superres", "sweep",
        "tracking",
    ]  # fmt: skip
    design = (PROJECT / "docs" / "design.md").read_text()
    unsaid = [domain for domain in DOMAINS if not re.search(rf"^  {domain}/ +\w", design, re.MULTILINE)]
    assert not unsaid, f"docs/design.md's shape of the repository says what workers/{unsaid} hold"


def test_no_two_domains_import_each_other_even_through_others() -> None:
    edges = domain_edges()
    design = (PROJECT / "docs" / "design.md").read_text()
    said = {
        (source, target.strip())
        for source, targets in re.findall(r"^(\w+) +-> (.+)$", design, re.MULTILINE)
        for target in targets.split(",")
    }
    assert said == set(edges), f"docs/design.md's list of imports between domains; the code's: {sorted(edges)}"
    reach = {domain: {target for (source, target) in edges if source == domain} for domain in DOMAINS}
    changed = True
    while changed:  # the transitive closure
        changed = False
        for domain in DOMAINS:
            more = set().union(*(reach[target] for target in reach[domain])) - reach[domain]
            if more:
                reach[domain] |= more
                changed = True
    cycles = sorted(domain for domain in DOMAINS if domain in reach[domain])
    assert not cycles, f"imports that go round: {cycles}; edges {edges}"


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__")


def module_edges() -> dict[str, set[str]]:
    """Every module of workers/ -> the modules of workers/ it imports (`from package import module` counted as
    the module)."""
    modules = {module_of(path): path for path in sorted(WORKERS.rglob("*.py"))}
    return {
        module: {name for name in imported(path) if name in modules and name != module}
        for module, path in modules.items()
    }


def test_no_module_of_workers_imports_itself_round_a_circle() -> None:
    edges = module_edges()
    circles = []
    for start in sorted(edges):
        path, seen = [start], set()
        stack = [(start, iter(sorted(edges[start])))]
        while stack:  # depth first from `start`: a way back to it is a circle
            module, following = stack[-1]
            target = next(following, None)
            if target is None:
                stack.pop()
                path.pop()
            elif target == start:
                circles.append(" -> ".join([*path, start]))
                break
            elif target not in seen:
                seen.add(target)
                path.append(target)
                stack.append((target, iter(sorted(edges[target]))))
    assert not circles, f"imports that go round: {circles}"
    assert "workers.ingest.steps" in edges and edges["workers.ingest.steps"], "the imports are read"


def test_prediction_is_a_leaf_no_other_domain_imports_it() -> None:
    importers = sorted(
        f"{module} imports {target}"
        for module, targets in module_edges().items()
        if domain_of(module) not in ("predict", None)
        for target in targets
        if domain_of(target) == "predict"
    )
    assert not importers, importers
    assert ("predict", "classifier") in domain_edges(), "prediction reads the classifier's model from classifier/"


def test_domain_code_knows_nothing_of_celery() -> None:
    offenders = [
        f"{path.relative_to(PROJECT)} imports {module}"
        for domain in DOMAINS
        for path in sorted((WORKERS / domain).rglob("*.py"))
        if path.name != "tasks.py"
        for module in sorted(imported(path))
        if module.startswith(CELERY_SIDE)
    ]
    assert not offenders, offenders
    assert any("workers.runtime" in imported(path) for path in WORKERS.glob("*/tasks.py")), "tasks.py files are read"


def registered_names(path: Path) -> list[str]:
    """The task-name constants (shared/tasknames.py) that `path` registers: @job_task(NAME), @app.task(name=NAME)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in REGISTERING:
            arguments = [*node.args[:1], *(keyword.value for keyword in node.keywords if keyword.arg == "name")]
            names += [argument.id for argument in arguments if isinstance(argument, ast.Name)]
    return names


def test_every_task_sits_in_its_domains_tasks_module_and_is_routed_in_one_place() -> None:
    from shared import tasknames
    from shared.celery_app import app

    home_of: dict[str, list[str]] = {}
    for path in [WORKERS / "maintenance.py", *sorted(WORKERS.glob("*/tasks.py"))]:
        module = ".".join(path.relative_to(PROJECT).with_suffix("").parts)
        for constant in registered_names(path):
            home_of.setdefault(getattr(tasknames, constant), []).append(module)
    assert set(home_of) == set(tasknames.QUEUE_OF), "every task has its queue in shared/tasknames.py, and only tasks"
    assert all(len(modules) == 1 for modules in home_of.values()), home_of
    spelt = {"classify": "classifier", "jobs": "maintenance"}  # a task name's first word -> its module's
    kept = {tasknames.CLASSIFY_PREDICT: "predict"}  # names kept when their task moved, so queued messages run
    for name, (module,) in home_of.items():
        first = name.split(".")[0]
        assert module.split(".")[1] == kept.get(name, spelt.get(first, first)), f"{name} is registered in {module}"
    assert set(app.conf.include) == {module for (module,) in home_of.values()}, "the app includes each tasks module"
