"""Softmax cross-entropy as CUDA kernels; see ``kernels.numpy_ref.loss``."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from kernels.api import check_out
from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import THREADS, grid_1d
from kernels.numba_cuda.memory import _dev, empty
from kernels.numba_cuda.reduce import _block_sum2

__all__ = ["softmax_xent_forward", "softmax_xent_backward"]


@cuda.jit(cache=True)
def _softmax_xent_forward_k(logits, labels, probs, stats, smoothing):
    """Softmax of each row with the log-sum-exp shift; ``stats = [sum of losses, number correct]``.

    Launch: ONE block of T threads, T the power of two >= N, from 32 to 256;
    thread t handles rows t, t+T, ... (max, sum of exponentials,
    probabilities, its loss and whether the first argmax is the label), then
    the block adds the per-thread loss and count in a shared-memory tree, in
    float64, and thread 0 writes ``stats``. One block because a batch of logits
    is tiny (N x 10): the kernel is bound by launch latency, and a single block
    needs no second pass to finish the sums. Limit: N/256 rows per thread, fine
    up to batches of tens of thousands.
    """
    n, k = logits.shape
    tid = cuda.threadIdx.x
    loss = 0.0
    correct = 0.0
    for row in range(tid, n, cuda.blockDim.x):
        top = logits[row, 0]
        arg = 0
        for j in range(1, k):
            if logits[row, j] > top:
                top = logits[row, j]
                arg = j
        total = 0.0
        logit_sum = 0.0
        for j in range(k):
            total += math.exp(logits[row, j] - top)
            logit_sum += logits[row, j]
        log_total = math.log(total)
        for j in range(k):
            probs[row, j] = math.exp(logits[row, j] - top - log_total)
        label = labels[row]
        loss -= ((1.0 - smoothing) * (logits[row, label] - top - log_total)
                 + smoothing * (logit_sum / k - top - log_total))
        if arg == label:
            correct += 1.0
    total_loss, total_correct = _block_sum2(loss, correct)
    if tid == 0:
        stats[0] = total_loss
        stats[1] = total_correct


def softmax_xent_forward(logits, labels, probs=None, stats=None, smoothing=0.0):
    """Softmax and summed (smoothed) cross-entropy with log-sum-exp; see ``numpy_ref.softmax_xent_forward``.

    ``stats`` stays on the device (the trainer passes one row of a per-epoch
    array); read it with ``to_numpy``. Launch: ``_softmax_xent_forward_k``.
    """
    logits, labels = _dev(logits), _dev(labels)
    if probs is None:
        probs = empty(logits.shape, logits.dtype)
    if stats is None:
        stats = empty(2, np.float64)
    check_out(probs, logits.shape, logits.dtype, "softmax_xent_forward probs")
    check_out(stats, (2,), np.float64, "softmax_xent_forward stats")
    # One thread per row up to 256, rounded up to a power of two for the tree sum.
    threads = min(THREADS, 1 << (max(_launch.WARP, logits.shape[0]) - 1).bit_length())
    _launch.launch(_softmax_xent_forward_k, 1, threads, logits, labels, probs, stats, float(smoothing))
    return probs, stats


@cuda.jit(cache=True)
def _softmax_xent_backward_k(probs, labels, dlogits, smoothing):
    """``dlogits[r, j] = (probs[r, j] - target[r, j]) / N``, ``target = (1 - smoothing) onehot + smoothing / K``;
    one element per thread, grid-stride."""
    n, k = probs.shape
    for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        r = e // k
        j = e - r * k
        hit = 1.0 if j == labels[r] else 0.0
        dlogits[r, j] = (probs[r, j] - ((1.0 - smoothing) * hit + smoothing / k)) / n


def softmax_xent_backward(probs, labels, out=None, smoothing=0.0):
    """``(probs - onehot) / N``; see ``numpy_ref.softmax_xent_backward``. Launch: ``grid_1d(N*K)``."""
    probs, labels = _dev(probs), _dev(labels)
    if out is None:
        out = empty(probs.shape, probs.dtype)
    check_out(out, probs.shape, probs.dtype, "softmax_xent_backward out")
    _launch.launch(_softmax_xent_backward_k, *grid_1d(out.size), probs, labels, out, float(smoothing))
    return out
