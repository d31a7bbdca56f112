#!/usr/bin/env bash
# The round trip of issue 22: a built-in data set written out as a PNG folder, trained on both ways
# with the same seed and options; prints both test accuracies and whether the models are bit-identical.
#
#   benchmarks/folder_roundtrip.sh                      # Fashion-MNIST, 5 epochs, seed 0 (the README figure)
#   DATASET=mnist TRAIN_LIMIT=300 EPOCHS=1 benchmarks/folder_roundtrip.sh /tmp/rt   # a quick check
#
# Environment: DATASET (fashion), EPOCHS (5), SEED (0), TRAIN_LIMIT (all), BACKEND (cpu), PYTHON (python).
# The folder holds every test image (the built-in run reports on the whole test set); TRAIN_LIMIT limits
# the training images of both runs. No --augment: the built-in runs flip Fashion-MNIST, a folder run does not.
set -euo pipefail
OUT=${1:-roundtrip-$(date +%Y%m%d-%H%M%S)}
DATASET=${DATASET:-fashion}
EPOCHS=${EPOCHS:-5}
SEED=${SEED:-0}
BACKEND=${BACKEND:-cpu}
PYTHON=${PYTHON:-python}
LIMIT=()
if [[ -n "${TRAIN_LIMIT:-}" ]]; then LIMIT=(--train-limit "$TRAIN_LIMIT"); fi
mkdir -p "$OUT"
export XDG_CACHE_HOME="$OUT/cache"   # a fresh cache: the folder run decodes the images once
COMMON=(--epochs "$EPOCHS" --seed "$SEED" --backend "$BACKEND" --no-progress "${LIMIT[@]}")

"$PYTHON" -m scratchcnn.to_folder "$DATASET" "$OUT/folder" --no-progress "${LIMIT[@]}"
"$PYTHON" -m scratchcnn.train --dataset "$DATASET" "${COMMON[@]}" --out "$OUT/built-in" | tail -1
"$PYTHON" -m scratchcnn.train --dataset folder --data-dir "$OUT/folder" "${COMMON[@]}" --out "$OUT/folder-run" | tail -1

"$PYTHON" - "$OUT" "$DATASET" <<'EOF'
import json, sys, time
from pathlib import Path
import numpy as np
from scratchcnn.files.serialization import load_model
out, dataset = Path(sys.argv[1]), sys.argv[2]
a, b = (json.loads((out / run / "metrics.json").read_text()) for run in ("built-in", "folder-run"))
wa, wb = (load_model(out / run / "model.npz")[0].named_arrays() for run in ("built-in", "folder-run"))
same = wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
print(json.dumps({"date": time.strftime("%Y-%m-%d"), "dataset": dataset, "epochs": a["epochs"], "seed": a["seed"],
                  "train_images": a["train_images"], "test_images": a["test_images"],
                  "built_in_test_accuracy": a["test_accuracy"], "folder_test_accuracy": b["test_accuracy"],
                  "difference": abs(a["test_accuracy"] - b["test_accuracy"]), "bit_identical_weights": same}))
EOF
