#!/usr/bin/env bash
# Issue 24, item 5: a measured Optuna study of the classic network on Fashion-MNIST, then the best
# configuration retrained on the full training set, to compare with the README's default run
# (python -m scratchcnn.train --dataset fashion: 5 epochs, test accuracy in README "What a run gives you").
#
#   benchmarks/tune_fashion.sh                  # the measurement: run on a quiet machine (hours on 2 cores)
#   TRIALS=2 LIMIT=500 EPOCHS=1 FINAL_EPOCHS=1 FINAL_LIMIT=1000 STUDY_DIR=/tmp/check benchmarks/tune_fashion.sh
#                                               # a check that the script runs (a minute or two)
#
# The study: TRIALS trials of EPOCHS epochs on the first LIMIT training images (10% of them held out
# for validation), the default search space (lr, batch size, schedule, weight decay, label smoothing,
# augmentation), TPE, median pruning after each epoch once 5 trials have finished. Rerunning the
# script continues the study (and retrains). Output: the study folder (trial table trials.csv, plots,
# best.json), benchmarks/tune_summary.py's figures, and the retrained run folder.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS="${TRIALS:-30}"
LIMIT="${LIMIT:-20000}"
EPOCHS="${EPOCHS:-3}"
WORKERS="${WORKERS:-1}"
FINAL_EPOCHS="${FINAL_EPOCHS:-5}"        # the README default run's epochs
FINAL_LIMIT="${FINAL_LIMIT:-}"           # empty: the full training set
STUDY="${STUDY:-fashion-classic-item5}"
STUDY_DIR="${STUDY_DIR:-studies/$STUDY}"
PY="${PYTHON:-python}"

echo "== $(date '+%Y-%m-%d %H:%M') study $STUDY: $TRIALS trials x $EPOCHS epochs on $LIMIT images, $WORKERS worker(s); load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" -m scratchcnn.tune --dataset fashion --model classic --epochs "$EPOCHS" --train-limit "$LIMIT" --seed 0 \
    --trials "$TRIALS" --workers "$WORKERS" --pruner median --study "$STUDY" --study-dir "$STUDY_DIR"

echo "== summary"
"$PY" benchmarks/tune_summary.py "$STUDY_DIR" --study "$STUDY" | tee "$STUDY_DIR/summary.md"

args=$("$PY" benchmarks/tune_summary.py "$STUDY_DIR" --study "$STUDY" --retrain-args --epochs "$FINAL_EPOCHS" \
       ${FINAL_LIMIT:+--limit "$FINAL_LIMIT"})
out="$STUDY_DIR/retrained-$(date +%Y%m%d-%H%M%S)"
echo "== $(date '+%Y-%m-%d %H:%M') retraining the best configuration: python -m scratchcnn.train $args --out $out"
# shellcheck disable=SC2086  # $args is the word list train_command quoted
eval "$PY" -m scratchcnn.train $args --out "$out" --no-progress
"$PY" - "$out/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"retrained: test accuracy {m['test_accuracy']:.4f}, {m['epochs_completed']} epochs, "
      f"{m['train_seconds']:.0f} s of training, {m['train_images']} training images")
PY
echo "== $(date '+%Y-%m-%d %H:%M') done; load: $(cut -d' ' -f1-3 /proc/loadavg)"
