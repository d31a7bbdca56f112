#!/usr/bin/env bash
# The degradation experiment (He et al., 2016, Figure 6) at small scale: plain20 (resnet20 without its
# shortcuts) and resnet20 trained with the same budget on Fashion-MNIST, then one table and one plot
# of training and held-out error (benchmarks/degradation_plot.py).
#
#   benchmarks/degradation.sh runs/degradation            # the README's experiment (EPOCHS=6)
#   EPOCHS=1 TRAIN_LIMIT=2000 benchmarks/degradation.sh /tmp/deg   # a quick check
#
# Environment: EPOCHS (6), SEED (0), BACKEND (cpu), PYTHON (python), TRAIN_LIMIT (all), DATA_DIR.
# Each run's log is <OUT>/<model>.log; the table is <OUT>/degradation.md, the plot <OUT>/degradation.png.
set -euo pipefail
OUT=${1:-runs/degradation}
EPOCHS=${EPOCHS:-6}
PYTHON=${PYTHON:-python}
EXTRA=()
if [[ -n "${TRAIN_LIMIT:-}" ]]; then EXTRA+=(--train-limit "$TRAIN_LIMIT"); fi
if [[ -n "${DATA_DIR:-}" ]]; then EXTRA+=(--data-dir "$DATA_DIR"); fi
mkdir -p "$OUT"
# He et al.'s optimiser (SGD, momentum 0.9, weight decay 1e-4, lr 0.1, batch 128) with a cosine schedule
# in place of their steps, and no augmentation, so that the training error is the plain one.
for model in plain20 resnet20; do
  "$PYTHON" -m scratchcnn.train --dataset fashion --model "$model" --epochs "$EPOCHS" --seed "${SEED:-0}" \
    --optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay 1e-4 --batch-size 128 --lr-schedule cosine \
    --backend "${BACKEND:-cpu}" --no-progress --out "$OUT/$model" --force "${EXTRA[@]}" > "$OUT/$model.log" 2>&1
  tail -1 "$OUT/$model.log"
done
"$PYTHON" "$(dirname "$0")/degradation_plot.py" "$OUT/plain20" "$OUT/resnet20" --out "$OUT"
