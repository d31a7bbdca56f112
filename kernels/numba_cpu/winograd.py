"""Winograd convolution F(m x m, 3 x 3) compiled with Numba for the CPU.

Same names, arguments and results as ``kernels.numpy_ref.winograd`` (read that file for
the algorithm, the transform matrices and the layouts). How the work is split:
the transforms loop over independent (image, channel) planes in a ``prange``, each
thread writing only its own planes' tiles (the input-gradient overlap-add stays
inside one plane, so it needs no atomics); the element-wise stage is ``alpha^2``
independent GEMMs, one single-threaded BLAS call each, handed out to Numba's
threads (as ``kernels.numba_cpu.blas.gemm`` does for one product).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.numba_cpu import blas as _blas
from kernels.api import check_nchw, check_out
from kernels.numpy_ref.winograd import tile_counts, transforms

__all__ = ["winograd_filter_transform", "winograd_input_transform", "batched_gemm",
           "winograd_output_transform", "winograd_output_adjoint", "winograd_input_adjoint",
           "winograd_filter_adjoint"]

_PAR = dict(parallel=True, cache=True)
_N, _T = ord("N"), ord("T")


@njit(cache=True, inline="always")
def _sandwich(left, tile, right_t, tmp, res):
    """``res = left @ tile @ right_t.T`` for small dense matrices (the tile transforms)."""
    a, k = left.shape
    b = tile.shape[1]
    for i in range(a):
        for j in range(b):
            s = 0.0
            for t in range(k):
                s += left[i, t] * tile[t, j]
            tmp[i, j] = s
    c = right_t.shape[0]
    for i in range(a):
        for j in range(c):
            s = 0.0
            for t in range(b):
                s += tmp[i, t] * right_t[j, t]
            res[i, j] = s


@njit(**_PAR)
def _filter_transform_core(w, g, out):
    c_out, c_in = w.shape[0], w.shape[1]
    alpha = g.shape[0]
    for o in prange(c_out):
        for c in range(c_in):
            for a in range(alpha):
                for b in range(alpha):
                    s = 0.0
                    for i in range(3):
                        for j in range(3):
                            s += g[a, i] * w[o, c, i, j] * g[b, j]
                    out[a * alpha + b, o, c] = s


def winograd_filter_transform(w, m, out=None):
    """``U = G g G^T``; see ``numpy_ref.winograd.winograd_filter_transform``."""
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"Winograd needs 3x3 filters (C_out, C_in, 3, 3), got shape {tuple(w.shape)}")
    _, g, _ = transforms(m, w.dtype)
    shape = ((m + 2) ** 2,) + tuple(w.shape[:2])
    if out is None:
        out = np.empty(shape, w.dtype)
    check_out(out, shape, w.dtype, "winograd_filter_transform out")
    _filter_transform_core(np.ascontiguousarray(w), g, out)
    return out


@njit(**_PAR)
def _input_transform_core(x, bt, m, padding, th, tw, out):
    # One tile row at a time: B^T is applied down the columns of the alpha input rows for
    # the whole row of tiles at once, then along each tile's columns, looping over tiles
    # innermost so that reads and writes run along contiguous memory (vectorisable).
    n, c, h, w = x.shape
    alpha = bt.shape[0]
    wp = tw * m + 2
    for plane in prange(n * c):
        img, ch = plane // c, plane % c
        rows = np.zeros((alpha, wp), x.dtype)
        t1 = np.empty((alpha, wp), x.dtype)
        for i in range(th):
            r0 = i * m - padding
            for a in range(alpha):
                r = r0 + a
                for col in range(wp):
                    cc = col - padding
                    rows[a, col] = x[img, ch, r, cc] if 0 <= r < h and 0 <= cc < w else 0.0
            for a in range(alpha):
                t1[a, :] = 0.0
                for t in range(alpha):
                    coef = bt[a, t]
                    if coef != 0.0:
                        for col in range(wp):
                            t1[a, col] += coef * rows[t, col]
            p0 = (img * th + i) * tw
            for a in range(alpha):
                for b in range(alpha):
                    dst = out[a * alpha + b, ch, p0:p0 + tw]
                    dst[:] = 0.0
                    for t in range(alpha):
                        coef = bt[b, t]
                        if coef != 0.0:
                            for j in range(tw):
                                dst[j] += coef * t1[a, j * m + t]


def winograd_input_transform(x, m, padding, out=None):
    """``V = B^T d B`` per input tile; see ``numpy_ref.winograd.winograd_input_transform``."""
    n, c, h, w = check_nchw(x)
    if h + 2 * padding < 3 or w + 2 * padding < 3:
        raise ValueError(f"a 3x3 filter with padding {padding} does not fit a {h}x{w} input")
    bt, _, _ = transforms(m, x.dtype)
    th, tw = tile_counts(h + 2 * padding - 2, w + 2 * padding - 2, m)
    shape = ((m + 2) ** 2, c, n * th * tw)
    if out is None:
        out = np.empty(shape, x.dtype)
    check_out(out, shape, x.dtype, "winograd_input_transform out")
    _input_transform_core(x, bt, m, padding, th, tw, out)
    return out


@njit(**_PAR)
def _batched_gemm_core(a, b, trans_a, trans_b, out, address):
    batch, m, n = out.shape
    k = a.shape[1] if trans_a else a.shape[2]
    size = out.itemsize
    flags = np.empty(2, np.uint8)  # column-major view: C^T = op(b)^T op(a)^T (see kernels._blas)
    flags[0], flags[1] = _T if trans_b else _N, _T if trans_a else _N
    fixed = np.empty(6, np.int32)  # n', m', k', lda', ldb', ldc'
    fixed[0], fixed[1], fixed[2], fixed[3], fixed[4], fixed[5] = n, m, k, b.shape[2], a.shape[2], n
    scalars = np.empty(2, out.dtype)
    scalars[0], scalars[1] = 1.0, 0.0
    a_step, b_step, c_step = a.shape[1] * a.shape[2] * size, b.shape[1] * b.shape[2] * size, m * n * size
    for t in prange(batch):
        _blas._call13(address, flags.ctypes.data, flags.ctypes.data + 1, fixed.ctypes.data,
                      fixed.ctypes.data + 4, fixed.ctypes.data + 8, scalars.ctypes.data,
                      b.ctypes.data + t * b_step, fixed.ctypes.data + 12, a.ctypes.data + t * a_step,
                      fixed.ctypes.data + 16, scalars.ctypes.data + size, out.ctypes.data + t * c_step,
                      fixed.ctypes.data + 20)


def batched_gemm(a, b, trans_a=False, trans_b=False, out=None):
    """``out[k] = op(a[k]) @ op(b[k])``, one single-threaded BLAS call per k; see ``numpy_ref.winograd.batched_gemm``."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(f"batched_gemm needs (B, ., .) operands with the same B, got {a.shape} and {b.shape}")
    m, k = (a.shape[2], a.shape[1]) if trans_a else (a.shape[1], a.shape[2])
    k2, n = (b.shape[2], b.shape[1]) if trans_b else (b.shape[1], b.shape[2])
    if k != k2:
        raise ValueError(f"batched_gemm: inner dimensions differ: op(a) {(m, k)}, op(b) {(k2, n)}")
    shape = (a.shape[0], m, n)
    if out is None:
        out = np.empty(shape, a.dtype)
    check_out(out, shape, a.dtype, "batched_gemm out")
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    address = _blas.gemm_address(a.dtype)
    _batched_gemm_core(a, b, bool(trans_a), bool(trans_b), out, address)
    return out


