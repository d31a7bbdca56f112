"""ReLU and inverted dropout, element by element on Numba's threads; see ``kernels.numpy_ref.activation``."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels import _hash

__all__ = ["relu_forward", "relu_backward", "dropout_forward", "dropout_backward"]


_splitmix64 = njit(cache=True, inline="always")(_hash.splitmix64)


@njit(cache=True, inline="always")
def _uniform(key, i):
    # _hash.uniform, with the compiled splitmix64.
    return np.float32(_splitmix64(key + np.uint64(i)) >> _hash._S40) * _hash._TWO_POW_M24


@njit(parallel=True, cache=True)
def _relu_forward_core(x, out):
    for i in prange(x.size):
        out[i] = max(x[i], 0)


def relu_forward(x, out=None):
    """``max(x, 0)`` element-wise, any shape; see ``numpy_ref.relu_forward``."""
    if out is None:
        out = np.empty_like(x)
    _relu_forward_core(x.reshape(-1), out.reshape(-1))
    return out


@njit(parallel=True, cache=True)
def _relu_backward_core(dout, y, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] if y[i] > 0 else 0


def relu_backward(dout, y, out=None):
    """``dout * (y > 0)``; see ``numpy_ref.relu_backward``."""
    if out is None:
        out = np.empty_like(dout)
    _relu_backward_core(dout.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


@njit(parallel=True, cache=True)
def _dropout_forward_core(x, p, scale, key, out, mask):
    for i in prange(x.size):
        m = scale if _uniform(key, i) >= p else 0.0
        mask[i] = m
        out[i] = x[i] * m


def dropout_forward(x, p, seed, counter, out=None, mask=None):
    """Inverted dropout with a counter-based mask; see ``numpy_ref.dropout_forward``."""
    if out is None:
        out = np.empty_like(x)
    if mask is None:
        mask = np.empty_like(x)
    with np.errstate(over="ignore"):
        key = _hash.stream_key(seed, counter)
    # p as float32, the precision of the uniform draws, as in the reference.
    _dropout_forward_core(x.reshape(-1), np.float32(p), 1.0 / (1.0 - p), key, out.reshape(-1),
                          mask.reshape(-1))
    return out, mask


@njit(parallel=True, cache=True)
def _multiply_core(a, b, out):
    for i in prange(a.size):
        out[i] = a[i] * b[i]


def dropout_backward(dout, mask, out=None):
    """``dout * mask``; see ``numpy_ref.dropout_backward``."""
    if out is None:
        out = np.empty_like(dout)
    _multiply_core(dout.reshape(-1), mask.reshape(-1), out.reshape(-1))
    return out
