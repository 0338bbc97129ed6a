#!/usr/bin/env bash
# bench/gpu_check.sh: fold 0 of the mini set on a GPU, through the job system and with plain
# nnUNetv2_train, and a table: seconds per epoch both ways (target: the job system adds at most 5%),
# peak GPU memory and validation Dice. Meant to finish in under 8 minutes on an H100-class card.
#
#   SOURCE=path  the release to ingest (default ../shared/data/fracatlas-mini; the synthetic one if absent)
#   EPOCHS=5 ITERATIONS=100   the project's trainer (nnUNetTrainerJobs) for both runs
# Installs into .venv when there is none: from ./wheelhouse if present (`make wheelhouse` on a machine with
# an index; offline GPU servers), else from the index.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-5}
ITERATIONS=${ITERATIONS:-100}
SOURCE=${SOURCE:-../shared/data/fracatlas-mini}
DATASET=921

if [ ! -x .venv/bin/dispatch ]; then
  if [ -d wheelhouse ]; then make install WHEELHOUSE=wheelhouse PYTHON=python3; else make install; fi
fi
PY=.venv/bin/python
WORK=$(mktemp -d)
export DATA_ROOT="$WORK/var" BROKER_URL="redis://127.0.0.1:6399/0" FLOWER_PORT=5599 FLOWER_BASIC_AUTH=gpu:check
export GPU_WORKERS=1 nnUNet_compile=${nnUNet_compile:-false}
if [ ! -d "$SOURCE" ]; then
  echo "no release at $SOURCE: using a synthetic one"
  SOURCE="$WORK/synthetic"
  $PY -c "from workers.cpu.synthetic import make_synthetic_release as m; from pathlib import Path; m(Path('$SOURCE'), 120, 40)"
fi

$PY -m services.local.stack up
trap '$PY -m services.local.stack down >/dev/null' EXIT
.venv/bin/dispatch ingest --source "$SOURCE" --dataset-id $DATASET --wait >/dev/null
.venv/bin/dispatch preprocess --dataset-id $DATASET --wait >/dev/null

sample_memory() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$1" & echo $!; }

sampler=$(sample_memory "$WORK/memory-system.txt")
.venv/bin/dispatch train --dataset-id $DATASET --folds 0 --epochs "$EPOCHS" --iterations "$ITERATIONS" \
  --save-every "$EPOCHS" --wait --json > "$WORK/system.json" || true
kill "$sampler"

sampler=$(sample_memory "$WORK/memory-plain.txt")
nnUNet_raw="$DATA_ROOT/nnUNet_raw" nnUNet_preprocessed="$DATA_ROOT/nnUNet_preprocessed" \
  nnUNet_results="$WORK/plain_results" nnUNet_extTrainer="$PWD/workers/gpu/nnunet_trainers" \
  NNUNET_JOBS_EPOCHS="$EPOCHS" NNUNET_JOBS_ITERATIONS="$ITERATIONS" NNUNET_JOBS_SAVE_EVERY="$EPOCHS" \
  .venv/bin/nnUNetv2_train $DATASET 2d 0 -tr nnUNetTrainerJobs -device cuda --npz > "$WORK/plain.log" 2>&1
kill "$sampler"

$PY - "$WORK" <<'EOF_PY'
import json, re, statistics, sys
from pathlib import Path

work = Path(sys.argv[1])
run = json.loads((work / "system.json").read_text())
fold = next(job for job in run["jobs"] if job["kind"] == "fold")
plain_summary = next((work / "plain_results").rglob("fold_0/validation/summary.json"))

def epoch_times(log: Path) -> list[float]:
    return [float(m) for m in re.findall(r"Epoch time: ([\d.]+) s", log.read_text())]

def steady(times: list[float]) -> float:
    return statistics.median(times[1:] or times)  # the first epoch warms up cuDNN

def peak(path: Path) -> int:
    return max((int(v) for v in path.read_text().split() if v.isdigit()), default=0)

system_s, plain_s = steady(epoch_times(Path(fold["artifacts"]["log"]))), steady(epoch_times(work / "plain.log"))
rows = [
    ("", "job system", "plain nnUNetv2_train"),
    ("s per epoch (median, after the first)", f"{system_s:.2f}", f"{plain_s:.2f}"),
    ("peak GPU memory (MiB, nvidia-smi)", str(peak(work / "memory-system.txt")), str(peak(work / "memory-plain.txt"))),
    ("validation Dice, fold 0", f"{fold['metrics'].get('validation_dice') or 0:.4f}",
     f"{json.loads(plain_summary.read_text())['foreground_mean']['Dice']:.4f}"),
]
print(f"run {run['ref']} {run['state']}; overhead of the job system per epoch: {100 * (system_s / plain_s - 1):+.1f}% "
      "(target <= +5%)")
for row in rows:
    print(f"{row[0]:40s} {row[1]:>12s} {row[2]:>22s}")
EOF_PY
