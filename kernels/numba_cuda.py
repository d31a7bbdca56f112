"""CUDA kernels written with ``numba.cuda``: the reference's functions on device arrays.

Same names, arguments and results as ``kernels.numpy_ref`` (read that file for
what each kernel computes). Arrays live on the GPU as Numba device arrays
(``numba.cuda.cudadrv.devicearray.DeviceNDArray``); ``asarray`` uploads a host
array and ``to_numpy`` downloads one, and nothing else crosses the bus: a
training step uploads its batch and leaves everything else on the device, and
the loss and the number correct stay in a device array of per-step rows until
the trainer reads them (every 50 steps). Kernels are queued on the default
stream and run asynchronously; ``synchronize`` waits for them.

How each public function works: it checks shapes and allocates missing outputs
in Python (host inputs are uploaded once), then queues one to three kernels.
Every kernel's docstring gives its launch configuration and what limits it;
``kernels._launch`` sizes the grids. The rules all kernels keep:

- one thread per output element, consecutive threads on consecutive addresses
  of the array they write (and, where the layout allows, read), so a warp's
  32 accesses merge into few memory transactions (coalescing);
- no two threads write the same element, so there are no atomics, and sums
  run in a fixed order: results do not change from run to run;
- reductions (bias gradients, batch-norm statistics, the loss) accumulate in
  float64, as the CPU backend does; the matrix product accumulates in the
  arrays' dtype, like BLAS.
- kernels write ``a if a < b else b`` rather than ``min``/``max``: Numba's
  built-in CUDA target cannot compile those builtins' vararg overloads.

Written as ``from numba import cuda`` so that it runs on Numba's built-in CUDA
target or on NVIDIA's ``numba-cuda`` package (``pip install scratchcnn[gpu]``).
Kernels compile on first use (once per argument types and GPU architecture),
so importing this module needs no GPU, and are cached on disk (``cache=True``,
as the CPU backend's) so that later runs skip the compiler. Under
``NUMBA_ENABLE_CUDASIM=1`` the same kernels run in Numba's CPU simulator, which
is how the tests check them without a GPU.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from kernels import _hash
from kernels import _launch
from kernels._api import KERNELS, check_nchw, check_out, conv_output_size, gemm_shape
from kernels._launch import THREADS, grid_1d

name = "cuda"

__all__ = list(KERNELS)  # the contract, kernels/_api.py

_splitmix64 = cuda.jit(device=True)(_hash.splitmix64)


# ----------------------------------------------------------------------------- memory

def _is_device(a) -> bool:
    return hasattr(a, "copy_to_host")


def _dev(a):
    """A read-only input on the device: device arrays pass through, host arrays are uploaded once."""
    return a if _is_device(a) else cuda.to_device(np.ascontiguousarray(a))


def empty(shape, dtype=np.float32):
    """An uninitialised device array of ``shape`` and ``dtype`` (``cuda.device_array``)."""
    return cuda.device_array(shape, np.dtype(dtype))


@cuda.jit(cache=True)
def _fill_k(a, value):
    """``a[i] = value`` for a 1-D array. Grid-stride, ``grid_1d(a.size)`` (blocks of 256 threads)."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


def zeros(shape, dtype=np.float32):
    """A zero-filled device array of ``shape`` and ``dtype``, filled on the device (no upload)."""
    out = empty(shape, dtype)
    if out.size:
        _launch.launch(_fill_k, *grid_1d(out.size), out.reshape(-1), 0)
    return out


def asarray(a, dtype=None):
    """Host array -> C-contiguous device array (a copy); a device array of that dtype is returned as is.

    A device array of another dtype is cast through the host (rare: ``Layer.to``
    casts on the host before uploading).
    """
    if _is_device(a):
        if dtype is None or np.dtype(dtype) == a.dtype:
            return a
        return cuda.to_device(a.copy_to_host().astype(dtype))
    return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))


def to_numpy(a):
    """Device array -> NumPy array on the host (waits for the kernels that write it); host arrays pass."""
    return a.copy_to_host() if _is_device(a) else np.asarray(a)


def synchronize():
    """Wait until every queued kernel has finished (``cuda.synchronize``), e.g. before reading a clock."""
    cuda.synchronize()


def _flat(a):
    return a.reshape(-1)


