"""What the benchmarks measure: the default network at batch 64, the same for every contender.

The default network is the CLI's ``--model classic`` on 28x28 images:
Conv(1->32, 3x3) - ReLU - MaxPool 2 - Conv(32->64, 3x3) - ReLU - MaxPool 2 - Flatten -
Dense(1600->128) - ReLU - Dropout 0.25 - Dense(128->10), trained with Adam (lr 1e-3)
on the mean softmax cross-entropy (225,034 parameters).
"""
from __future__ import annotations

import numpy as np

from scratchcnn.losses import SoftmaxCrossEntropy
from scratchcnn.optimizers import Adam
from scratchcnn.presets import build_model
from scratchcnn.profiling import synthetic_batch

__all__ = ["BATCH", "INPUT_SHAPE", "NUM_CLASSES", "SEED", "default_model", "default_batch",
           "reference_check"]

BATCH = 64
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
SEED = 0


def default_model(backend: str, seed: int = SEED):
    """The default network on ``backend`` ("numpy", "cpu"), weights from ``seed``, compiled with Adam(1e-3)."""
    model = build_model("classic", INPUT_SHAPE, NUM_CLASSES, seed=seed, backend=backend)
    return model.compile(Adam(1e-3), SoftmaxCrossEntropy())


def default_batch(seed: int = SEED):
    """x (64, 1, 28, 28) float32 N(0, 1) and y (64,) int64 labels in [0, 10)."""
    return synthetic_batch(INPUT_SHAPE, BATCH, NUM_CLASSES, seed)


def reference_check(model, x, y) -> dict[str, np.ndarray]:
    """What every contender must reproduce: inference logits and one backward's gradients.

    Runs ``model`` in inference mode (no dropout, so every framework computes the
    same function), backpropagates the mean cross-entropy and returns host copies:
    ``{"logits": (64, 10), "loss": (), "<layer>.<param>": gradient}``; the model is unchanged.
    """
    K = model.K
    xb, yb = K.asarray(x), K.asarray(y)
    logits = model.forward(xb, training=False)
    stats = model.loss.forward(logits, yb)
    out = {"logits": np.array(K.to_numpy(logits)), "loss": np.array(K.to_numpy(stats)[0] / len(y))}
    model.backward(model.loss.backward())
    for key, _, grad in model.parameters():
        out[key] = np.array(K.to_numpy(grad))
    return out