@njit(**_PAR)
def _output_transform_core(mt, bias, at, th, tw, out):
    # Per tile row: A along each tile's columns (tiles innermost, contiguous in M), then
    # A^T down the rows for the whole row of tiles at once.
    n, c_out, h_out, w_out = out.shape
    m, alpha = at.shape
    for plane in prange(n * c_out):
        img, o = plane // c_out, plane % c_out
        t1 = np.empty((alpha, tw * m), out.dtype)
        res = np.empty((m, tw * m), out.dtype)
        for i in range(th):
            p0 = (img * th + i) * tw
            for a in range(alpha):
                for bo in range(m):
                    for j in range(tw):
                        t1[a, j * m + bo] = 0.0
                    for b in range(alpha):
                        coef = at[bo, b]
                        if coef != 0.0:
                            src = mt[a * alpha + b, o, p0:p0 + tw]
                            for j in range(tw):
                                t1[a, j * m + bo] += coef * src[j]
            for ao in range(m):
                res[ao, :] = bias[o]
                for a in range(alpha):
                    coef = at[ao, a]
                    if coef != 0.0:
                        for col in range(tw * m):
                            res[ao, col] += coef * t1[a, col]
            for ao in range(min(m, h_out - i * m)):
                for col in range(w_out):
                    out[img, o, i * m + ao, col] = res[ao, col]