# ----------------------------------------------------------------------------- matrix product

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


# ----------------------------------------------------------------------------- convolution

@cuda.jit(cache=True)
def _im2col_k(x, kh, kw, stride, padding, h_out, w_out, cols):
    """One thread per element of ``cols`` (C*kh*kw, N*H_out*W_out): a gather with zero padding.

    Launch: ``grid_1d(cols.size)`` (blocks of 256 threads), grid-stride over ``cols`` in
    row-major order, so consecutive threads write consecutive columns and read
    consecutive input pixels of one image row (coalesced both ways at stride 1).
    Limit: memory bandwidth; the column matrix is kh*kw times the input.
    """
    n, c, h, w = x.shape
    p = h_out * w_out
    width = n * p
    for e in range(cuda.grid(1), cols.size, cuda.gridsize(1)):
        row = e // width
        col = e - row * width
        ch = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        img = col // p
        q = col - img * p
        oh = q // w_out
        ow = q - oh * w_out
        ih = oh * stride + i - padding
        iw = ow * stride + j - padding
        if 0 <= ih < h and 0 <= iw < w:
            cols[row, col] = x[img, ch, ih, iw]
        else:
            cols[row, col] = 0


def im2col(x, kh, kw, stride=1, padding=0, out=None):
    """Unfold windows into columns (C*kh*kw, N*H_out*W_out); see ``numpy_ref.im2col``.

    Launch configuration and limits: ``_im2col_k``.
    """
    n, c, h, w = check_nchw(x)
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    x = _dev(x)
    if out is None:
        out = empty((c * kh * kw, n * h_out * w_out), x.dtype)
    check_out(out, (c * kh * kw, n * h_out * w_out), x.dtype, "im2col out")
    _launch.launch(_im2col_k, *grid_1d(out.size), x, int(kh), int(kw), int(stride), int(padding),
                   h_out, w_out, out)
    return out


