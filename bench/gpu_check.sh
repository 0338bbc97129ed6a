#!/usr/bin/env bash
# bench/gpu_check.sh: the GPU check, under 8 minutes on an H100-class card; prints one table.
#  nnU-Net   fold 0 of the mini set through the job system and with plain nnUNetv2_train (run before and
#            after it): seconds per epoch both ways (target: the job system adds at most 5%), peak GPU
#            memory, validation Dice.
#  ResNet18  training images/s of the classifier's loop on 4,083 random 224x224 images held on the GPU
#            (target >= 10,000/s: an epoch of the release in under a second), and the test AUC of
#            `dispatch classify` after a short training on the mini set.
#
# Setup, once: with .gpu-kit/ (`make gpu-kit` on a machine with an index), a venv over the server's own
# torch is made from its wheels and the mini set comes pre-ingested; without it, `make install` (or
# ./wheelhouse) and SOURCE is ingested here.
#   EPOCHS=5 ITERATIONS=100   nnUNetTrainerJobs for both nnU-Net runs
#   CLASSIFY_EPOCHS=40        `dispatch classify --input image` on the mini set
#   DEVICE=cpu THROUGHPUT_IMAGES=64 EPOCHS=1 ITERATIONS=2 CLASSIFY_EPOCHS=1   a dry run of the script on a
#                             machine without a GPU (nvidia-smi absent: no memory figures)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-5}
ITERATIONS=${ITERATIONS:-100}
CLASSIFY_EPOCHS=${CLASSIFY_EPOCHS:-40}
DEVICE=${DEVICE:-cuda}
THROUGHPUT_IMAGES=${THROUGHPUT_IMAGES:-4083}
SOURCE=${SOURCE:-../shared/data/fracatlas-mini}
DATASET=921
START=$SECONDS
step() { echo "[$((SECONDS - START)) s] $*"; }

