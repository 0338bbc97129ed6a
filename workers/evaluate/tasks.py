"""External validation as a Celery task on the gpu queue (`dispatch evaluate`): the cohort through the
model (external.py), its table, pictures and per-case table in the run's folder and in MLflow, its section
in docs/results.md's format.

Every worker imports this module (the app includes it): torch is imported inside the task.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shared.bundles import PICTURE_HASHES
from shared.contract import EvaluateRequest
from shared.errors import InputError
from shared.layout import DataRoot, find_dataset
from shared.read_model import IMPORT_KIND, get_run, trained_segmentation
from shared.settings import get_settings
from shared.tasknames import EVALUATE_COHORT
from workers.runtime import JobContext, Outcome, job_task


@job_task(EVALUATE_COHORT)
def evaluate(ctx: JobContext) -> Outcome:
    """An external cohort scored by a training run's folds and a classifier, never on what they saw."""
    from workers.classifier.model import load_classifier
    from workers.evaluate import report
    from workers.evaluate.external import Model, evaluate_cohort, write_cases
    from workers.evaluate.figures import Thresholds
    from workers.imaging.pseudonyms import private_key

    request = EvaluateRequest.parse(ctx.run_params)
    settings = get_settings()
    experiment, folds = trained_segmentation(request.seg_run)
    classifier = load_classifier(Path(request.checkpoint))
    seg_run, classifier_run = get_run(request.seg_run), get_run(request.classifier_run)
    internal = {
        "classifier": classifier_run["metrics"].get(f"classifier {request.input}", {}).get("test") or {},
        "segmentation": _internal_segmentation(seg_run),
    }
    model = Model(
        experiment,
        folds,
        classifier,
        Thresholds(classifier.threshold, internal["classifier"].get("threshold_90_specificity")),
        json.loads((experiment.results(settings.layout) / "dataset.json").read_text())["labels"],
        _seen_pictures(settings.layout, seg_run),
    )
    out = ctx.folder / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=ctx.folder, prefix=".evaluate-"))
    try:
        evaluated = evaluate_cohort(
            settings,
            request,
            model,
            private_key(settings.layout.private_dir),
            work,
            out,
            lambda step, total, message: ctx.progress(step, total, message),
            ctx.tool_run("evaluate"),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_cases(out / "cases.csv", evaluated, classifier.threshold, request.by)
    content = report.table(evaluated, internal)
    cohort = Path(request.cohort.source).name
    what = f"r{request.seg_run}'s folds and r{request.classifier_run}'s classifier on {cohort}"
    artifacts = {
        "cases": str(out / "cases.csv"),
        **report.plots(evaluated, out, f"external: {cohort}"),
        "results": str(out / "results.md"),
    }
    if evaluated.summary.is_file():
        artifacts["nnunet_summary"] = str(evaluated.summary)
    section = report.results_section(f"external validation of {what}", _command(request), content)
    (out / "results.md").write_text(section)
    if request.results:
        with Path(request.results).open("a", encoding="utf-8") as handle:
            handle.write(section)
    metrics = {
        "cohort": evaluated.described,
        "pictures": len(evaluated.scored),
        "left_out": {"pictures": len(evaluated.left_out), "names": evaluated.left_out},
        "unreadable": evaluated.unreadable,
        "classifier": evaluated.figures["classifier"],
        "segmentation": evaluated.figures["segmentation"],
        "strata": evaluated.strata,
        "table": content,
        "warnings": evaluated.warnings,
    }
    for path in artifacts.values():
        ctx.tracking.artifact(path, "evaluation", on_run=True)
    return Outcome(metrics=metrics, artifacts=artifacts, run_metrics=metrics, run_artifacts=artifacts)


def _internal_segmentation(run: dict[str, Any]) -> dict[str, Any]:
    """The training run's internal test figures (an import's, as its model card carried them)."""
    metrics = run["metrics"].get("figures", {}) if run["kind"] == IMPORT_KIND else run["metrics"]
    return {key.removeprefix("test_"): value for key, value in metrics.items() if key.startswith("test_")}


def _seen_pictures(layout: DataRoot, run: dict[str, Any]) -> Path:
    """The pictures of the model's dataset as hashes: its manifest here, or the hashes its bundle carried."""
    if run["kind"] == IMPORT_KIND:
        path = layout.imported(run["id"]) / PICTURE_HASHES
        if not path.is_file():
            raise InputError(
                f"r{run['id']}'s bundle carried no picture hashes (its site exported it without its dataset); "
                "without them the cohort's copies of its training pictures cannot be left out"
            )
        return path
    return find_dataset(layout.nnunet_raw, int(run["params"]["dataset_id"])) / "manifest.csv"


def _command(request: EvaluateRequest) -> str:
    """The command that reproduces the run, as the user would type it."""
    options = [f"--source {request.cohort.source}", f"--segmentation r{request.seg_run}"]
    options.append(f"--classifier r{request.classifier_run}")
    options += [f"--by {name}" for name in request.by]
    return "dispatch evaluate " + " ".join(options)
