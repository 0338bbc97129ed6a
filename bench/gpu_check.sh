#!/usr/bin/env bash
# bench/gpu_check.sh: the GPU check, under 8 minutes on an H100-class card; prints one table.
#  nnU-Net   fold 0 of the mini set at the ingest's defaults (long side 512, negatives 1:1) through the job
#            system and with plain nnUNetv2_train (run before and after it; bench/fold_overhead.py): seconds
#            per epoch both ways (target: the job system adds at most 5%), peak GPU memory, validation Dice,
#            what differs between the two training processes, and the plan's patch and batch size.
#  ResNet18  training images/s of the classifier's loop on 4,083 random 224x224 images held on the GPU
#            (target >= 10,000/s: an epoch of the release in under a second), and the test AUC of
#            `dispatch classify` after a short training on the mini set.
#  Quality   bench/quality.py: the classifier on the notebook's 224 squares beside the defaults (512 kept
#            aspect, input 384), same data, epochs and seed: test metrics with 95% intervals, seconds each.
#  Backbones bench/quality.py --backbones: BACKBONES side by side at the defaults, BACKBONE_EPOCHS each, from
#            ImageNet where the kit carries torchvision's files (.gpu-kit/imagenet, `make imagenet-weights
#            IMAGENET_DIR=.gpu-kit/imagenet`: mind the kit's 64 MiB), else from scratch; the table in
#            docs/results.md's format.
#  Sweep     bench/sweep.py on the mini set: SWEEP_TRIALS trials side by side against one trial alone, and
#            the time and epochs the median pruner saves (one GPU: one gpu-queue worker).
#  SR        bench/superres.py, where the raw release is at SOURCE: x2 trained for SR_SECONDS, held-out
#            PSNR/SSIM against bicubic and Lanczos, throughput against bicubic's; then bench/quality.py's
#            classifier at a working size of 908 on bicubic against x2-network inputs, same split and seed.
#
# Setup, once: with .gpu-kit/ (`make gpu-kit` on a machine with an index), a venv over the server's own
# torch is made from its wheels and the mini set comes pre-ingested; without it, `make install` (or
# ./wheelhouse) and SOURCE is ingested here.
#   EPOCHS=5 ITERATIONS=100   nnUNetTrainerJobs for both nnU-Net runs
#   CLASSIFY_EPOCHS=40        `dispatch classify --input image` on the mini set
#   QUALITY_EPOCHS=40         bench/quality.py's epochs per setup
#   BACKBONES=resnet18,densenet121,convnext_tiny BACKBONE_EPOCHS=15   the backbones' side-by-side
#   SWEEP_TRIALS=4 SWEEP_EPOCHS=8  bench/sweep.py's trials and epochs per trial
#   SR_SECONDS=60             bench/superres.py's training budget per scale
#   DEVICE=cpu THROUGHPUT_IMAGES=64 EPOCHS=1 ITERATIONS=2 CLASSIFY_EPOCHS=1 SWEEP_EPOCHS=2   a dry run on a
#                             machine without a GPU (nvidia-smi absent: no memory figures)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-5}
ITERATIONS=${ITERATIONS:-100}
CLASSIFY_EPOCHS=${CLASSIFY_EPOCHS:-40}
QUALITY_EPOCHS=${QUALITY_EPOCHS:-40}
BACKBONES=${BACKBONES:-resnet18,densenet121,convnext_tiny}
BACKBONE_EPOCHS=${BACKBONE_EPOCHS:-15}
SWEEP_TRIALS=${SWEEP_TRIALS:-4}
SWEEP_EPOCHS=${SWEEP_EPOCHS:-8}
SR_SECONDS=${SR_SECONDS:-60}
DEVICE=${DEVICE:-cuda}
THROUGHPUT_IMAGES=${THROUGHPUT_IMAGES:-4083}
SOURCE=${SOURCE:-../shared/data/fracatlas-mini}
DATASET=921
NOTEBOOK_DATASET=922  # the notebook's 224 squares, bench/quality.py's baseline
START=$SECONDS
step() { echo "[$((SECONDS - START)) s] $*"; }

if [ ! -x .venv/bin/python ]; then
  if [ -d .gpu-kit/wheels ]; then
    step "venv over the server's torch, from .gpu-kit/wheels"
    python3 -m services.offline.venv_over .venv .gpu-kit/wheels --project "$PWD"
  elif [ -d wheelhouse ]; then
    make install WHEELHOUSE=wheelhouse PYTHON=python3
  else
    make install
  fi
fi
PY=.venv/bin/python
DISPATCH=("$PY" -m services.dispatcher)
WORK=$(mktemp -d)
export DATA_ROOT="$WORK/var" BROKER_URL="redis://127.0.0.1:6399/0" FLOWER_PORT=5599 FLOWER_BASIC_AUTH=gpu:check
export nnUNet_compile=${nnUNet_compile:-false} PYTHONUNBUFFERED=1
# No MLflow server in the kit (it must stay under 64 MiB): the check measures training without tracking.
export MLFLOW_TRACKING_URI=none
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
  "${DISPATCH[@]}" ingest --source "$SOURCE" --dataset-id $NOTEBOOK_DATASET --square 224 --wait >/dev/null
