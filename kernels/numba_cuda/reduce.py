"""Per-channel sums on the GPU, shared by the bias gradients, batch normalisation and the loss.

A sum over N*H*W values per channel runs as partial sums in blocks
(``_channel_partials_k``), each block adding its threads' values in a
shared-memory tree (``_block_sum2``), then one thread per channel adding the
partials in order (``_finish_sums_k``): a fixed order, so results are
reproducible, and no atomics.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import THREADS, grid_1d


# Per-channel sums over the (N, C, P) view of an array: what is summed.
_SUM, _SQUARED_DEVIATION, _SUM_AND_PRODUCT = 0, 1, 2


@cuda.jit(device=True)
def _block_sum2(a, b):
    """Sum two float64 values over the threads of a block; the totals are valid in thread 0.

    A shared-memory tree of log2(blockDim) steps (Harris, 2007, "Optimizing
    Parallel Reduction in CUDA", kernel 3): fixed order, so reproducible. The
    block size must be a power of two no larger than ``THREADS``; every thread
    of the block must call it (it synchronises the block).
    """
    tid = cuda.threadIdx.x
    s0 = cuda.shared.array(THREADS, numba.float64)
    s1 = cuda.shared.array(THREADS, numba.float64)
    s0[tid] = a
    s1[tid] = b
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if tid < half:
            s0[tid] += s0[tid + half]
            s1[tid] += s1[tid + half]
        cuda.syncthreads()
        half //= 2
    return s0[0], s1[0]


@cuda.jit(cache=True)
def _channel_partials_k(x, y, center, mode, chunk, partials):
    """Partial per-channel sums over (N, P) of an (N, C, P) array, in float64.

    Block (z, c) sums the values of channel ``c`` at flat positions
    ``[z*chunk, (z+1)*chunk)`` of its N*P values into ``partials[:, c, z]``:
    ``mode`` 0 sums ``x``; 1 sums ``(x - center[c])**2``; 2 sums ``x`` into slot 0
    and ``x*y`` into slot 1.

    Launch: grid ``(splits, C)`` from ``_launch.reduction_splits``; a block of
    ``_launch.reduction_threads(chunk)`` threads, a power of two from 32 (one
    warp, for a dense layer's bias) to 256 (a convolution's N*H*W positions).
    Each thread strides through the chunk (consecutive threads on consecutive
    positions of one image plane: coalesced), then the block adds its values
    in a shared-memory tree (log2(threads) steps; Harris, 2007, "Optimizing
    Parallel Reduction in CUDA", kernel 3). The order of the sum is fixed, so
    results are reproducible. Limit: memory bandwidth; for (N, F) input (P = 1)
    reads stride over F, but such arrays are small.
    """
    ch = cuda.blockIdx.y
    piece = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    n, _, p = x.shape
    lo = piece * chunk
    hi = lo + chunk if lo + chunk < n * p else n * p
    acc0 = 0.0
    acc1 = 0.0
    for e in range(lo + tid, hi, cuda.blockDim.x):
        img = e // p
        q = e - img * p
        v = x[img, ch, q]
        if mode == _SUM:
            acc0 += v
        elif mode == _SQUARED_DEVIATION:
            d = v - center[ch]
            acc0 += d * d
        else:
            acc0 += v
            acc1 += v * y[img, ch, q]
    total0, total1 = _block_sum2(acc0, acc1)
    if tid == 0:
        partials[0, ch, piece] = total0
        partials[1, ch, piece] = total1


def _channel_partials(x3, mode, y3=None, center=None):
    """Queue ``_channel_partials_k`` on an (N, C, P) view; returns the (2, C, splits) float64 partials."""
    n, c, p = x3.shape
    splits, chunk = _launch.reduction_splits(c, n * p)
    partials = _launch.scratch("channel_partials", 2 * c * splits, np.float64).reshape(2, c, splits)
    if center is None:
        center = _launch.scratch("no_center", 1, np.float64)
    threads = _launch.reduction_threads(min(chunk, n * p))
    _launch.launch(_channel_partials_k, (splits, c), threads, x3, x3 if y3 is None else y3, center, mode,
                   chunk, partials)
    return partials


@cuda.jit(cache=True)
def _finish_sums_k(partials, slot, out):
    """``out[c] = sum_z partials[slot, c, z]``: one thread per channel, z in order.

    Launch: ``grid_1d(C)`` (blocks of 256 threads). Limit: launch latency (C is small).
    """
    c = cuda.grid(1)
    if c < out.size:
        total = 0.0
        for z in range(partials.shape[2]):
            total += partials[slot, c, z]
        out[c] = total


def _channel_sums(x3, out):
    """``out[c] = sum over n, q of x3[n, c, q]`` (two kernels: partials, then their sum)."""
    partials = _channel_partials(x3, _SUM)
    _launch.launch(_finish_sums_k, *grid_1d(out.size), partials, 0, out)