def winograd_output_transform(mt, bias, n, h_out, w_out, m, out=None):
    """``Y = A^T M A`` per tile plus the bias; see ``numpy_ref.winograd.winograd_output_transform``."""
    _, _, at = transforms(m, mt.dtype)
    th, tw = tile_counts(h_out, w_out, m)
    c_out = mt.shape[1]
    if mt.shape != ((m + 2) ** 2, c_out, n * th * tw):
        raise ValueError(f"winograd_output_transform: M has shape {mt.shape}, expected "
                         f"{((m + 2) ** 2, c_out, n * th * tw)} for N={n}, {h_out}x{w_out} outputs, m={m}")
    if out is None:
        out = np.empty((n, c_out, h_out, w_out), mt.dtype)
    check_out(out, (n, c_out, h_out, w_out), mt.dtype, "winograd_output_transform out")
    _output_transform_core(mt, bias, at, th, tw, out)
    return out


@njit(**_PAR)
def _output_adjoint_core(dout, at, th, tw, out, db):
    # dM = A dY A^T per tile: A down the rows of a whole row of tiles, then along each
    # tile's columns with tiles innermost (contiguous writes).
    n, c_out, h_out, w_out = dout.shape
    m, alpha = at.shape
    for plane in prange(n * c_out):
        img, o = plane // c_out, plane % c_out
        rows = np.zeros((m, tw * m), dout.dtype)
        t1 = np.empty((alpha, tw * m), dout.dtype)
        for i in range(th):
            for ao in range(m):
                r = i * m + ao
                for col in range(tw * m):
                    rows[ao, col] = dout[img, o, r, col] if r < h_out and col < w_out else 0.0
            for a in range(alpha):
                t1[a, :] = 0.0
                for ao in range(m):
                    coef = at[ao, a]
                    if coef != 0.0:
                        for col in range(tw * m):
                            t1[a, col] += coef * rows[ao, col]
            p0 = (img * th + i) * tw
            for a in range(alpha):
                for b in range(alpha):
                    dst = out[a * alpha + b, o, p0:p0 + tw]
                    dst[:] = 0.0
                    for bo in range(m):
                        coef = at[bo, b]
                        if coef != 0.0:
                            for j in range(tw):
                                dst[j] += coef * t1[a, j * m + bo]
    for o in prange(c_out):
        s = 0.0
        for img in range(n):
            for r in range(h_out):
                for col in range(w_out):
                    s += dout[img, o, r, col]
        db[o] = s


