"""What the benchmarks measure: three preset networks at batch 64, the same for every contender.

``classic`` (the CLI's default) on 28x28 images:
Conv(1->32, 3x3) - ReLU - MaxPool 2 - Conv(32->64, 3x3) - ReLU - MaxPool 2 - Flatten -
Dense(1600->128) - ReLU - Dropout 0.25 - Dense(128->10) (225,034 parameters).
``vgg-small``: two blocks of [Conv3x3-BN-ReLU, Conv3x3-BN-ReLU, MaxPool 2, Dropout 0.25]
(32 and 64 channels, padding 1, no conv bias), Dense(3136->256)-BN-ReLU-Dropout 0.5-Dense(256->10)
(871,082 parameters). ``resnet20``: He et al.'s (2016, Section 4.2) 3x3 stem, three stages of three
basic blocks at 16, 32 and 64 channels (stride 2 and 1x1 projection shortcuts between stages), global
average pooling, Dense(64->10) (272,474 parameters). All trained with Adam (lr 1e-3) on the mean softmax cross-entropy.
"""
from __future__ import annotations

import numpy as np

from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model
from scratchcnn.engine.profiling import synthetic_batch

__all__ = ["BATCH", "INPUT_SHAPE", "NUM_CLASSES", "SEED", "NETWORKS", "default_model", "default_batch",
           "reference_check"]

BATCH = 64
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
SEED = 0
NETWORKS = ("classic", "vgg-small", "resnet20")


def default_model(backend: str, seed: int = SEED, network: str = "classic"):
    """Preset ``network`` on ``backend`` ("numpy", "cpu"), weights from ``seed``, compiled with Adam(1e-3)."""
    model = build_model(network, INPUT_SHAPE, NUM_CLASSES, seed=seed, backend=backend)
    return model.compile(Adam(1e-3), SoftmaxCrossEntropy())


def default_batch(seed: int = SEED):
    """x (64, 1, 28, 28) float32 N(0, 1) and y (64,) int64 labels in [0, 10)."""
    return synthetic_batch(INPUT_SHAPE, BATCH, NUM_CLASSES, seed)


def reference_check(model, x, y) -> dict[str, np.ndarray]:
    """What every contender must reproduce: one training step's function and the inference logits.

    A training-mode forward with dropout switched off (so every framework computes
    the same function; batch normalisation uses batch statistics and updates its
    running statistics), the mean cross-entropy and its gradients, then inference
    logits with the updated running statistics. Returns host copies:
    ``{"train_logits": (64, 10), "loss": (), "<layer>.<param>": gradient,
    "<layer>.<buffer>": running statistic, "logits": (64, 10)}``. Weights are unchanged;
    running statistics have taken one update, as the PyTorch twin's.
    """
    from scratchcnn.nn.layers import Dropout

    K = model.K
    xb, yb = K.asarray(x), K.asarray(y)
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    rates = [layer.p for layer in dropouts]
    for layer in dropouts:
        layer.p = 0.0
    try:
        logits = model.forward(xb, training=True)
    finally:
        for layer, p in zip(dropouts, rates):
            layer.p = p
    stats = model.loss.forward(logits, yb)
    out = {"train_logits": np.array(K.to_numpy(logits)), "loss": np.array(K.to_numpy(stats)[0] / len(y))}
    model.backward(model.loss.backward())
    for key, _, grad in model.parameters():
        out[key] = np.array(K.to_numpy(grad))
    for layer in model.layers:
        for key, value in layer.buffers.items():
            out[f"{layer.name}.{key}"] = np.array(K.to_numpy(value))
    out["logits"] = np.array(K.to_numpy(model.forward(xb, training=False)))
    return out
