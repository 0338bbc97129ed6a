"""Seconds per nnU-Net epoch of one fold, trained through the job system and with plain nnUNetv2_train.

Both train the project's trainer with the same length and checkpoint period, and the plain runs get the
environment the stack gives its first gpu-queue worker (CUDA_VISIBLE_DEVICES, or the CPU worker's thread
settings), so the difference is what the job system adds: a Celery pool process as the parent, a pipe for
the output, progress rows. Plain runs come before and after each job-system run, so warm-up and drift fall
on both sides. While each run trains, its nnUNetv2_train process is read from /proc, and environment
variables, CPU affinity and niceness that differ between the two ways are printed: those, not the task
around the process, are what could make the same trainer slower in a worker.

  python -m bench.fold_overhead --dataset-id 921          on a running stack (bench/gpu_check.sh)
  make bench-fold                                         a stack of its own, the synthetic release, CPU
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click

from bench.stack import DISPATCH, PROJECT, dispatch_json, own_stack
from services.local.plan import programs
from shared.contract import Experiment
from shared.defaults import JOBS_TRAINER
from shared.redact import redact_url
from shared.settings import Settings, get_settings
from workers.device import device
from workers.ingest.synthetic import make_synthetic_release
from workers.nnunet.commands import environment, tool
from workers.nnunet.folds import FoldRequest, validation_dice

SYNTHETIC_DATASET = 991
EPOCH_TIME = re.compile(r"Epoch time: ([\d.]+) s")
# Set by the shell, supervisord, Celery (its app settings and logging) or this benchmark, or by
# scikit-learn's import (KMP_*, for Intel's OpenMP, which nnUNetv2_train's own import of it sets too): none
# of them changes how fast the trainer runs.
BOOKKEEPING = re.compile(
    r"^(_|PWD|OLDPWD|SHLVL|SUPERVISOR_.*|CELERY_.*|_MP_FORK_.*|FORKED_BY_MULTIPROCESSING|KMP_DUPLICATE_LIB_OK"
    r"|KMP_INIT_AT_FORK|DATABASE_URL|RESULT_BACKEND|nnUNet_results)$"
)


@dataclass
class Process:
    """What /proc says of a training process: what could make the same trainer run at another speed."""

    environ: dict[str, str]
    affinity: int  # usable CPUs
    nice: int


@dataclass
class Run:
    way: str  # "plain" or "job system"
    epoch_s: list[float]
    dice: float | None
    process: Process | None
    peak_mib: int | None = None
    stack_cpu_s: float | None = None  # what the stack's own processes used while the run trained
    dispatch_cpu_s: float | None = None  # `dispatch train --wait`, following the run
    notes: list[str] = field(default_factory=list)

    @property
    def steady_s(self) -> float | None:
        """Median epoch time after the first, which warms up (cuDNN's autotuning, the loaders' first batches)."""
        return statistics.median(self.epoch_s[1:] or self.epoch_s) if self.epoch_s else None


def epoch_times(log: Path) -> list[float]:
    return [float(v) for v in EPOCH_TIME.findall(log.read_text())] if log.exists() else []


def look_at(pid: int) -> Process | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        environ = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        return Process(environ, len(os.sched_getaffinity(pid)), os.getpriority(os.PRIO_PROCESS, pid))
    except (OSError, ValueError):
        return None  # it ended before it could be read


def _processes() -> Iterator[tuple[int, list[bytes], list[str]]]:
    """Every process: pid, argv, and the fields of /proc/PID/stat after the command name (state first)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            yield int(entry.name), argv, fields


def stack_cpu_s() -> float:
    """CPU seconds the stack's processes (Celery workers, beat, Flower, Redis, supervisord) have used themselves."""
    ticks = 0
    for _, argv, fields in _processes():
        if any(name in arg for arg in argv[:4] for name in (b"celery", b"redis-server", b"supervisord")):
            ticks += int(fields[11]) + int(fields[12])  # utime, stime: not the children they waited for
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def training_process(dataset_id: int) -> int | None:
    """The nnUNetv2_train process for this dataset (not its data-augmentation children)."""
    found = {  # pid -> parent pid
        pid: int(fields[1])
        for pid, argv, fields in _processes()
        if any(arg.endswith(b"nnUNetv2_train") for arg in argv[:2]) and str(dataset_id).encode() in argv
    }
    roots = [pid for pid, parent in found.items() if parent not in found]
    return min(roots) if roots else None