@cuda.jit(cache=True)
def _col2im_k(cols, kh, kw, stride, padding, h_out, w_out, dx):
    """One thread per input pixel: the sum of every column entry that read it (a gather, no atomics).

    Pixel (h, w) was read by window offset (i, j) of output position
    ``((h + padding - i)/stride, (w + padding - j)/stride)`` when those are whole
    numbers inside the output; the thread visits the kh*kw offsets in the
    reference's order and adds in float64.

    Launch: ``grid_1d(dx.size)`` (blocks of 256 threads), grid-stride over ``dx`` in
    NCHW order: writes coalesce, and at stride 1 so do the reads of each column
    row. Limit: memory bandwidth (kh*kw reads per pixel).
    """
    n, c, h, w = dx.shape
    p = h_out * w_out
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        iw = e % w
        t = e // w
        ih = t % h
        t = t // h
        ch = t % c
        img = t // c
        total = 0.0
        for i in range(kh):
            th = ih + padding - i
            if th < 0 or th % stride != 0 or th // stride >= h_out:
                continue
            for j in range(kw):
                tw = iw + padding - j
                if tw < 0 or tw % stride != 0 or tw // stride >= w_out:
                    continue
                total += cols[(ch * kh + i) * kw + j, img * p + (th // stride) * w_out + tw // stride]
        dx[img, ch, ih, iw] = total


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, out=None):
    """Fold columns back to (N, C, H, W), summing overlaps; see ``numpy_ref.col2im``.

    Launch configuration and limits: ``_col2im_k``.
    """
    n, c, h, w = (int(s) for s in x_shape)
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    check_out(cols, (c * kh * kw, n * h_out * w_out), cols.dtype, "col2im cols")
    cols = _dev(cols)
    if out is None:
        out = empty((n, c, h, w), cols.dtype)
    check_out(out, (n, c, h, w), cols.dtype, "col2im out")
    _launch.launch(_col2im_k, *grid_1d(out.size), cols, int(kh), int(kw), int(stride), int(padding),
                   h_out, w_out, out)
    return out


@cuda.jit(cache=True)
def _bias_add_nchw_k(y, b, out):
    """``out[n, c, q] = y[c, n*P + q] + b[c]``: one thread per output, in NCHW order.

    Launch: ``grid_1d(out.size)`` (blocks of 256 threads), grid-stride; consecutive
    threads read consecutive ``q`` of one row of ``y`` and write consecutive
    ``q`` of ``out`` (both coalesced). Limit: memory bandwidth.
    """
    n, c, p = out.shape
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        q = e % p
        t = e // p
        ch = t % c
        img = t // c
        out[img, ch, q] = y[ch, img * p + q] + b[ch]


def bias_add_nchw(y, b, n, out=None):
    """(C, N*P) GEMM output + bias -> (N, C, P); see ``numpy_ref.bias_add_nchw``."""
    c = y.shape[0]
    p = y.shape[1] // n
    y, b = _dev(y), _dev(b)
    if out is None:
        out = empty((n, c, p), y.dtype)
    check_out(out, (n, c, p), y.dtype, "bias_add_nchw out")
    _launch.launch(_bias_add_nchw_k, *grid_1d(out.size), y, b, out)
    return out


@cuda.jit(cache=True)
def _to_channel_major_k(dout, dout_cm):
    """``dout_cm[c, n*P + q] = dout[n, c, q]``: one thread per element, in ``dout_cm`` order.

    Launch: ``grid_1d(dout.size)`` (blocks of 256 threads), grid-stride; reads and
    writes run along ``q`` (coalesced). Limit: memory bandwidth.
    """
    n, c, p = dout.shape
    width = n * p
    for e in range(cuda.grid(1), dout_cm.size, cuda.gridsize(1)):
        ch = e // width
        col = e - ch * width
        img = col // p
        dout_cm[ch, col] = dout[img, ch, col - img * p]


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


def bias_grad_nchw(dout, db=None, dout_cm=None):
    """Per-channel bias gradient and dout reordered to (C, N*H*W); see ``numpy_ref.bias_grad_nchw``.

    Three kernels: the reorder (``_to_channel_major_k``) and the per-channel sum
    (``_channel_partials_k``, then ``_finish_sums_k``).
    """
    n, c, h, w = check_nchw(dout, "dout")
    dout = _dev(dout)
    if db is None:
        db = empty(c, dout.dtype)
    if dout_cm is None:
        dout_cm = empty((c, n * h * w), dout.dtype)
    check_out(db, (c,), dout.dtype, "bias_grad_nchw db")
    check_out(dout_cm, (c, n * h * w), dout.dtype, "bias_grad_nchw dout_cm")
    dout3 = dout.reshape(n, c, h * w)
    _launch.launch(_to_channel_major_k, *grid_1d(dout.size), dout3, dout_cm)
    _channel_sums(dout3, db)
    return db, dout_cm


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


# ----------------------------------------------------------------------------- activations

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


# ----------------------------------------------------------------------------- max-pooling
# One pair of kernels serves plain max-pooling (NCHW input) and the fused
# Conv-ReLU-Pool block (channel-major GEMM output). An input "plane" is one
# (image, channel) map of h*w pixels: row img*C + ch of the NCHW input viewed as
# (N*C, h*w), or row ch*N + img of the GEMM output viewed as (C*N, h*w).

@cuda.jit(cache=True)
def _pool_forward_k(planes, channel_major, bias, has_bias, relu, h, w, k, stride, out, argmax):
    """One thread per pooled output: the max of ``plane + bias`` over its k x k window.

    Ties keep the first position in row-major order (strict ``>``), as the
    reference; with ``relu`` the maximum is then clipped at 0 (ReLU is monotone, so
    this is ``maxpool(relu(z))``). The bias is added to every candidate in the
    input dtype, exactly as the reference adds it before pooling.

    Launch: ``grid_1d(out.size)`` (blocks of 256 threads), grid-stride in NCHW order of
    ``out``: writes coalesce, and a warp's reads fall in a few rows of one
    plane. Limit: memory bandwidth (each input is read once for
    non-overlapping windows).
    """
    n, c, h_out, w_out = out.shape
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        ow = e % w_out
        t = e // w_out
        oh = t % h_out
        t = t // h_out
        ch = t % c
        img = t // c
        plane = ch * n + img if channel_major else img * c + ch
        corner = oh * stride * w + ow * stride
        best = planes[plane, corner]
        if has_bias:
            best = best + bias[ch]
        arg = 0
        for i in range(k):
            for j in range(k):
                v = planes[plane, corner + i * w + j]
                if has_bias:
                    v = v + bias[ch]
                if v > best:
                    best = v
                    arg = i * k + j
        if relu and best <= 0:
            out[img, ch, oh, ow] = 0
        else:
            out[img, ch, oh, ow] = best
        argmax[img, ch, oh, ow] = arg


def _pool_forward(planes, channel_major, bias, relu, n, c, h, w, k, stride, out, argmax, what):
    h_out, w_out = conv_output_size(h, k, stride, 0), conv_output_size(w, k, stride, 0)
    if out is None:
        out = empty((n, c, h_out, w_out), planes.dtype)
    if argmax is None:
        argmax = empty((n, c, h_out, w_out), np.int8)
    check_out(out, (n, c, h_out, w_out), planes.dtype, f"{what} out")
    check_out(argmax, (n, c, h_out, w_out), np.int8, f"{what} argmax")
    has_bias = bias is not None
    _launch.launch(_pool_forward_k, *grid_1d(out.size), planes, channel_major,
                   bias if has_bias else planes[0], has_bias, relu, h, w, int(k), int(stride), out, argmax)
    return out, argmax


def maxpool_forward(x, kernel_size, stride, out=None, argmax=None):
    """Window max and its int8 position; see ``numpy_ref.maxpool_forward``. Launch: ``_pool_forward_k``."""
    n, c, h, w = check_nchw(x)
    x = _dev(x)
    return _pool_forward(x.reshape(n * c, h * w), False, None, False, n, c, h, w, kernel_size, stride,
                         out, argmax, "maxpool_forward")


def conv_relu_pool_forward(y, b, n, h, w, kernel_size, stride, out=None, argmax=None):
    """maxpool(relu(y + b)) from channel-major GEMM output; see ``numpy_ref.conv_relu_pool_forward``.

    One kernel (``_pool_forward_k``): reads ``y`` once and writes only the pooled map.
    """
    c = y.shape[0]
    check_out(y, (c, n * h * w), y.dtype, "conv_relu_pool_forward y")
    y, b = _dev(y), _dev(b)
    return _pool_forward(y.reshape(c * n, h * w), True, b, True, n, c, h, w, kernel_size, stride,
                         out, argmax, "conv_relu_pool_forward")


@cuda.jit(cache=True)
def _pool_backward_k(dout, argmax, out, relu, h, w, k, stride, channel_major, planes):
    """One thread per input pixel: the sum of ``dout`` over the windows whose maximum it was.

    Pixel (h, w) lies in the windows ``oh`` with ``oh*stride <= h < oh*stride + k``
    (and the same along w); it receives ``dout`` of each such window whose argmax
    points at it (and, with ``relu``, whose pooled output was positive). A gather
    instead of the CPU's scatter, so no two threads write one pixel and no
    atomics are needed; pixels no window chose get 0.

    Launch: ``grid_1d(planes.size)`` (blocks of 256 threads), grid-stride in the order of
    ``planes`` (channel-major for the fused block, so the rows of ``dy`` that the
    weight GEMM reads are written with coalesced stores). Limit: memory
    bandwidth; ``ceil(k/stride)**2`` windows per pixel.
    """
    n, c, h_out, w_out = dout.shape
    hw = h * w
    for e in range(cuda.grid(1), planes.size, cuda.gridsize(1)):
        plane = e // hw
        pix = e - plane * hw
        if channel_major:
            ch = plane // n
            img = plane - ch * n
        else:
            img = plane // c
            ch = plane - img * c
        ih = pix // w
        iw = pix - ih * w
        # Windows oh with oh*stride <= ih < oh*stride + k, clipped to the output.
        oh_lo = (ih - k + stride) // stride
        oh_lo = oh_lo if oh_lo > 0 else 0
        oh_hi = ih // stride
        oh_hi = oh_hi if oh_hi < h_out else h_out - 1
        ow_lo = (iw - k + stride) // stride
        ow_lo = ow_lo if ow_lo > 0 else 0
        ow_hi = iw // stride
        ow_hi = ow_hi if ow_hi < w_out else w_out - 1
        total = 0.0
        for oh in range(oh_lo, oh_hi + 1):
            for ow in range(ow_lo, ow_hi + 1):
                if argmax[img, ch, oh, ow] == (ih - oh * stride) * k + iw - ow * stride:
                    if not relu or out[img, ch, oh, ow] > 0:
                        total += dout[img, ch, oh, ow]
        planes[plane, pix] = total


def maxpool_backward(dout, argmax, x_shape, kernel_size, stride, out=None):
    """Route gradients to the window maxima; see ``numpy_ref.maxpool_backward``.

    Launch configuration and limits: ``_pool_backward_k``.
    """
    n, c, h, w = (int(s) for s in x_shape)
    dout, argmax = _dev(dout), _dev(argmax)
    if out is None:
        out = empty((n, c, h, w), dout.dtype)
    check_out(out, (n, c, h, w), dout.dtype, "maxpool_backward out")
    _launch.launch(_pool_backward_k, *grid_1d(out.size), dout, argmax, dout, False, h, w,
                   int(kernel_size), int(stride), False, out.reshape(n * c, h * w))
    return out


def relu_pool_backward_cm(dout, argmax, out, h, w, kernel_size, stride, dy=None, db=None):
    """Gradient of the fused block into channel-major ``dy`` and ``db``.

    See ``numpy_ref.relu_pool_backward_cm``.

    ``_pool_backward_k`` writes ``dy``; the bias gradient is the per-channel sum
    of ``dy`` (``_channel_partials_k`` on its (1, C, N*h*w) view, then ``_finish_sums_k``).
    """
    n, c = dout.shape[:2]
    dout, argmax, out = _dev(dout), _dev(argmax), _dev(out)
    if dy is None:
        dy = empty((c, n * h * w), dout.dtype)
    if db is None:
        db = empty(c, dout.dtype)
    check_out(dy, (c, n * h * w), dout.dtype, "relu_pool_backward_cm dy")
    check_out(db, (c,), dout.dtype, "relu_pool_backward_cm db")
    _launch.launch(_pool_backward_k, *grid_1d(dy.size), dout, argmax, out, True, int(h), int(w),
                   int(kernel_size), int(stride), True, dy.reshape(c * n, h * w))
    _channel_sums(dy.reshape(1, c, n * h * w), db)
    return dy, db


# ----------------------------------------------------------------------------- dropout

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


# ----------------------------------------------------------------------------- batch norm

def _as_ncp(a):
    """View (N, C, H, W) or (N, C) as (N, C, P) so one kernel serves both."""
    return a.reshape(a.shape[0], a.shape[1], -1)


@cuda.jit(cache=True)
def _bn_mean_k(partials, m, stats):
    """``stats[0, c] = sum_z partials[0, c, z] / m`` in float64; one thread per channel."""
    c = cuda.grid(1)
    if c < stats.shape[1]:
        total = 0.0
        for z in range(partials.shape[2]):
            total += partials[0, c, z]
        stats[0, c] = total / m


@cuda.jit(cache=True)
def _bn_var_k(partials, m, momentum, eps, stats, running_mean, running_var, inv_std):
    """Batch variance from the squared-deviation partials; running statistics; ``1/sqrt(var + eps)``.

    ``running = (1 - momentum)*running + momentum*batch``, the variance unbiased
    by ``m/(m - 1)`` (as PyTorch). One thread per channel, ``grid_1d(C)``.
    """
    c = cuda.grid(1)
    if c < stats.shape[1]:
        total = 0.0
        for z in range(partials.shape[2]):
            total += partials[0, c, z]
        var = total / m
        mean = stats[0, c]
        running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean
        unbiased = var * m / (m - 1) if m > 1 else var
        running_var[c] = (1 - momentum) * running_var[c] + momentum * unbiased
        s = 1.0 / math.sqrt(var + eps)
        stats[1, c] = s
        inv_std[c] = s


@cuda.jit(cache=True)
def _bn_eval_stats_k(running_mean, running_var, eps, stats, inv_std):
    """Inference: mean and ``1/sqrt(var + eps)`` from the running statistics; one thread per channel."""
    c = cuda.grid(1)
    if c < stats.shape[1]:
        s = 1.0 / math.sqrt(running_var[c] + eps)
        stats[0, c] = running_mean[c]
        stats[1, c] = s
        inv_std[c] = s


@cuda.jit(cache=True)
def _bn_normalize_k(x, gamma, beta, stats, out, x_hat):
    """``x_hat = (x - mean[c]) * inv_std[c]``; ``out = gamma[c]*x_hat + beta[c]`` on (N, C, P).

    Launch: ``grid_1d(x.size)`` (blocks of 256 threads), one element each in memory
    order (coalesced). Limit: memory bandwidth.
    """
    n, c, p = x.shape
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        q = e % p
        t = e // p
        ch = t % c
        img = t // c
        xh = (x[img, ch, q] - stats[0, ch]) * stats[1, ch]
        x_hat[img, ch, q] = xh
        out[img, ch, q] = gamma[ch] * xh + beta[ch]


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training,
                      out=None, x_hat=None, inv_std=None):
    """Batch normalisation forward; see ``numpy_ref.batchnorm_forward`` (Ioffe & Szegedy, 2015, Alg. 1).

    Training: two passes over ``x`` for the mean and then the variance about it
    (``_channel_partials_k`` each; two-pass is exact where ``E[x^2] - E[x]^2``
    cancels), per-channel finishing kernels, then ``_bn_normalize_k``.
    """
    x, gamma, beta = _dev(x), _dev(gamma), _dev(beta)
    if out is None:
        out = empty(x.shape, x.dtype)
    if x_hat is None:
        x_hat = empty(x.shape, x.dtype)
    if inv_std is None:
        inv_std = empty(x.shape[1], x.dtype)
    check_out(out, x.shape, x.dtype, "batchnorm_forward out")
    check_out(x_hat, x.shape, x.dtype, "batchnorm_forward x_hat")
    x3 = _as_ncp(x)
    n, c, p = x3.shape
    m = n * p
    stats = _launch.scratch("bn_stats", 2 * c, np.float64).reshape(2, c)  # mean, 1/std in float64
    per_channel = grid_1d(c)
    if training:
        _launch.launch(_bn_mean_k, *per_channel, _channel_partials(x3, _SUM), m, stats)
        partials = _channel_partials(x3, _SQUARED_DEVIATION, center=stats[0])
        _launch.launch(_bn_var_k, *per_channel, partials, m, float(momentum), float(eps), stats,
                       running_mean, running_var, inv_std)
    else:
        _launch.launch(_bn_eval_stats_k, *per_channel, running_mean, running_var, float(eps),
                       stats, inv_std)
    _launch.launch(_bn_normalize_k, *grid_1d(x.size), x3, gamma, beta, stats, _as_ncp(out),
                   _as_ncp(x_hat))
    return out, x_hat, inv_std


