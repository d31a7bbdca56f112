"""Matrix products and the dense layer's bias; see ``kernels.numpy_ref.gemm``."""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from kernels.api import check_out, gemm_shape
from kernels.numba_cpu import blas

__all__ = ["gemm", "bias_add", "bias_grad"]


def gemm(a, b, trans_a=False, trans_b=False, out=None):
    """``out = op(a) @ op(b)``; see ``numpy_ref.gemm``.

    BLAS does the arithmetic, but on Numba's threads: the output is cut into one
    block per thread and each block is a single-threaded BLAS call (``kernels.numba_cpu.blas``).
    """
    m, _, n = gemm_shape(a.shape, b.shape, trans_a, trans_b)
    if out is None:
        out = np.empty((m, n), a.dtype)
    check_out(out, (m, n), a.dtype, "gemm out")
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    address = blas.gemm_address(a.dtype)
    blas.gemm(a, b, bool(trans_a), bool(trans_b), out, numba.get_num_threads(), address)
    return out


@njit(parallel=True, cache=True)
def _bias_add_core(y, b):
    n, f = y.shape
    for row in prange(n):
        for col in range(f):
            y[row, col] += b[col]


def bias_add(y, b):
    """Dense bias, in place: ``y[n, f] += b[f]`` for y (N, F), b (F,)."""
    _bias_add_core(y, b)
    return y


@njit(parallel=True, cache=True)
def _bias_grad_core(dout, db):
    n, f = dout.shape
    for col in prange(f):
        total = 0.0
        for row in range(n):
            total += dout[row, col]
        db[col] = total


def bias_grad(dout, out=None):
    """Dense bias gradient ``db[f] = sum_n dout[n, f]``: (N, F) -> (F,)."""
    if out is None:
        out = np.empty(dout.shape[1], dout.dtype)
    _bias_grad_core(dout, out)
    return out
