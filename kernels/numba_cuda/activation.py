"""ReLU, inverted dropout and the residual sum as CUDA kernels; see ``kernels.numpy_ref.activation``."""
from __future__ import annotations

import numpy as np
from numba import cuda

from kernels import _hash
from kernels.api import check_out
from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import grid_1d
from kernels.numba_cuda.memory import _dev, _flat, empty

__all__ = ["relu_forward", "relu_backward", "dropout_forward", "dropout_backward", "add", "add_relu_forward"]


_splitmix64 = cuda.jit(device=True)(_hash.splitmix64)


@cuda.jit(cache=True)
def _relu_forward_k(x, out):
    """``out[i] = max(x[i], 0)``; one thread per element, grid-stride, ``grid_1d(size)``."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        if v > 0:
            out[i] = v
        else:
            out[i] = 0


def relu_forward(x, out=None):
    """``max(x, 0)`` element-wise, any shape; see ``numpy_ref.relu_forward``. Limit: bandwidth."""
    x = _dev(x)
    if out is None:
        out = empty(x.shape, x.dtype)
    check_out(out, x.shape, x.dtype, "relu_forward out")
    if x.size:
        _launch.launch(_relu_forward_k, *grid_1d(x.size), _flat(x), _flat(out))
    return out


@cuda.jit(cache=True)
def _relu_backward_k(dout, y, dx):
    """``dx[i] = dout[i] if y[i] > 0 else 0``; one thread per element, grid-stride, ``grid_1d``."""
    for i in range(cuda.grid(1), dout.size, cuda.gridsize(1)):
        if y[i] > 0:
            dx[i] = dout[i]
        else:
            dx[i] = 0


def relu_backward(dout, y, out=None):
    """``dout * (y > 0)``; see ``numpy_ref.relu_backward``. Limit: bandwidth."""
    dout, y = _dev(dout), _dev(y)
    if out is None:
        out = empty(dout.shape, dout.dtype)
    check_out(out, dout.shape, dout.dtype, "relu_backward out")
    if dout.size:
        _launch.launch(_relu_backward_k, *grid_1d(dout.size), _flat(dout), _flat(y), _flat(out))
    return out


@cuda.jit(cache=True)
def _dropout_forward_k(x, p, scale, key, out, mask):
    """``mask[i] = scale if uniform(key, i) >= p else 0``; ``out[i] = x[i] * mask[i]``.

    ``uniform`` is ``kernels._hash.uniform`` with SplitMix64 compiled as a device
    function, so the mask equals the NumPy and CPU masks bit for bit.
    Launch: ``grid_1d(size)`` (blocks of 256 threads), grid-stride; each thread hashes
    its own element index (no generator state). Limit: memory bandwidth (the
    hash is a few integer multiplies).
    """
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        u = np.float32(_splitmix64(key + np.uint64(i)) >> _hash._S40) * _hash._TWO_POW_M24
        if u >= p:
            mask[i] = scale
        else:
            mask[i] = 0
        out[i] = x[i] * mask[i]


def dropout_forward(x, p, seed, counter, out=None, mask=None):
    """Inverted dropout with a counter-based mask; see ``numpy_ref.dropout_forward``."""
    x = _dev(x)
    if out is None:
        out = empty(x.shape, x.dtype)
    if mask is None:
        mask = empty(x.shape, x.dtype)
    check_out(out, x.shape, x.dtype, "dropout_forward out")
    check_out(mask, x.shape, x.dtype, "dropout_forward mask")
    with np.errstate(over="ignore"):
        key = _hash.stream_key(seed, counter)
    if x.size:
        _launch.launch(_dropout_forward_k, *grid_1d(x.size), _flat(x), np.float32(p),
                       1.0 / (1.0 - p), key, _flat(out), _flat(mask))
    return out, mask


@cuda.jit(cache=True)
def _multiply_k(a, b, out):
    """``out[i] = a[i] * b[i]``; one thread per element, grid-stride, ``grid_1d``."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        out[i] = a[i] * b[i]


def dropout_backward(dout, mask, out=None):
    """``dout * mask``; see ``numpy_ref.dropout_backward``. Limit: bandwidth."""
    dout, mask = _dev(dout), _dev(mask)
    if out is None:
        out = empty(dout.shape, dout.dtype)
    check_out(out, dout.shape, dout.dtype, "dropout_backward out")
    if dout.size:
        _launch.launch(_multiply_k, *grid_1d(dout.size), _flat(dout), _flat(mask), _flat(out))
    return out


@cuda.jit(cache=True)
def _add_k(a, b, relu, out):
    """``out[i] = a[i] + b[i]``, clipped at 0 with ``relu``; one thread per element, grid-stride, ``grid_1d``.

    ``out`` may alias ``a`` or ``b``: each thread reads its element before writing it.
    """
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        v = a[i] + b[i]
        if relu and v < 0:
            out[i] = 0
        else:
            out[i] = v


def _add(a, b, relu, out, what):
    a, b = _dev(a), _dev(b)
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(f"{what}: operands differ: shape {tuple(a.shape)} {a.dtype} and "
                         f"shape {tuple(b.shape)} {b.dtype}")
    if out is None:
        out = empty(a.shape, a.dtype)
    check_out(out, a.shape, a.dtype, f"{what} out")
    if a.size:
        _launch.launch(_add_k, *grid_1d(a.size), _flat(a), _flat(b), relu, _flat(out))
    return out


def add(a, b, out=None):
    """``a + b`` element-wise; see ``numpy_ref.add``. Limit: bandwidth."""
    return _add(a, b, False, out, "add")


def add_relu_forward(a, b, out=None):
    """``max(a + b, 0)`` element-wise in one kernel; see ``numpy_ref.add_relu_forward``. Limit: bandwidth."""
    return _add(a, b, True, out, "add_relu_forward")