@cuda.jit(cache=True)
def _bn_backward_sums_k(partials, sums, dgamma, dbeta):
    """``dbeta = sum(dout)``, ``dgamma = sum(dout * x_hat)`` per channel; one thread per channel."""
    c = cuda.grid(1)
    if c < sums.shape[1]:
        sum_d = 0.0
        sum_dx = 0.0
        for z in range(partials.shape[2]):
            sum_d += partials[0, c, z]
            sum_dx += partials[1, c, z]
        sums[0, c] = sum_d
        sums[1, c] = sum_dx
        dbeta[c] = sum_d
        dgamma[c] = sum_dx


@cuda.jit(cache=True)
def _bn_backward_dx_k(dout, x_hat, inv_std, gamma, sums, m, dx):
    """``dx = gamma*inv_std/m * (m*dout - sum(dout) - x_hat*sum(dout*x_hat))``, one element per thread.

    Launch: ``grid_1d(dout.size)`` (blocks of 256 threads), memory order (coalesced). Limit: bandwidth.
    """
    n, c, p = dout.shape
    for e in range(cuda.grid(1), dout.size, cuda.gridsize(1)):
        q = e % p
        t = e // p
        ch = t % c
        img = t // c
        scale = gamma[ch] * inv_std[ch] / m
        dx[img, ch, q] = scale * (m * dout[img, ch, q] - sums[0, ch] - x_hat[img, ch, q] * sums[1, ch])


