"""im2col, col2im and the convolution bias on Numba's threads; see ``kernels.numpy_ref.conv``."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.api import check_nchw, check_out, conv_output_size

__all__ = ["im2col", "col2im", "bias_add_nchw", "bias_grad_nchw"]


@njit(cache=True, inline="always")
def _valid_range(out_size, size, offset, stride, padding):
    """Output positions o whose input position o*stride + offset - padding lies in [0, size)."""
    lo = min(out_size, max(0, (padding - offset + stride - 1) // stride))
    hi = max(lo, min(out_size, (size - 1 + padding - offset) // stride + 1))
    return lo, hi


@njit(cache=True, inline="always")
def unfold_plane(plane, kh, kw, stride, padding, h_out, w_out, cols, row0, col0):
    """im2col of one (H, W) input plane: rows ``row0 .. row0 + kh*kw`` of ``cols``, columns ``col0 ..``.

    One input plane's share of ``im2col``, so that each parallel task writes only its own rows.
    """
    h, w = plane.shape
    p = h_out * w_out
    for i in range(kh):
        for j in range(kw):
            row = cols[row0 + i * kw + j, col0:col0 + p]
            lo, hi = _valid_range(w_out, w, j, stride, padding)
            first = lo * stride + j - padding  # input column read by output column lo
            for oh in range(h_out):
                dst = row[oh * w_out:(oh + 1) * w_out]
                ih = oh * stride + i - padding
                if ih < 0 or ih >= h:
                    dst[:] = 0
                    continue
                dst[:lo] = 0
                dst[hi:] = 0
                # Slices start at 0, so the copy loop has no negative index and vectorises.
                # (One assignment per view: a tuple of views made this kernel 50% slower.)
                src = plane[ih, first:]
                inner = dst[lo:hi]
                if stride == 1:
                    for q in range(hi - lo):
                        inner[q] = src[q]
                else:
                    for q in range(hi - lo):
                        inner[q] = src[q * stride]


@njit(parallel=True, cache=True)
def _im2col_core(x, kh, kw, stride, padding, h_out, w_out, cols):
    n, c, h, w = x.shape
    p = h_out * w_out
    # One task per input plane (n, c): the plane stays in L1 while its kh*kw rows are written.
    for task in prange(n * c):
        img, ch = task // c, task % c
        unfold_plane(x[img, ch], kh, kw, stride, padding, h_out, w_out, cols, ch * kh * kw, img * p)


def im2col(x, kh, kw, stride=1, padding=0, out=None):
    """Unfold windows into columns (C*kh*kw, N*H_out*W_out); see ``numpy_ref.im2col``.

    Parallel over input planes (n, c); each task writes its own kh*kw row segments.
    """
    n, c, h, w = check_nchw(x)
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    if out is None:
        out = np.empty((c * kh * kw, n * h_out * w_out), x.dtype)
    check_out(out, (c * kh * kw, n * h_out * w_out), x.dtype, "im2col out")
    _im2col_core(x, kh, kw, stride, padding, h_out, w_out, out)
    return out


@njit(cache=True, inline="always")
def fold_plane(cols, kh, kw, stride, padding, h_out, w_out, plane, row0, col0):
    """col2im of one (H, W) plane: zero it, then add rows ``row0 .. row0 + kh*kw`` of ``cols`` (columns ``col0 ..``)."""
    h, w = plane.shape
    p = h_out * w_out
    plane[:, :] = 0
    for i in range(kh):
        for j in range(kw):
            row = cols[row0 + i * kw + j, col0:col0 + p]
            lo, hi = _valid_range(w_out, w, j, stride, padding)
            first = lo * stride + j - padding
            for oh in range(h_out):
                ih = oh * stride + i - padding
                if ih < 0 or ih >= h:
                    continue
                src = row[oh * w_out + lo:oh * w_out + hi]
                dst = plane[ih, first:]
                if stride == 1:
                    for q in range(hi - lo):
                        dst[q] += src[q]
                else:
                    for q in range(hi - lo):
                        dst[q * stride] += src[q]


@njit(parallel=True, cache=True)
def _col2im_core(cols, kh, kw, stride, padding, h_out, w_out, dx):
    n, c, h, w = dx.shape
    p = h_out * w_out
    # One task per image plane (n, c): only this task writes dx[n, c], so += needs no atomics.
    for task in prange(n * c):
        img, ch = task // c, task % c
        fold_plane(cols, kh, kw, stride, padding, h_out, w_out, dx[img, ch], ch * kh * kw, img * p)


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, out=None):
    """Fold columns back to (N, C, H, W), summing overlaps; see ``numpy_ref.col2im``.

    Parallel over image planes (n, c), each owned by one thread.
    """
    n, c, h, w = (int(s) for s in x_shape)
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    check_out(cols, (c * kh * kw, n * h_out * w_out), cols.dtype, "col2im cols")
    if out is None:
        out = np.empty((n, c, h, w), cols.dtype)
    check_out(out, (n, c, h, w), cols.dtype, "col2im out")
    _col2im_core(cols, kh, kw, stride, padding, h_out, w_out, out)
    return out


@njit(parallel=True, cache=True)
def _bias_add_nchw_core(y, b, out):
    n, c, p = out.shape
    for task in prange(n * c):
        img, ch = task // c, task % c
        bias, src = b[ch], img * p
        for q in range(p):
            out[img, ch, q] = y[ch, src + q] + bias


def bias_add_nchw(y, b, n, out=None):
    """(C, N*P) GEMM output + bias -> (N, C, P); see ``numpy_ref.bias_add_nchw``."""
    c = y.shape[0]
    p = y.shape[1] // n
    if out is None:
        out = np.empty((n, c, p), y.dtype)
    check_out(out, (n, c, p), y.dtype, "bias_add_nchw out")
    _bias_add_nchw_core(y, b, out)
    return out


@njit(parallel=True, cache=True)
def _bias_grad_nchw_core(dout, db, dout_cm):
    n, c, p = dout.shape
    for ch in prange(c):
        total = 0.0
        for img in range(n):
            for q in range(p):
                v = dout[img, ch, q]
                dout_cm[ch, img * p + q] = v
                total += v
        db[ch] = total


def bias_grad_nchw(dout, db=None, dout_cm=None):
    """Per-channel bias gradient and dout reordered to (C, N*H*W); see ``numpy_ref.bias_grad_nchw``."""
    n, c, h, w = check_nchw(dout, "dout")
    if db is None:
        db = np.empty(c, dout.dtype)
    if dout_cm is None:
        dout_cm = np.empty((c, n * h * w), dout.dtype)
    check_out(db, (c,), dout.dtype, "bias_grad_nchw db")
    check_out(dout_cm, (c, n * h * w), dout.dtype, "bias_grad_nchw dout_cm")
    _bias_grad_nchw_core(dout.reshape(n, c, h * w), db, dout_cm)
    return db, dout_cm