class MemorySampler:
    """nvidia-smi's used memory every 0.5 s while a run trains; nothing where there is no nvidia-smi."""

    def __init__(self, out: Path) -> None:
        self.out = out
        command = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "500"]
        self.process = None
        if shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(command, stdout=out.open("w"), stderr=subprocess.DEVNULL)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.kill()
        self.process.wait()
        values = [int(v) for v in self.out.read_text().split() if v.isdigit()]
        return max(values, default=None)


def watch(process: subprocess.Popen[str], dataset_id: int) -> Process | None:
    """Read the training process once it exists; wait for `process` (the run's command) to end."""
    seen = None
    while process.poll() is None:
        if seen is None:
            pid = training_process(dataset_id)
            seen = look_at(pid) if pid else None
        time.sleep(0.5)
    return seen


@dataclass(frozen=True)
class Bench:
    settings: Settings
    env: dict[str, str]  # the stack's
    request: FoldRequest
    work: Path

    def worker_environment(self) -> dict[str, str]:
        """What the stack gives its first gpu-queue worker beyond the shared settings."""
        worker = next(p for p in programs(self.settings, start_redis=False) if p.name == "gpu-worker-0")
        return worker.environment

    def plain(self, index: int) -> Run:
        results = self.work / f"plain-{index}"
        worker = self.worker_environment()
        env = {**environment(self.settings, self.request.trainer_environment()), **worker}
        env["nnUNet_results"] = str(results)
        experiment = self.request.experiment
        command = self.request.command(tool("nnUNetv2_train"), device(worker), resume=[])
        log = self.work / f"plain-{index}.log"
        sampler = MemorySampler(self.work / f"memory-plain-{index}.txt")
        stack_before = stack_cpu_s()
        with log.open("w") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
            seen = watch(process, experiment.dataset_id)
        run = Run("plain", epoch_times(log), None, seen, sampler.stop(), stack_cpu_s() - stack_before)
        folds = list(results.rglob(f"fold_{self.request.fold}"))
        run.dice = validation_dice(folds[0]) if folds else None
        if process.returncode != 0:
            run.notes.append(f"plain run {index} exited with {process.returncode}: {log}")
        return run

    def through_jobs(self, index: int) -> Run:
        request, experiment = self.request, self.request.experiment
        folder = experiment.fold_folder(self.settings.layout, request.fold)
        if index > 0:
            shutil.rmtree(folder)  # this benchmark's own earlier run: train the fold again, not skip it
        args = ["train", "--dataset-id", str(experiment.dataset_id), "--folds", str(request.fold)]
        args += ["--epochs", str(request.epochs), "--iterations", str(request.iterations)]
        args += ["--save-every", str(request.save_every), "--wait", "--json"]
        sampler = MemorySampler(self.work / f"memory-system-{index}.txt")
        stack_before, children_before = stack_cpu_s(), children_cpu_s()
        command = [*DISPATCH, *args]
        process = subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE, text=True, cwd=PROJECT)
        seen = watch(process, experiment.dataset_id)
        stack_s, dispatch_s = stack_cpu_s() - stack_before, children_cpu_s() - children_before
        peak = sampler.stop()
        stdout = process.stdout.read() if process.stdout else ""
        run_record = json.loads(stdout) if stdout.strip() else {}
        fold = next((job for job in run_record.get("jobs", []) if job["kind"] == "fold"), {})
        log = Path(fold.get("artifacts", {}).get("log", "/missing"))
        dice = fold.get("metrics", {}).get("validation_dice")
        run = Run("job system", epoch_times(log), dice, seen, peak, stack_s, dispatch_s)
        if fold.get("state") != "succeeded":
            run.notes.append(f"job-system run {index}: fold {fold.get('state')} {fold.get('error') or ''}")
        return run

    def compare(self, rounds: int) -> list[Run]:
        folder = self.request.experiment.fold_folder(self.settings.layout, self.request.fold)
        if folder.exists():
            raise click.ClickException(f"{folder} exists: the benchmark trains that fold itself; use a fresh DATA_ROOT")
        runs = [self.plain(0)]
        for index in range(rounds):
            runs += [self.through_jobs(index), self.plain(index + 1)]
        return runs


def shown(key: str, value: str | None) -> str | None:
    """An environment value as the report may print it: no password, in a URL or on its own."""
    if value is None:
        return None
    if any(word in key for word in ("PASSWORD", "SECRET", "AUTH")):
        return "***"
    return redact_url(value) if "://" in value else value