def batchnorm_backward(dout, x_hat, inv_std, gamma, dgamma, dbeta, out=None):
    """Batch normalisation backward; see ``numpy_ref.batchnorm_backward``.

    One pass for both sums (``_channel_partials_k`` mode 2), a finishing kernel, then ``_bn_backward_dx_k``.
    """
    dout, x_hat, inv_std, gamma = _dev(dout), _dev(x_hat), _dev(inv_std), _dev(gamma)
    if out is None:
        out = empty(dout.shape, dout.dtype)
    check_out(out, dout.shape, dout.dtype, "batchnorm_backward out")
    dout3, x_hat3 = _as_ncp(dout), _as_ncp(x_hat)
    n, c, p = dout3.shape
    sums = _launch.scratch("bn_sums", 2 * c, np.float64).reshape(2, c)
    partials = _channel_partials(dout3, _SUM_AND_PRODUCT, y3=x_hat3)
    _launch.launch(_bn_backward_sums_k, *grid_1d(c), partials, sums, dgamma, dbeta)
    _launch.launch(_bn_backward_dx_k, *grid_1d(dout.size), dout3, x_hat3, inv_std, gamma, sums,
                   n * p, _as_ncp(out))
    return out


# ----------------------------------------------------------------------------- loss

@cuda.jit(cache=True)
def _softmax_xent_forward_k(logits, labels, probs, stats):
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
        for j in range(k):
            total += math.exp(logits[row, j] - top)
        log_total = math.log(total)
        for j in range(k):
            probs[row, j] = math.exp(logits[row, j] - top - log_total)
        label = labels[row]
        loss -= logits[row, label] - top - log_total
        if arg == label:
            correct += 1.0
    total_loss, total_correct = _block_sum2(loss, correct)
    if tid == 0:
        stats[0] = total_loss
        stats[1] = total_correct