def winograd_output_adjoint(dout, m, out=None, db=None):
    """``dM = A dY A^T`` per tile and the bias gradient; see ``numpy_ref.winograd.winograd_output_adjoint``."""
    n, c_out, h_out, w_out = check_nchw(dout, "dout")
    _, _, at = transforms(m, dout.dtype)
    th, tw = tile_counts(h_out, w_out, m)
    shape = ((m + 2) ** 2, c_out, n * th * tw)
    if out is None:
        out = np.empty(shape, dout.dtype)
    if db is None:
        db = np.empty(c_out, dout.dtype)
    check_out(out, shape, dout.dtype, "winograd_output_adjoint out")
    check_out(db, (c_out,), dout.dtype, "winograd_output_adjoint db")
    _output_adjoint_core(dout, at, th, tw, out, db)
    return out, db


@njit(**_PAR)
def _input_adjoint_core(dv, bt, m, padding, th, tw, out):
    # dd = B dV B^T per tile, overlap-added: B along each tile's columns into one row buffer
    # (neighbouring tiles share 2 columns, hence +=), then B down the rows, added into dx.
    n, c, h, w = out.shape
    alpha = bt.shape[0]
    wp = tw * m + 2
    for plane in prange(n * c):
        img, ch = plane // c, plane % c
        out[img, ch] = 0.0
        t1 = np.empty((alpha, wp), dv.dtype)
        rows = np.empty((alpha, wp), dv.dtype)
        for i in range(th):
            p0 = (img * th + i) * tw
            t1[:, :] = 0.0
            for a in range(alpha):
                for b in range(alpha):
                    src = dv[a * alpha + b, ch, p0:p0 + tw]
                    for t in range(alpha):
                        coef = bt[b, t]
                        if coef != 0.0:
                            for j in range(tw):
                                t1[a, j * m + t] += coef * src[j]
            for t in range(alpha):
                rows[t, :] = 0.0
                for a in range(alpha):
                    coef = bt[a, t]
                    if coef != 0.0:
                        for col in range(wp):
                            rows[t, col] += coef * t1[a, col]
            r0 = i * m - padding
            for t in range(alpha):
                r = r0 + t
                if 0 <= r < h:
                    for col in range(max(0, padding), min(wp, w + padding)):
                        out[img, ch, r, col - padding] += rows[t, col]


def winograd_input_adjoint(dv, x_shape, m, padding, out=None):
    """``dd = B dV B^T`` per tile, overlap-added into dx; see ``numpy_ref.winograd.winograd_input_adjoint``."""
    n, c, h, w = (int(s) for s in x_shape)
    bt, _, _ = transforms(m, dv.dtype)
    th, tw = tile_counts(h + 2 * padding - 2, w + 2 * padding - 2, m)
    if dv.shape != ((m + 2) ** 2, c, n * th * tw):
        raise ValueError(f"winograd_input_adjoint: dV has shape {dv.shape}, expected {((m + 2) ** 2, c, n * th * tw)}")
    if out is None:
        out = np.empty((n, c, h, w), dv.dtype)
    check_out(out, (n, c, h, w), dv.dtype, "winograd_input_adjoint out")
    _input_adjoint_core(dv, bt, m, padding, th, tw, out)
    return out


@njit(**_PAR)
def _filter_adjoint_core(du, g, out):
    alpha = g.shape[0]
    c_out, c_in = du.shape[1], du.shape[2]
    g_t = g.T.copy()  # dW = G^T dU G
    for o in prange(c_out):
        tile = np.empty((alpha, alpha), du.dtype)
        tmp = np.empty((3, alpha), du.dtype)
        for c in range(c_in):
            for a in range(alpha):
                for b in range(alpha):
                    tile[a, b] = du[a * alpha + b, o, c]
            _sandwich(g_t, tile, g_t, tmp, out[o, c])


def winograd_filter_adjoint(du, m, out=None):
    """``dW = G^T dU G``; see ``numpy_ref.winograd.winograd_filter_adjoint``."""
    _, g, _ = transforms(m, du.dtype)
    c_out, c_in = du.shape[1:]
    if out is None:
        out = np.empty((c_out, c_in, 3, 3), du.dtype)
    check_out(out, (c_out, c_in, 3, 3), du.dtype, "winograd_filter_adjoint out")
    _filter_adjoint_core(du, g, out)
    return out