fi
step "preprocess"
"${DISPATCH[@]}" preprocess --dataset-id $DATASET --wait --json > "$WORK/preprocess.json" || true

step "nnU-Net fold 0: plain nnUNetv2_train, through the job system, plain again"
"$PY" -m bench.fold_overhead --dataset-id $DATASET --epochs "$EPOCHS" --iterations "$ITERATIONS" \
  > "$WORK/fold.txt" 2>&1 || true

step "ResNet18: throughput on $THROUGHPUT_IMAGES images"
"$PY" -m bench.classify_throughput --images "$THROUGHPUT_IMAGES" --batch-size 256 --device "$DEVICE" \
  > "$WORK/throughput.json" || true
step "ResNet18: dispatch classify on the mini set"
"${DISPATCH[@]}" classify --dataset-id $DATASET --input image --epochs "$CLASSIFY_EPOCHS" --batch-size 32 \
  --patience 15 --wait --json > "$WORK/classify.json" || true
step "Quality: the notebook's 224 squares against the defaults, $QUALITY_EPOCHS epochs each"
"$PY" -m bench.quality --data-root "$DATA_ROOT" --epochs "$QUALITY_EPOCHS" > "$WORK/quality.txt" 2>&1 || true
BACKBONE_WEIGHTS=none
if [ -d .gpu-kit/imagenet ]; then export TORCH_HOME="$PWD/.gpu-kit/imagenet"; BACKBONE_WEIGHTS=auto; fi
step "Backbones: $BACKBONES, $BACKBONE_EPOCHS epochs each, weights $BACKBONE_WEIGHTS"
"$PY" -m bench.quality --data-root "$DATA_ROOT" --epochs "$BACKBONE_EPOCHS" --backbones "$BACKBONES" \
  --weights "$BACKBONE_WEIGHTS" --results "$WORK/results.md" > "$WORK/backbones.txt" 2>&1 || true
step "Sweep: $SWEEP_TRIALS trials of $SWEEP_EPOCHS epochs, then with the median pruner"
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c GPU || true)
[ "${GPUS:-0}" -gt 0 ] || GPUS=1
"$PY" -m bench.sweep --dataset-id $DATASET --trials "$SWEEP_TRIALS" --epochs "$SWEEP_EPOCHS" --workers "$GPUS" \
  > "$WORK/sweep.txt" 2>&1 || true
if [ ! -d "$SOURCE/images" ] && [ -f .gpu-kit/release.tar ]; then
  "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
    .gpu-kit/release.tar "$WORK"
  SOURCE="$WORK/release"
fi
if [ -d "$SOURCE/images" ]; then
  step "Super-resolution: x2 trained $SR_SECONDS s on the release's large pictures"
  "$PY" -m bench.superres --source "$SOURCE" --seconds "$SR_SECONDS" --scales 2 --device "$DEVICE" \
    --save "$WORK/sr" > "$WORK/superres.txt" 2>&1 || true
  step "Super-resolution: the classifier at 908 px on bicubic against x2 network inputs, $QUALITY_EPOCHS epochs"
  "$PY" -m bench.quality --source "$SOURCE" --sr-model "$WORK/sr/model_x2.pth" --size 908 \
    --epochs "$QUALITY_EPOCHS" >> "$WORK/superres.txt" 2>&1 || true
else
  echo "super-resolution: skipped (no release at $SOURCE: it learns from the raw large pictures)" > "$WORK/superres.txt"
fi
step "done"

"$PY" - "$WORK" <<'EOF_PY'
import json, sys
from pathlib import Path

work = Path(sys.argv[1])


def load(name: str) -> dict:
    try:
        return json.loads((work / name).read_text())
    except (OSError, ValueError) as error:
        return {"error": f"{name}: {error}"}


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


throughput = load("throughput.json")
plan = load("preprocess.json").get("metrics", {})
classify = load("classify.json")
classifier = classify.get("metrics", {}).get("classifier image", {})
test = classifier.get("test", {})

rows = [
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
print((work / "fold.txt").read_text())
print(f"nnU-Net plan at the defaults: patch {plan.get('patch_size')}, batch {plan.get('batch_size')}, "
      f"{plan.get('cases')} training cases")
print((work / "quality.txt").read_text())
print((work / "backbones.txt").read_text())
if (work / "results.md").exists():
    print("for docs/results.md:" + (work / "results.md").read_text())
print((work / "sweep.txt").read_text())
print((work / "superres.txt").read_text())
print(f"classify run {classify.get('ref')} {classify.get('state')} {classify.get('error') or ''}; "
      f"GPU {throughput.get('device')}")
for row in rows:
    print(f"{row[0]:52s} {row[1]:>24s} {row[2]:>22s}")
for name, content in (("throughput", throughput), ("classify", classify)):
    if "error" in content and content["error"]:
        print(f"{name}: {content['error']}")
EOF_PY
