"""The tiled shared-memory matrix product with split-K, and the dense layer's bias.

See ``kernels.numpy_ref.gemm`` for what each function computes.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from kernels.api import check_out, gemm_shape
from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import grid_1d
from kernels.numba_cuda.memory import _dev, _fill_k, _flat, empty
from kernels.numba_cuda.reduce import _channel_sums

__all__ = ["gemm", "bias_add", "bias_grad"]


_TILE_M, _TILE_N, _TILE_K = 64, 64, 16   # output tile of one block, depth of one shared-memory step


_SUB = 16                                # threads per tile side: 16 x 16 = 256 threads


_REG = _TILE_M // _SUB                   # each thread computes a 4 x 4 block of outputs


@functools.lru_cache(maxsize=None)
def _gemm_kernel(dtype: str, trans_a: bool, trans_b: bool):
    """The tiled GEMM kernel for one dtype and pair of transpose flags (compiled on first use).

    ``out[z] = op(a)[:, Kz] @ op(b)[Kz, :]`` for the K chunk ``Kz`` of split ``z``.

    Launch: grid ``(ceil(N/64), ceil(M/64), splits)``, 256 threads. Block (x, y, z)
    computes the 64 x 64 output tile at rows 64y, columns 64x, summing K in the
    chunk ``[z*chunk, (z+1)*chunk)``. Per step of 16 along K, the block's threads
    copy a 64 x 16 tile of ``op(a)`` and a 16 x 64 tile of ``op(b)`` into shared
    memory (four elements each, consecutive threads on consecutive addresses of
    the stored matrix, whichever way it is transposed, so the global loads
    coalesce), synchronise, and each thread accumulates a 4 x 4 register tile of
    outputs (rows ``ty + 16i``, columns ``tx + 16j``) from 4 + 4 shared values per
    k: 16 multiply-adds per 8 shared loads, and every element loaded from global
    memory is reused 64 times (Volkov & Demmel, 2008, "Benchmarking GPUs to tune
    dense linear algebra", SC'08; Kirk & Hwu, Programming Massively Parallel
    Processors, 3rd ed., Ch. 4.4, tiled matrix multiplication).

    Limits: shared memory 2 x 16 x 65 elements (8.3 KB in float32; the +1 column
    avoids bank conflicts when a tile is stored transposed); gridDim.y <= 65535,
    so M <= 4,194,240 rows; K smaller than 16 (the first convolution, K = 9)
    leaves part of each step idle, but that product is bound by its output
    writes anyway. Tiles at the edges are padded with zeros on load and masked on
    store. ``ptxas`` (sm_90) allocates 96 registers per thread in float32 and no
    spills: two blocks per SM, whose 4x4 register tiles give each warp
    independent multiply-adds to hide latency with.
    """
    dt = numba.from_dtype(np.dtype(dtype))
    tm, tn, tk, sub, reg = _TILE_M, _TILE_N, _TILE_K, _SUB, _REG
    loads = tm * tk // (sub * sub)  # elements of each tile every thread copies
    rows_a, rows_b = tm + 1, tn + 1  # shared tiles padded by one column; shapes must be constants

    @cuda.jit(cache=True)
    def gemm_tiled(a, b, out, chunk):
        m, n = out.shape[1], out.shape[2]
        k_total = a.shape[0] if trans_a else a.shape[1]
        tid = cuda.threadIdx.x
        tx = tid % sub
        ty = tid // sub
        row0 = cuda.blockIdx.y * tm
        col0 = cuda.blockIdx.x * tn
        split = cuda.blockIdx.z
        k_begin = split * chunk
        k_end = k_begin + chunk if k_begin + chunk < k_total else k_total
        a_tile = cuda.shared.array((tk, rows_a), dt)
        b_tile = cuda.shared.array((tk, rows_b), dt)
        acc = cuda.local.array((reg, reg), dt)
        a_reg = cuda.local.array(reg, dt)
        b_reg = cuda.local.array(reg, dt)
        for i in range(reg):
            for j in range(reg):
                acc[i, j] = 0
        for k0 in range(k_begin, k_end, tk):
            for step in range(loads):
                e = tid + step * sub * sub
                if trans_a:  # a is (K, M): a row of the tile is contiguous along m
                    kk, mm = e // tm, e % tm
                else:        # a is (M, K): contiguous along k
                    kk, mm = e % tk, e // tk
                r, kg = row0 + mm, k0 + kk
                if r < m and kg < k_end:
                    a_tile[kk, mm] = a[kg, r] if trans_a else a[r, kg]
                else:
                    a_tile[kk, mm] = 0
                if trans_b:  # b is (N, K): contiguous along k
                    kk, nn = e % tk, e // tk
                else:        # b is (K, N): contiguous along n
                    kk, nn = e // tn, e % tn
                c, kg = col0 + nn, k0 + kk
                if c < n and kg < k_end:
                    b_tile[kk, nn] = b[c, kg] if trans_b else b[kg, c]
                else:
                    b_tile[kk, nn] = 0
            cuda.syncthreads()
            for kk in range(tk):
                for i in range(reg):
                    a_reg[i] = a_tile[kk, ty + sub * i]
                for j in range(reg):
                    b_reg[j] = b_tile[kk, tx + sub * j]
                for i in range(reg):
                    for j in range(reg):
                        acc[i, j] += a_reg[i] * b_reg[j]
            cuda.syncthreads()
        for i in range(reg):
            r = row0 + ty + sub * i
            if r < m:
                for j in range(reg):
                    c = col0 + tx + sub * j
                    if c < n:
                        out[split, r, c] = acc[i, j]

    return gemm_tiled


@cuda.jit(cache=True)
def _sum_splits_k(partials, out):
    """``out[r, c] = sum_z partials[z, r, c]``, z in order: the second pass of split-K.

    Launch: ``grid_1d(M*N)`` (blocks of 256 threads), one output per thread (grid-stride);
    consecutive threads read and write consecutive columns. Limit: memory bandwidth.
    """
    splits, m, n = partials.shape
    for i in range(cuda.grid(1), m * n, cuda.gridsize(1)):
        r = i // n
        c = i - r * n
        total = partials[0, r, c]
        for z in range(1, splits):
            total += partials[z, r, c]
        out[r, c] = total


def gemm(a, b, trans_a=False, trans_b=False, out=None):
    """``out = op(a) @ op(b)`` with a tiled shared-memory kernel; see ``numpy_ref.gemm``.

    When the output has fewer 64 x 64 tiles than two per SM (weight gradients,
    whose K is the batch's N*H*W positions), K is split into chunks whose partial
    products are summed by a second kernel (``_launch.gemm_splits``). Launch
    configuration and limits: ``_gemm_kernel``.

    Raises
    ------
    ValueError
        If the operands are not 2-D, their inner dimensions or dtypes differ, or
        ``out`` has the wrong shape or dtype.
    """
    m, k, n = gemm_shape(a.shape, b.shape, trans_a, trans_b)
    if a.dtype != b.dtype:
        raise ValueError(f"gemm: operands have different dtypes, {a.dtype} and {b.dtype}")
    a, b = _dev(a), _dev(b)
    if out is None:
        out = empty((m, n), a.dtype)
    check_out(out, (m, n), a.dtype, "gemm out")
    if m * n == 0:
        return out
    if k == 0:
        _launch.launch(_fill_k, *grid_1d(m * n), _flat(out), 0)
        return out
    kernel = _gemm_kernel(np.dtype(a.dtype).str, bool(trans_a), bool(trans_b))
    splits, chunk = _launch.gemm_splits(m, n, k, _TILE_M, _TILE_N, _TILE_K)
    grid = (math.ceil(n / _TILE_N), math.ceil(m / _TILE_M), splits)
    if splits == 1:
        _launch.launch(kernel, grid, _SUB * _SUB, a, b, out.reshape(1, m, n), chunk)
    else:
        partials = _launch.scratch("gemm", splits * m * n, a.dtype).reshape(splits, m, n)
        _launch.launch(kernel, grid, _SUB * _SUB, a, b, partials, chunk)
        _launch.launch(_sum_splits_k, *grid_1d(m * n), partials, out)
    return out


@cuda.jit(cache=True)
def _bias_add_k(y, b):
    """``y[r, f] += b[f]`` on the flattened (N*F,) array: one thread per element, grid-stride.

    Launch: ``grid_1d(N*F)`` (blocks of 256 threads); coalesced. Limit: memory bandwidth.
    """
    f = b.size
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] += b[i % f]


def bias_add(y, b):
    """Dense bias, in place: ``y[n, f] += b[f]`` for y (N, F), b (F,)."""
    if y.size:
        _launch.launch(_bias_add_k, *grid_1d(y.size), _flat(y), _dev(b))
    return y


def bias_grad(dout, out=None):
    """Dense bias gradient ``db[f] = sum_n dout[n, f]``: (N, F) -> (F,).

    The per-feature sum of ``_channel_partials_k`` on the (N, F, 1) view, then ``_finish_sums_k``.
    """
    dout = _dev(dout)
    if out is None:
        out = empty(dout.shape[1], dout.dtype)
    check_out(out, (dout.shape[1],), dout.dtype, "bias_grad out")
    _channel_sums(dout.reshape(dout.shape[0], dout.shape[1], 1), out)
    return out