def differences(runs: list[Run]) -> list[str]:
    """Environment variables, affinity and niceness that differ between the plain and the job-system processes."""
    plain = next((run.process for run in runs if run.way == "plain" and run.process), None)
    system = next((run.process for run in runs if run.way == "job system" and run.process), None)
    if plain is None or system is None:
        return ["the training processes could not be read from /proc"]
    lines = []
    for key in sorted(set(plain.environ) | set(system.environ)):
        ours, theirs = system.environ.get(key), plain.environ.get(key)
        if ours != theirs and not BOOKKEEPING.match(key):
            lines.append(f"env {key}: job system {shown(key, ours)!r}, plain {shown(key, theirs)!r}")
    if plain.affinity != system.affinity:
        lines.append(f"CPU affinity: job system {system.affinity} CPUs, plain {plain.affinity}")
    if plain.nice != system.nice:
        lines.append(f"niceness: job system {system.nice}, plain {plain.nice}")
    return lines


def report(runs: list[Run], request: FoldRequest) -> None:
    def mean(way: str) -> float | None:
        values = [run.steady_s for run in runs if run.way == way]
        return statistics.mean(values) if values and None not in values else None

    def figures(way: str, digits: int, value: Callable[[Run], float | None]) -> str:
        shown = [value(run) for run in runs if run.way == way]
        return " / ".join("-" if v is None else f"{v:.{digits}f}" for v in shown)

    system_s, plain_s = mean("job system"), mean("plain")
    overhead = 100 * (system_s / plain_s - 1) if system_s and plain_s else None
    length = f"{request.epochs} epochs x {request.iterations} iterations"
    click.echo(f"\nnnU-Net fold {request.fold}, {length}, runs in the order they ran")
    click.echo(f"{'':44s} {'job system':>22s} {'plain nnUNetv2_train':>28s}")
    rows = [
        ("s per epoch (median after the first)", 2, lambda run: run.steady_s),
        ("peak GPU memory (MiB, nvidia-smi)", 0, lambda run: run.peak_mib),
        ("validation Dice", 4, lambda run: run.dice),
        ("CPU s of the stack's processes during the run", 1, lambda run: run.stack_cpu_s),
        ("CPU s of dispatch train --wait", 1, lambda run: run.dispatch_cpu_s),
    ]
    for label, digits, value in rows:
        click.echo(f"{label:44s} {figures('job system', digits, value):>22s} {figures('plain', digits, value):>28s}")
    shown = "-" if overhead is None else f"{overhead:+.1f}%"
    click.echo(f"{'job system overhead per epoch (<= +5%)':44s} {shown:>22s}")
    for line in differences(runs) + [note for run in runs for note in run.notes]:
        click.echo(f"  {line}")


def synthetic_dataset(env: dict[str, str], data_root: Path) -> None:
    release = make_synthetic_release(data_root / "synthetic" / "FracAtlas")
    for args in (
        ["ingest", "--source", str(release), "--dataset-id", str(SYNTHETIC_DATASET), "--size", "64", "--wait"],
        ["preprocess", "--dataset-id", str(SYNTHETIC_DATASET), "--wait"],
    ):
        run = dispatch_json(env, *args)
        if run["state"] != "succeeded":
            raise click.ClickException(f"dispatch {args[0]} failed: {run['error']}")


@click.command()
@click.option("--dataset-id", type=int, help="A preprocessed dataset on the running stack [default: build one].")
@click.option("--fold", default=0, show_default=True)
@click.option("--epochs", default=5, show_default=True)
@click.option("--iterations", default=100, show_default=True)
@click.option("--rounds", default=1, show_default=True, help="Job-system runs, each followed by a plain one.")
def main(dataset_id: int | None, fold: int, epochs: int, iterations: int, rounds: int) -> None:
    """Without --dataset-id: a stack of its own with the synthetic release at 64 px (the CPU benchmark)."""
    work = Path(tempfile.mkdtemp(prefix="bench-fold-"))
    try:
        if dataset_id is None:
            with own_stack(work / "var", GPU_WORKERS="1") as env:
                synthetic_dataset(env, work / "var")
                measure(env, SYNTHETIC_DATASET, fold, epochs, iterations, rounds, work)
        else:
            measure(dict(os.environ), dataset_id, fold, epochs, iterations, rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(
    env: dict[str, str], dataset_id: int, fold: int, epochs: int, iterations: int, rounds: int, work: Path
) -> None:
    os.environ.update(env)  # the settings of the stack being measured
    get_settings.cache_clear()
    experiment = Experiment(dataset_id=dataset_id, trainer=JOBS_TRAINER)
    request = FoldRequest(experiment, fold, epochs=epochs, iterations=iterations, save_every=epochs)
    runs = Bench(get_settings(), env, request, work).compare(rounds)
    report(runs, request)


if __name__ == "__main__":
    main()
