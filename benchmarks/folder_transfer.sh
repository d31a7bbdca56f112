#!/usr/bin/env bash
# Issue 22's transfer-learning walk-through: MNIST written out as a PNG folder and cut to PER_CLASS
# training images per class (the whole test set kept), trained from scratch, fine-tuned from a
# Fashion-MNIST model, and with that model's convolutions frozen; three seeds each.
#
#   benchmarks/folder_transfer.sh                 # 50 per class, 30 epochs, seeds 0 1 2 (the README table)
#   PER_CLASS=5 EPOCHS=1 SEEDS=0 FASHION_EPOCHS=1 FASHION_LIMIT=500 MNIST_TRAIN_LIMIT=200 MNIST_TEST_LIMIT=200 \
#     benchmarks/folder_transfer.sh /tmp/tr                                       # a quick check
#
# Environment: PER_CLASS (50), EPOCHS (30), SEEDS ("0 1 2"), FASHION_RUN (a finished Fashion-MNIST run to
# start from; default: trained here with FASHION_EPOCHS (5) on FASHION_LIMIT images (all)), BACKEND (cpu),
# PYTHON (python); MNIST_TRAIN_LIMIT / MNIST_TEST_LIMIT write only the first images of MNIST (quick checks).
set -euo pipefail
OUT=${1:-transfer-$(date +%Y%m%d-%H%M%S)}
PER_CLASS=${PER_CLASS:-50}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-0 1 2}
BACKEND=${BACKEND:-cpu}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
export XDG_CACHE_HOME="$OUT/cache"

if [[ -z "${FASHION_RUN:-}" ]]; then
  FASHION_RUN="$OUT/fashion"
  LIMIT=()
  if [[ -n "${FASHION_LIMIT:-}" ]]; then LIMIT=(--train-limit "$FASHION_LIMIT"); fi
  "$PYTHON" -m scratchcnn.train --dataset fashion --epochs "${FASHION_EPOCHS:-5}" --seed 0 --backend "$BACKEND" \
    --no-progress --out "$FASHION_RUN" "${LIMIT[@]}" | tail -1
fi

MNIST_LIMITS=()
if [[ -n "${MNIST_TRAIN_LIMIT:-}" ]]; then MNIST_LIMITS+=(--train-limit "$MNIST_TRAIN_LIMIT"); fi
if [[ -n "${MNIST_TEST_LIMIT:-}" ]]; then MNIST_LIMITS+=(--test-limit "$MNIST_TEST_LIMIT"); fi
[[ -d "$OUT/mnist-png" ]] || "$PYTHON" -m scratchcnn.to_folder mnist "$OUT/mnist-png" --no-progress "${MNIST_LIMITS[@]}"
"$PYTHON" - "$OUT" "$PER_CLASS" <<'EOF'
# The first PER_CLASS training images of each class (hard links: no copies), and every test image.
import os, sys
from pathlib import Path
out, per_class = Path(sys.argv[1]), int(sys.argv[2])
small = out / f"mnist-{per_class}"
if not small.exists():
    for part in ("train", "test"):
        for cls in sorted((out / "mnist-png" / part).iterdir()):
            files = sorted(cls.iterdir())[:per_class] if part == "train" else sorted(cls.iterdir())
            (small / part / cls.name).mkdir(parents=True)
            for f in files:
                os.link(f, small / part / cls.name / f.name)
EOF

DATA="$OUT/mnist-$PER_CLASS"
for seed in $SEEDS; do
  COMMON=(--dataset folder --data-dir "$DATA" --epochs "$EPOCHS" --seed "$seed" --backend "$BACKEND" --no-progress)
  "$PYTHON" -m scratchcnn.train "${COMMON[@]}" --out "$OUT/scratch-$seed" > /dev/null
  "$PYTHON" -m scratchcnn.train "${COMMON[@]}" --init-from "$FASHION_RUN" --out "$OUT/finetune-$seed" > /dev/null
  "$PYTHON" -m scratchcnn.train "${COMMON[@]}" --init-from "$FASHION_RUN" --freeze conv2d_0,conv2d_1 \
    --out "$OUT/frozen-$seed" > /dev/null
  # Only the convolution blocks (the first 6 layers of the classic network), fine-tuned and frozen.
  "$PYTHON" -m scratchcnn.train "${COMMON[@]}" --init-from "$FASHION_RUN" --init-layers 6 --out "$OUT/finetune6-$seed" > /dev/null
  "$PYTHON" -m scratchcnn.train "${COMMON[@]}" --init-from "$FASHION_RUN" --init-layers 6 --freeze 6 \
    --out "$OUT/frozen6-$seed" > /dev/null
done

"$PYTHON" - "$OUT" "$PER_CLASS" "$EPOCHS" $SEEDS <<'EOF'
import json, sys, time
from pathlib import Path
import numpy as np
out, per_class, epochs, seeds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
print(f"MNIST folder, {per_class} training images per class, {epochs} epochs, seeds {' '.join(seeds)}, "
      f"{time.strftime('%Y-%m-%d')}\n")
print("| start | test accuracy per seed | mean |\n| --- | --- | --- |")
for name, label in (("scratch", "from scratch"), ("finetune", "--init-from Fashion-MNIST"),
                    ("frozen", "--init-from Fashion-MNIST --freeze conv2d_0,conv2d_1"),
                    ("finetune6", "--init-from Fashion-MNIST --init-layers 6"),
                    ("frozen6", "--init-from Fashion-MNIST --init-layers 6 --freeze 6")):
    acc = [json.loads((out / f"{name}-{s}" / "metrics.json").read_text())["test_accuracy"] for s in seeds]
    print(f"| {label} | {', '.join(f'{a:.4f}' for a in acc)} | {np.mean(acc):.4f} |")
EOF
