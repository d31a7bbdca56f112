"""Softmax cross-entropy, serial loops; see ``kernels.numpy_ref.loss``."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["softmax_xent_forward", "softmax_xent_backward"]


@njit(cache=True)
def _softmax_xent_forward_core(logits, labels, probs, stats, smoothing):
    # Serial: a batch of logits is tiny (N x 10), threads would cost more than they save.
    n, k = logits.shape
    loss, correct = 0.0, 0
    for row in range(n):
        top, arg = logits[row, 0], 0
        for j in range(1, k):
            if logits[row, j] > top:
                top, arg = logits[row, j], j
        total = 0.0
        logit_sum = 0.0
        for j in range(k):
            total += math.exp(logits[row, j] - top)
            logit_sum += logits[row, j]
        log_total = math.log(total)
        for j in range(k):
            probs[row, j] = math.exp(logits[row, j] - top - log_total)
        # -sum_j target_j log p_j, target = (1 - smoothing) onehot + smoothing / K
        loss -= ((1.0 - smoothing) * (logits[row, labels[row]] - top - log_total)
                 + smoothing * (logit_sum / k - top - log_total))
        correct += arg == labels[row]
    stats[0] = loss
    stats[1] = correct


def softmax_xent_forward(logits, labels, probs=None, stats=None, smoothing=0.0):
    """Softmax and summed (smoothed) cross-entropy with log-sum-exp; see ``numpy_ref.softmax_xent_forward``."""
    if probs is None:
        probs = np.empty_like(logits)
    if stats is None:
        stats = np.empty(2, np.float64)
    _softmax_xent_forward_core(logits, labels, probs, stats, float(smoothing))
    return probs, stats


@njit(cache=True)
def _softmax_xent_backward_core(probs, labels, dlogits, smoothing):
    n, k = probs.shape
    for row in range(n):
        for j in range(k):
            target = (1.0 - smoothing) * (j == labels[row]) + smoothing / k
            dlogits[row, j] = (probs[row, j] - target) / n


def softmax_xent_backward(probs, labels, out=None, smoothing=0.0):
    """``(probs - target) / N``; see ``numpy_ref.softmax_xent_backward``."""
    if out is None:
        out = np.empty_like(probs)
    _softmax_xent_backward_core(probs, labels, out, float(smoothing))
    return out
