"""Inference: a model's logits, class probabilities, loss and accuracy, test-time flips.

Every prediction of the project goes through here: ``Sequential.predict`` and
``Sequential.evaluate``, validation in ``Trainer``, ``python -m scratchcnn.predict``,
the test reports (``scratchcnn.apps.report``, so also ``python -m scratchcnn.evaluate``)
and the web demo. Each runs the model's execution plan (``model.forward`` with
``training=False``: the fused steps, dropout off, batch-norm running statistics) in
batches, with the images and labels on the host and the arithmetic on the model's backend;
probabilities come from the one host ``softmax`` below.
"""
from __future__ import annotations

import math

import numpy as np

from scratchcnn.nn.losses import SoftmaxCrossEntropy, softmax  # the one host softmax, re-exported

__all__ = ["softmax", "predict_logits", "probabilities", "loss_and_accuracy", "flip_averaged_probabilities",
           "BATCH_SIZE"]

BATCH_SIZE = 256  # images per forward pass; inference keeps no activations for backward, so this is cheap


def _batches(n: int, batch_size: int):
    return range(0, n, batch_size)


def predict_logits(model, x, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Logits (N, num_classes) float32 on the host for x (N, C, H, W) float32, in inference mode.

    The model is built for x's image shape if it was not yet (``Sequential.ensure_built``).
    An empty x gives a (0, 0) array.
    """
    K = model.ensure_built(x.shape[1:]).K
    parts = [np.array(K.to_numpy(model.forward(K.asarray(x[s:s + batch_size]), training=False)))
             for s in _batches(len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def probabilities(model, x, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Class probabilities (N, num_classes) float64 on the host: ``softmax(predict_logits(model, x))``."""
    return softmax(predict_logits(model, x, batch_size))


def loss_and_accuracy(model, x, y, batch_size: int = BATCH_SIZE) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on (x, y) in inference mode (``Sequential.evaluate``).

    x : (N, C, H, W) float32 host array; y : (N,) int64. Returns ``(loss, accuracy)``
    as floats (NaN for an empty set). The loss is the plain cross-entropy averaged over
    the N images, also when the model trains with label smoothing (comparable across runs);
    the sums are taken on the backend by the loss kernel (``K.softmax_xent_forward``).
    """
    if len(y) == 0:
        return math.nan, math.nan
    K = model.ensure_built(x.shape[1:]).K
    smoothed = getattr(model.loss, "label_smoothing", 0.0)
    loss_fn = model.loss if model.loss is not None and not smoothed else SoftmaxCrossEntropy().to(K)
    starts = _batches(len(y), batch_size)
    stats = K.zeros((len(starts), 2), np.float64)
    for i, start in enumerate(starts):
        xb = K.asarray(x[start:start + batch_size])
        yb = K.asarray(y[start:start + batch_size])
        loss_fn.forward(model.forward(xb, training=False), yb, stats=stats[i])
    total = K.to_numpy(stats).sum(axis=0)
    return float(total[0] / len(y)), float(total[1] / len(y))


def flip_averaged_probabilities(model, x, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Test-time augmentation: the mean of the probabilities of ``x`` and of ``x`` mirrored left-right.

    x : (N, C, H, W) float32 host array; returns (N, num_classes) float64 probabilities.
    Meant for models trained with horizontal flips (Fashion-MNIST with ``--augment``),
    as in Krizhevsky et al., 2012 ("ImageNet Classification with Deep CNNs", Section 4.1),
    who average the predictions over an image and its reflection.
    """
    mirrored = np.ascontiguousarray(x[..., ::-1])
    return (probabilities(model, x, batch_size) + probabilities(model, mirrored, batch_size)) / 2