def softmax_xent_forward(logits, labels, probs=None, stats=None):
    """Softmax and summed cross-entropy with log-sum-exp; see ``numpy_ref.softmax_xent_forward``.

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
    _launch.launch(_softmax_xent_forward_k, 1, threads, logits, labels, probs, stats)
    return probs, stats


@cuda.jit(cache=True)
def _softmax_xent_backward_k(probs, labels, dlogits):
    """``dlogits[r, j] = (probs[r, j] - (j == labels[r])) / N``; one element per thread, grid-stride."""
    n, k = probs.shape
    for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        r = e // k
        j = e - r * k
        hit = 1.0 if j == labels[r] else 0.0
        dlogits[r, j] = (probs[r, j] - hit) / n


def softmax_xent_backward(probs, labels, out=None):
    """``(probs - onehot) / N``; see ``numpy_ref.softmax_xent_backward``. Launch: ``grid_1d(N*K)``."""
    probs, labels = _dev(probs), _dev(labels)
    if out is None:
        out = empty(probs.shape, probs.dtype)
    check_out(out, probs.shape, probs.dtype, "softmax_xent_backward out")
    _launch.launch(_softmax_xent_backward_k, *grid_1d(out.size), probs, labels, out)
    return out


# ----------------------------------------------------------------------------- optimizers

@cuda.jit(cache=True)
def _adam_k(param, grad, m, v, lr, beta1, beta2, eps, c1, c2, weight_decay):
    """One Adam update per element (Kingma & Ba, 2015, Algorithm 1), scalars in float64.

    Launch: ``grid_1d(size)`` (blocks of 256 threads), grid-stride, coalesced. Limit:
    memory bandwidth (4 arrays read, 3 written).
    """
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i] + weight_decay * param[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        param[i] -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0):
    """One Adam update in place; see ``numpy_ref.adam_step``. Bias corrections computed on the host."""
    c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    if param.size:
        _launch.launch(_adam_k, *grid_1d(param.size), _flat(param), _flat(_dev(grad)), _flat(m),
                       _flat(v), float(lr), float(beta1), float(beta2), float(eps), c1, c2,
                       float(weight_decay))


@cuda.jit(cache=True)
def _sgd_k(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """One SGD (momentum, Nesterov) update per element; grid-stride, ``grid_1d(size)``."""
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i] + weight_decay * param[i]
        velocity[i] = momentum * velocity[i] + g
        if nesterov:
            param[i] -= lr * (g + momentum * velocity[i])
        else:
            param[i] -= lr * velocity[i]


def sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
    """One SGD (momentum, Nesterov) update in place; see ``numpy_ref.sgd_step``."""
    if param.size:
        _launch.launch(_sgd_k, *grid_1d(param.size), _flat(param), _flat(_dev(grad)),
                       _flat(velocity), float(lr), float(momentum), bool(nesterov), float(weight_decay))
