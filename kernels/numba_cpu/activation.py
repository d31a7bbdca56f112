"""ReLU, inverted dropout and the residual sum, element by element on Numba's threads.

See ``kernels.numpy_ref.activation``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels import _hash
from kernels.numpy_ref.activation import _check_pair

__all__ = ["relu_forward", "relu_backward", "dropout_forward", "dropout_backward", "add", "add_relu_forward"]


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


@njit(parallel=True, cache=True)
def _add_core(a, b, relu, out):
    for i in prange(a.size):
        v = a[i] + b[i]
        out[i] = max(v, 0) if relu else v


def add(a, b, out=None):
    """``a + b`` element-wise; see ``numpy_ref.add``."""
    _check_pair(a, b, out, "add")
    if out is None:
        out = np.empty_like(a)
    _add_core(a.reshape(-1), b.reshape(-1), False, out.reshape(-1))
    return out


def add_relu_forward(a, b, out=None):
    """``max(a + b, 0)`` element-wise in one pass; see ``numpy_ref.add_relu_forward``."""
    _check_pair(a, b, out, "add_relu_forward")
    if out is None:
        out = np.empty_like(a)
    _add_core(a.reshape(-1), b.reshape(-1), True, out.reshape(-1))
    return out