if [ ! -x .venv/bin/python ]; then
  if [ -d .gpu-kit/wheels ]; then
    step "venv over the server's torch, from .gpu-kit/wheels"
    python3 -m venv .venv || python3 -m venv --without-pip .venv
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # The server's torch lives in an environment of its own, which --system-site-packages would not see.
    # addsitedir also runs that environment's .pth files (setuptools' distutils shim, which nnU-Net uses).
    python3 -c 'import site; print(f"import site; site.addsitedir({site.getsitepackages()[0]!r})")' \
      > "$site/server-torch.pth"
    echo "$PWD" > "$site/fracatlas-project.pth"
    if .venv/bin/python -m pip --version >/dev/null 2>&1; then pip=(.venv/bin/python -m pip)
    else pip=(python3 -m pip --python .venv/bin/python); fi
    "${pip[@]}" install -q --no-index --no-deps .gpu-kit/wheels/*.whl
  elif [ -d wheelhouse ]; then
    make install WHEELHOUSE=wheelhouse PYTHON=python3
  else
    make install
  fi
fi
PY=.venv/bin/python
DISPATCH=("$PY" -m services.dispatcher.cli)
WORK=$(mktemp -d)
export DATA_ROOT="$WORK/var" BROKER_URL="redis://127.0.0.1:6399/0" FLOWER_PORT=5599 FLOWER_BASIC_AUTH=gpu:check
export nnUNet_compile=${nnUNet_compile:-false} PYTHONUNBUFFERED=1
mkdir -p "$DATA_ROOT"
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA:", torch.cuda.is_available())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"

$PY -m services.local.stack up
trap '$PY -m services.local.stack down >/dev/null 2>&1 || true' EXIT
if [ -f .gpu-kit/data.tar.xz ]; then
  step "dataset $DATASET from .gpu-kit/data.tar.xz"
  "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
    .gpu-kit/data.tar.xz "$DATA_ROOT"
else
  [ -d "$SOURCE" ] || { echo "no release at $SOURCE and no .gpu-kit: set SOURCE or run make gpu-kit" >&2; exit 1; }
  step "ingest $SOURCE"
  "${DISPATCH[@]}" ingest --source "$SOURCE" --dataset-id $DATASET --wait >/dev/null
fi
step "preprocess"
"${DISPATCH[@]}" preprocess --dataset-id $DATASET --wait >/dev/null

# nvidia-smi itself is the sampler (a subshell around it would outlive `kill` and hold the output open).
sample_memory() {
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$1" & echo $!
  else
    : > "$1"
  fi
}
stop_sampler() { if [ -n "$1" ]; then kill "$1" 2>/dev/null || true; fi; }

plain_fold() {  # $1: before | after
  step "fold 0 with plain nnUNetv2_train ($1 the job system's)"
  sampler=$(sample_memory "$WORK/memory-plain-$1.txt")
  nnUNet_raw="$DATA_ROOT/nnUNet_raw" nnUNet_preprocessed="$DATA_ROOT/nnUNet_preprocessed" \
    nnUNet_results="$WORK/plain-$1" nnUNet_extTrainer="$PWD/workers/gpu/nnunet_trainers" \
    NNUNET_JOBS_EPOCHS="$EPOCHS" NNUNET_JOBS_ITERATIONS="$ITERATIONS" NNUNET_JOBS_SAVE_EVERY="$EPOCHS" \
    .venv/bin/nnUNetv2_train $DATASET 2d 0 -tr nnUNetTrainerJobs -device "$DEVICE" --npz \
    > "$WORK/plain-$1.log" 2>&1 || true
  stop_sampler "$sampler"
}

# Plain runs before and after the job system's, so that warm-up and drift fall on both sides.
plain_fold before
step "fold 0 through the job system"
sampler=$(sample_memory "$WORK/memory-system.txt")
"${DISPATCH[@]}" train --dataset-id $DATASET --folds 0 --epochs "$EPOCHS" --iterations "$ITERATIONS" \
  --save-every "$EPOCHS" --wait --json > "$WORK/system.json" || true
stop_sampler "$sampler"
plain_fold after

step "ResNet18: throughput on $THROUGHPUT_IMAGES images"
"$PY" -m bench.classify_throughput --images "$THROUGHPUT_IMAGES" --batch-size 256 --device "$DEVICE" \
  > "$WORK/throughput.json" || true
step "ResNet18: dispatch classify on the mini set"
"${DISPATCH[@]}" classify --dataset-id $DATASET --input image --epochs "$CLASSIFY_EPOCHS" --batch-size 32 \
  --patience 15 --wait --json > "$WORK/classify.json" || true
step "done"

"$PY" - "$WORK" <<'EOF_PY'
import json, re, statistics, sys
from pathlib import Path

work = Path(sys.argv[1])


def load(name: str) -> dict:
    try:
        return json.loads((work / name).read_text())
    except (OSError, ValueError) as error:
        return {"error": f"{name}: {error}"}


def epoch_times(log: Path) -> list[float]:
    return [float(m) for m in re.findall(r"Epoch time: ([\d.]+) s", log.read_text())] if log.exists() else []


def steady(times: list[float]) -> float | None:
    return statistics.median(times[1:] or times) if times else None  # the first epoch warms up cuDNN


def peak(path: Path) -> int:
    return max((int(v) for v in path.read_text().split() if v.isdigit()), default=0) if path.exists() else 0


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


run = load("system.json")
fold = next((job for job in run.get("jobs", []) if job["kind"] == "fold"), {})
plain_summary = next((work / "plain-before").rglob("fold_0/validation/summary.json"), None)
system_s = steady(epoch_times(Path(fold.get("artifacts", {}).get("log", "/missing"))))
plain_runs = [steady(epoch_times(work / f"plain-{when}.log")) for when in ("before", "after")]
plain_s = statistics.mean(plain_runs) if all(plain_runs) else None
plain_dice = json.loads(plain_summary.read_text())["foreground_mean"]["Dice"] if plain_summary else None
overhead = 100 * (system_s / plain_s - 1) if system_s and plain_s else None
throughput = load("throughput.json")
classify = load("classify.json")
classifier = classify.get("metrics", {}).get("classifier image", {})
test = classifier.get("test", {})

rows = [
    ("nnU-Net fold 0", "job system", "plain nnUNetv2_train"),
    ("s per epoch (median, after the first)", number(system_s),
     f"{number(plain_s)} ({' / '.join(number(v) for v in plain_runs)})"),
    ("job system overhead per epoch (<= +5%)", f"{number(overhead, 1)}%", ""),
    ("peak GPU memory (MiB, nvidia-smi)", str(peak(work / "memory-system.txt")),
     str(peak(work / "memory-plain-before.txt"))),
    ("validation Dice, fold 0", number(fold.get("metrics", {}).get("validation_dice"), 4), number(plain_dice, 4)),
    ("", "", ""),
    ("ResNet18", "value", "target"),
    ("training images/s, 224x224, batch 256", number(throughput.get("images_per_s"), 0), ">= 10000"),
    ("one epoch of 4,083 images (s)", number(throughput.get("epoch_s"), 3), "< 1"),
    ("dispatch classify (mini set): test ROC AUC", number(test.get("roc_auc"), 3), ""),
    ("  test images / accuracy / sensitivity / specificity",
     f"{test.get('images', '-')} / {number(test.get('accuracy'), 3)} / {number(test.get('sensitivity'), 3)} / "
     f"{number(test.get('specificity'), 3)}", ""),
    ("  best epoch, training images/s in the job",
     f"{classifier.get('best_epoch', '-')}, {number(classifier.get('train_images_per_s'), 0)}", ""),
]
print(f"\nnnU-Net run {run.get('ref')} {run.get('state')} {run.get('error') or ''}; classify run "
      f"{classify.get('ref')} {classify.get('state')} {classify.get('error') or ''}; GPU {throughput.get('device')}")
for row in rows:
    print(f"{row[0]:52s} {row[1]:>24s} {row[2]:>22s}")
for name, content in (("throughput", throughput), ("classify", classify), ("system", run)):
    if "error" in content and content["error"]:
        print(f"{name}: {content['error']}")
EOF_PY
