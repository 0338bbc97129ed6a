"""How runs and jobs look in a terminal."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import click

from shared.results_table import with_interval

STATE_COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "pruned": "magenta",
}


def state(text: str) -> str:
    return click.style(text, fg=STATE_COLOURS.get(text))


def age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def progress_text(progress: dict[str, Any]) -> str:
    if progress["total"]:
        return f"{progress['step']}/{progress['total']}"
    return ""


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(click.unstyle(str(row[i]))) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            str(cell) + " " * (width - len(click.unstyle(str(cell)))) for cell, width in zip(row, widths, strict=True)
        ).rstrip()

    return "\n".join([click.style(line(header), bold=True), *(line(row) for row in rows)])


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    rows = [
        [
            f"r{job['run_id']}",
            job["ref"],
            job["kind"],
            state(job["state"]),
            str(job["attempt"]),
            job["worker"] or "",
            progress_text(job["progress"]),
            age(job["age_s"]),
            job["name"],
        ]
        for job in jobs
    ]
    return table(rows, ["RUN", "JOB", "KIND", "STATE", "ATTEMPT", "WORKER", "PROGRESS", "AGE", "NAME"])


def workers_table(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            [
                row["worker"],
                ",".join(row["queues"]),
                str(row["concurrency"] or ""),
                row["gpu"] or "-",
                str(row["pid"] or ""),
            ]
            for row in rows
        ],
        ["WORKER", "QUEUES", "CONCURRENCY", "GPU", "PID"],
    )


def slurm_table(rows: list[dict[str, Any]]) -> str:
    return table(
        [[row["slurm_job"], row["state"], row["time_left"], row["node"], row["replaces"] or "-"] for row in rows],
        ["SLURM JOB", "STATE", "TIME LEFT", "NODE (OR REASON)", "REPLACES"],
    )


def bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def run_line(run: dict[str, Any]) -> str:
    progress = run["progress"]
    running = [job for job in run["jobs"] if job["state"] == "running"]
    current = f"  {running[0]['name']}: {running[0]['progress']['message'] or ''}" if running else ""
    return (
        f"run {run['ref']} {run['kind']} {state(run['state'])} {bar(progress['done'], progress['total'])} "
        f"jobs {progress['jobs_done']}/{progress['jobs']}{current}"
    )


def _mapping(title: str, content: dict[str, Any]) -> list[str]:
    if not content:
        return []
    lines = [f"{title}:"]
    for key, value in content.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            text = "\n    ".join(["", *value]) if len(value) > 1 else value[0]
        lines.append(f"  {key}: {text}")
    return lines


def _dice(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


SEGMENTATION_TEST_ROWS = (
    ("Dice on fractured cases", "dice_fractured"),
    ("non-fractured cases with a false positive", "false_positive_share"),
    ("picture-level sensitivity (mask not empty)", "detection_sensitivity"),
    ("picture-level specificity", "detection_specificity"),
)
SEGMENTATION_KEYS = ("folds", "folds_used", "cv_dice_mean", "postprocessing", "without_postprocessing")


def segmentation_table(metrics: dict[str, Any]) -> list[str]:
    """Per-fold validation Dice, nnU-Net's choice of postprocessing and the ensemble's test figures with and
    without it, as a training run ends with them."""
    rows = [[f"fold {fold}", _dice(dice)] for fold, dice in metrics["folds"].items()]
    rows.append(["mean (cross-validation)", _dice(metrics.get("cv_dice_mean"))])
    lines = ["", table(rows, ["FOLD", "VALIDATION DICE"])]
    chosen = metrics.get("postprocessing")
    if chosen:
        lines.append(
            f"postprocessing (nnUNetv2_find_best_configuration): {chosen['chosen']}; cross-validation Dice "
            f"{_dice(chosen['cv_dice_before'])} -> {_dice(chosen['cv_dice_after'])}"
        )
    if metrics.get("test_cases"):
        folds = ",".join(str(fold) for fold in metrics["folds_used"])
        raw = metrics.get("without_postprocessing", {})
        header = (
            f"ensemble of folds {folds}: {metrics.get('test_fractured_cases', '?')} fractured + "
            f"{metrics.get('test_non_fractured_cases', '?')} non-fractured test cases [95% CI]"
        )
        body = [["nnU-Net's mean Dice", _dice(metrics.get("test_dice_mean")), _dice(raw.get("test_dice_mean"))]]
        for label, key in SEGMENTATION_TEST_ROWS:
            cells = [
                with_interval(figures.get(f"test_{key}"), figures.get("test_intervals", {}).get(key))
                for figures in (metrics, raw)
            ]
            body.append([label, *cells])
        body += _category_rows(metrics, raw)
        lines += ["", header, table(body, ["TEST", "POSTPROCESSED", "WITHOUT"])]
    return [*lines, ""]


def _category_rows(metrics: dict[str, Any], raw: dict[str, Any]) -> list[list[str]]:
    """Dice per category (on the test cases that hold it) and their mean, where a release has several."""
    categories = metrics.get("test_dice_per_category") or {}
    if len(categories) < 2:
        return []
    rows = []
    for name in categories:
        cells = [
            with_interval(
                (figures.get("test_dice_per_category") or {}).get(name),
                figures.get("test_intervals", {}).get("dice_per_category", {}).get(name),
            )
            for figures in (metrics, raw)
        ]
        rows.append([f"Dice on {name} ({metrics['test_cases_per_category'][name]} cases)", *cells])
    mean = [
        with_interval(
            figures.get("test_dice_category_mean"), figures.get("test_intervals", {}).get("dice_category_mean")
        )
        for figures in (metrics, raw)
    ]
    return [*rows, ["mean Dice over the categories", *mean]]


CLASSIFIER_PREFIX = "classifier "
CLASSIFIER_ROWS = (
    ("accuracy", "accuracy"),
    ("balanced accuracy", "balanced_accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("precision", "precision"),
    ("F1", "f1"),
    ("ROC AUC", "roc_auc"),
    ("PR AUC", "pr_auc"),
    ("threshold (chosen on val)", "threshold"),
    ("sensitivity at 90% specificity", "sensitivity_at_90_specificity"),
    ("  its specificity on test", "specificity_at_90_threshold"),
)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def classification_table(metrics: dict[str, Any]) -> list[str]:
    """The test metrics of each trained input mode, side by side."""
    modes = {key.removeprefix(CLASSIFIER_PREFIX): value for key, value in metrics.items()}
    rows = [
        [label, *(with_interval(m["test"].get(key), m["test"].get("intervals", {}).get(key)) for m in modes.values())]
        for label, key in CLASSIFIER_ROWS
    ]
    extra = {
        "confusion TP/FN/FP/TN": lambda m: "{tp}/{fn}/{fp}/{tn}".format(**m["test"]["confusion"]),
        "test images": lambda m: str(m["test"]["images"]),
        "best epoch (val AUC)": lambda m: f"{m['best_epoch']} ({_number(m['best_val_auc'])})",
        "training images/s": lambda m: f"{m['train_images_per_s']:.0f}",
        "backbone": lambda m: m.get("backbone", "resnet18"),
        "weights": lambda m: m.get("weights", "-"),
    }
    rows += [[label, *(_cell(cell, m) for m in modes.values())] for label, cell in extra.items()]
    return ["", table(rows, ["TEST SPLIT [95% CI]", *modes]), ""]


def _cell(cell: Any, metrics: dict[str, Any]) -> str:
    """A cell of a classifier the run did not train itself (an import's): what its bundle did not carry is -."""
    try:
        return cell(metrics)
    except (KeyError, TypeError):
        return "-"


STRATUM_COLUMNS = (
    ("ROC AUC", "classifier", "roc_auc"),
    ("SENSITIVITY", "classifier", "sensitivity"),
    ("SPECIFICITY", "classifier", "specificity"),
    ("DICE (FRACTURED)", "segmentation", "dice_fractured"),
)


def evaluation_tables(metrics: dict[str, Any]) -> list[str]:
    """An external cohort's figures beside the internal test split's, as `dispatch evaluate` computed them,
    then each --by stratum's headline figures (every figure is in `dispatch show --json`)."""
    content = metrics.pop("table")
    lines = ["", table(content["rows"], content["header"]), ""]
    for name, values in metrics.pop("strata", {}).items():
        rows = []
        for value, figures in values.items():
            cells = []
            for _label, part, key in STRATUM_COLUMNS:
                found = figures.get(part) or {}
                cells.append(with_interval(found.get(key), (found.get("intervals") or {}).get(key)))
            rows.append([value, str(figures["pictures"]), *cells])
        header = [f"BY {name.upper()}", "PICTURES", *(label for label, _part, _key in STRATUM_COLUMNS)]
        lines += [table(rows, header), ""]
    for key in ("classifier", "segmentation"):  # in the table above
        metrics.pop(key, None)
    return lines


def _setting(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trials_table(jobs: list[dict[str, Any]]) -> list[str]:
    """A sweep's trials, best validation AUC first: settings, epochs run, state and worker."""
    trials = [job for job in jobs if job["kind"] == "trial"]
    names = list(dict.fromkeys(name for job in trials for name in job["metrics"].get("params", {})))
    auc = [job["metrics"].get("best_val_auc") for job in trials]
    order = sorted(range(len(trials)), key=lambda i: (auc[i] is None, -(auc[i] or 0), trials[i]["id"]))
    rows = [
        [
            str(trials[i]["metrics"].get("trial", "-")),
            trials[i]["ref"],
            state(trials[i]["state"]),
            _number(auc[i]),
            str(trials[i]["metrics"].get("epochs_run", "-")),
            trials[i]["worker"] or "",
            *(_setting(trials[i]["metrics"].get("params", {}).get(name, "")) for name in names),
        ]
        for i in order
    ]
    return ["", table(rows, ["TRIAL", "JOB", "STATE", "VAL AUC", "EPOCHS", "WORKER", *map(str.upper, names)])]


def sweep_summary(metrics: dict[str, Any]) -> list[str]:
    """The best trial, the count of trials by state and the parameters' importances."""
    best = metrics.pop("best", None)
    counts = metrics.pop("trials", {})
    importances = metrics.pop("importances", None)
    if best is None:
        return []
    settings = ", ".join(f"{key}={_setting(value)}" for key, value in best["params"].items())
    lines = ["", f"best: trial {best['trial']} ({best['job']}), val AUC {_number(best['val_auc'])}: {settings}"]
    lines.append("trials: " + ", ".join(f"{count} {name}" for name, count in counts.items() if count))
    if importances:
        lines.append(
            "importance (fANOVA, share of val AUC variance): "
            + ", ".join(f"{key} {value:.2f}" for key, value in importances.items())
        )
    return lines


def predictions_table(path: Path) -> list[str]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    body = [
        [Path(r["file"]).name, r["fracture_probability"], r["predicted_label"], r["fracture_area_px"], r["overlay"]]
        for r in rows
    ]
    return ["", table(body, ["FILE", "P(FRACTURE)", "PREDICTED", "AREA PX", "OVERLAY"]), ""]


def rank_table(path: Path, top: int) -> list[str]:
    """`dispatch show` of a rank run: its top pictures, to label first."""
    if not path.is_file():
        return [f"({path} is gone)"]
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:top]
    body = [[r["rank"], r["name"], r["score"], r["fold_disagreement"], r["fracture_probability"]] for r in rows]
    return ["", table(body, ["RANK", "NAME", "SCORE", "FOLDS DISAGREE", "P(FRACTURE)"]), ""]


def show_run(run: dict[str, Any]) -> str:
    lines = [f"run {run['ref']}  {run['kind']}  {state(run['state'])}  created {run['created_at']}"]
    lines += _mapping("parameters", run["params"])
    if run["error"]:
        lines.append(click.style(f"error: {run['error']}", fg="red"))
    metrics = dict(run["metrics"])
    if run["kind"] == "evaluate" and "table" in metrics:
        lines += evaluation_tables(metrics)
    if isinstance(metrics.get("folds"), dict):  # a training run's, by fold (an import's is a list)
        lines += segmentation_table(metrics)
        for key in [*SEGMENTATION_KEYS, *(key for key in list(metrics) if key.startswith("test_"))]:
            metrics.pop(key, None)
    if run["kind"] == "sweep":
        lines += trials_table(run["jobs"]) + sweep_summary(metrics)
    classifiers = {key: metrics.pop(key) for key in list(metrics) if key.startswith(CLASSIFIER_PREFIX)}
    if classifiers:
        lines += classification_table(classifiers)
    if run["kind"] == "predict" and "predictions" in run["artifacts"]:
        lines += predictions_table(Path(run["artifacts"]["predictions"]))
    if run["kind"] == "rank" and "rank" in run["artifacts"]:
        lines += rank_table(Path(run["artifacts"]["rank"]), len(metrics.get("top", [])))
    lines += _mapping("metrics", metrics)
    lines += _mapping("artifacts", run["artifacts"])
    lines += ["", jobs_table(run["jobs"])]
    return "\n".join(lines)


def show_job(job: dict[str, Any]) -> str:
    lines = [
        f"job {job['ref']} of run r{job['run_id']}  {job['kind']}  {state(job['state'])}  attempt {job['attempt']}",
        f"task {job['task']} on queue {job['queue']}  celery id {job['celery_task_id'] or '-'}",
        f"worker {job['worker'] or '-'}  gpu {job['gpu'] or '-'}  heartbeat {job['heartbeat_at'] or '-'}",
        f"progress {progress_text(job['progress']) or '-'}  {job['progress']['message'] or ''}",
        f"created {job['created_at']}  started {job['started_at'] or '-'}  finished {job['finished_at'] or '-'}",
    ]
    if job["error"]:
        lines.append(click.style(f"error: {job['error']}", fg="red"))
    lines += _mapping("parameters", job["params"])
    lines += _mapping("metrics", job["metrics"])
    lines += _mapping("artifacts", job["artifacts"])
    return "\n".join(lines)
