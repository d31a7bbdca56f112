"""Softmax cross-entropy on logits: forward (probabilities, loss, accuracy count) and backward."""
from __future__ import annotations

import numpy as np

__all__ = ["softmax_xent_forward", "softmax_xent_backward"]


def softmax_xent_forward(logits, labels, probs=None, stats=None, smoothing=0.0):
    """Softmax of the logits and the cross-entropy against integer labels, optionally smoothed.

    Parameters
    ----------
    logits : ndarray, shape (N, num_classes)
    labels : ndarray, int64, shape (N,), values in [0, num_classes)
    probs : ndarray, optional, shape (N, num_classes)
    stats : ndarray, optional, float64, shape (2,)
    smoothing : float in [0, 1)
        Label smoothing eps: the target is ``(1 - eps) * onehot + eps / K`` instead
        of the one-hot vector (Szegedy et al., 2016, "Rethinking the Inception
        Architecture", Section 7). 0 gives the plain cross-entropy.

    Returns
    -------
    probs : ndarray, shape (N, num_classes), ``softmax(logits)`` row by row
    stats : ndarray, float64, shape (2,)
        ``[sum over the batch of -sum_k target[n, k] * log probs[n, k], number of
        rows whose argmax (first on ties) equals the label]``; with ``smoothing=0``
        the first entry is ``sum_n -log probs[n, labels[n]]``. The mean loss is ``stats[0] / N``.

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
    k = logits.shape[1]
    stats[0] = -((1.0 - smoothing) * log_probs[np.arange(n), labels].sum(dtype=np.float64)
                 + smoothing / k * log_probs.sum(dtype=np.float64))
    stats[1] = np.count_nonzero(logits.argmax(axis=1) == labels)
    return probs, stats


def softmax_xent_backward(probs, labels, out=None, smoothing=0.0):
    """Gradient of the mean cross-entropy with respect to the logits: ``(probs - target) / N``.

    probs : (N, K) from ``softmax_xent_forward``; labels : (N,) int64; returns (N, K).
    ``target = (1 - smoothing) * onehot + smoothing / K`` (label smoothing, see
    ``softmax_xent_forward``); the target sums to 1 per row, so the gradient of
    ``-sum_k target_k log softmax_k`` is ``softmax - target``.
    """
    n, k = probs.shape
    if out is None:
        out = np.empty_like(probs)
    out[...] = probs - smoothing / k
    out[np.arange(n), labels] -= 1 - smoothing
    out /= n
    return out
