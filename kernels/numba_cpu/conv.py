"""im2col, col2im and the convolution bias on Numba's threads; see ``kernels.numpy_ref.conv``."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.api import check_nchw, check_out, conv_output_size
from kernels.numba_cpu.unfold import fold_plane, unfold_plane

__all__ = ["im2col", "col2im", "bias_add_nchw", "bias_grad_nchw"]


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
