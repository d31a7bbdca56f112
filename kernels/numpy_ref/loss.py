"""Softmax cross-entropy on logits: forward (probabilities, loss, accuracy count) and backward."""
from __future__ import annotations

import numpy as np

__all__ = ["softmax_xent_forward", "softmax_xent_backward"]


def softmax_xent_forward(logits, labels, probs=None, stats=None):
    """Softmax of the logits and the cross-entropy against integer labels.

    Parameters
    ----------
    logits : ndarray, shape (N, num_classes)
    labels : ndarray, int64, shape (N,), values in [0, num_classes)
    probs : ndarray, optional, shape (N, num_classes)
    stats : ndarray, optional, float64, shape (2,)

    Returns
    -------
    probs : ndarray, shape (N, num_classes), ``softmax(logits)`` row by row
    stats : ndarray, float64, shape (2,)
        ``[sum over the batch of -log probs[n, labels[n]], number of rows whose
        argmax (first on ties) equals the label]``. The mean loss is ``stats[0] / N``.

    Notes
    -----
    Subtracting each row's maximum before ``exp`` (log-sum-exp) keeps every
    exponent <= 0, so nothing overflows; the loss comes from the log-probability
    ``shifted - log(sum(exp(shifted)))`` rather than from ``log(probs)``, which
    would give ``-inf`` when a probability underflows to 0 (Goodfellow, Bengio &
    Courville, 2016, Deep Learning, Section 4.1).
    """
    n = logits.shape[0]
    if probs is None:
        probs = np.empty_like(logits)
    if stats is None:
        stats = np.empty(2, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs[...] = np.exp(log_probs)
    stats[0] = -log_probs[np.arange(n), labels].sum(dtype=np.float64)
    stats[1] = np.count_nonzero(logits.argmax(axis=1) == labels)
    return probs, stats


def softmax_xent_backward(probs, labels, out=None):
    """Gradient of the mean cross-entropy with respect to the logits: ``(probs - onehot) / N``.

    probs : (N, num_classes) from ``softmax_xent_forward``; labels : (N,) int64; returns (N, num_classes).
    """
    n = probs.shape[0]
    if out is None:
        out = np.empty_like(probs)
    out[...] = probs
    out[np.arange(n), labels] -= 1
    out /= n
    return out
