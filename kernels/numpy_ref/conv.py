"""Convolution as im2col + GEMM: unfolding windows into columns, folding them back, the bias.

``im2col`` turns every window of the input into a column so that a convolution
is one matrix product (``gemm``, in ``gemm.py``); ``col2im`` is its adjoint, for
the gradient; ``bias_add_nchw``/``bias_grad_nchw`` move between the GEMM's
channel-major output and NCHW.
"""
from __future__ import annotations

import numpy as np

from kernels.api import check_nchw, check_out, conv_output_size

__all__ = ["im2col", "col2im", "bias_add_nchw", "bias_grad_nchw"]


def _window(a, i, j, stride, h_out, w_out):
    """View of ``a[..., i + stride*oh, j + stride*ow]`` for all output positions (oh, ow)."""
    return a[..., i:i + stride * h_out:stride, j:j + stride * w_out:stride]


def im2col(x, kh, kw, stride=1, padding=0, out=None):
    """Unfold every ``kh x kw`` window of ``x`` into a column, so convolution is one GEMM.

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (N, C, H, W)
    kh, kw : int
        Kernel height and width (pixels).
    stride, padding : int
        Step between windows and zero padding on each border (pixels).
    out : ndarray, optional
        Where to write the result, shape (C*kh*kw, N*H_out*W_out), same dtype as ``x``.

    Returns
    -------
    cols : ndarray, shape (C*kh*kw, N*H_out*W_out)
        Row ``(c*kh + i)*kw + j`` holds pixel ``(oh*stride + i - padding,
        ow*stride + j - padding)`` of channel ``c`` for each output position,
        columns ordered ``(n, oh, ow)``; ``H_out = (H + 2*padding - kh)//stride + 1``.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D, the window does not fit, or ``out`` has the wrong shape/dtype.

    References
    ----------
    Chellapilla, Puri & Simard (2006), "High Performance Convolutional Neural
    Networks for Document Processing", Section 3.

    Examples
    --------
    >>> im2col(np.zeros((2, 1, 5, 5), np.float32), 3, 3).shape
    (9, 18)
    """
    n, c, h, w = check_nchw(x)
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    if out is None:
        out = np.empty((c * kh * kw, n * h_out * w_out), x.dtype)
    check_out(out, (c * kh * kw, n * h_out * w_out), x.dtype, "im2col out")
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    rows = out.reshape(c, kh, kw, n, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            # Offset (i, j) of every window at once: one strided slice per offset.
            rows[:, i, j] = _window(x_padded, i, j, stride, h_out, w_out).transpose(1, 0, 2, 3)
    return out


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, out=None):
    """Fold columns back onto the image, summing where windows overlap (adjoint of im2col).

    Parameters
    ----------
    cols : ndarray, shape (C*kh*kw, N*H_out*W_out)
        Gradient with respect to the columns, in ``im2col``'s layout.
    x_shape : tuple (N, C, H, W)
        Shape of the image the columns came from.
    kh, kw, stride, padding : int
        As for ``im2col`` (pixels).
    out : ndarray, optional, shape ``x_shape``, dtype of ``cols``

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
        ``dx[n, c, h, w]`` is the sum of every column entry that read pixel (h, w).

    Raises
    ------
    ValueError
        If ``cols`` does not have the shape ``im2col`` gives for ``x_shape``.

    Notes
    -----
    Within one offset ``(i, j)`` the strided slice visits each pixel at most once,
    so ``+=`` on the slice is exact; overlapping windows are summed across offsets.
    No ``np.add.at`` is needed.
    """
    n, c, h, w = (int(s) for s in x_shape)
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    check_out(cols, (c * kh * kw, n * h_out * w_out), cols.dtype, "col2im cols")
    x_padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), cols.dtype)
    rows = cols.reshape(c, kh, kw, n, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            _window(x_padded, i, j, stride, h_out, w_out)[...] += rows[:, i, j].transpose(1, 0, 2, 3)
    dx = x_padded[:, :, padding:padding + h, padding:padding + w]
    if out is None:
        return np.ascontiguousarray(dx)
    check_out(out, (n, c, h, w), cols.dtype, "col2im out")
    out[...] = dx
    return out


def bias_add_nchw(y, b, n, out=None):
    """Add a per-channel bias to a convolution's GEMM output and reorder it to NCHW.

    Parameters
    ----------
    y : ndarray, shape (C, N*P)
        ``W_cols @ cols``, channel-major, ``P = H_out*W_out`` positions per image.
    b : ndarray, shape (C,)
    n : int
        Batch size N.
    out : ndarray, optional, shape (N, C, P)

    Returns
    -------
    out : ndarray, shape (N, C, P), ``out[n, c, p] = y[c, n*P + p] + b[c]``.
    """
    c = y.shape[0]
    p = y.shape[1] // n
    if out is None:
        out = np.empty((n, c, p), y.dtype)
    check_out(out, (n, c, p), y.dtype, "bias_add_nchw out")
    np.add(y.reshape(c, n, p).transpose(1, 0, 2), b[None, :, None], out=out)
    return out


def bias_grad_nchw(dout, db=None, dout_cm=None):
    """Per-channel bias gradient of an NCHW gradient, and the gradient reordered for GEMM.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H, W)
        Gradient of the loss with respect to a convolution's output.
    db : ndarray, optional, shape (C,)
    dout_cm : ndarray, optional, shape (C, N*H*W)

    Returns
    -------
    db : ndarray, shape (C,), ``db[c] = sum over n, h, w of dout[n, c, h, w]``
    dout_cm : ndarray, shape (C, N*H*W), ``dout`` channel-major, as ``gemm`` needs it
        for ``dW = dout_cm @ cols.T`` and ``dcols = W_cols.T @ dout_cm``.
    """
    n, c, h, w = check_nchw(dout, "dout")
    if db is None:
        db = np.empty(c, dout.dtype)
    if dout_cm is None:
        dout_cm = np.empty((c, n * h * w), dout.dtype)
    check_out(db, (c,), dout.dtype, "bias_grad_nchw db")
    check_out(dout_cm, (c, n * h * w), dout.dtype, "bias_grad_nchw dout_cm")
    dout_cm.reshape(c, n, h, w)[...] = dout.transpose(1, 0, 2, 3)
    db[...] = dout_cm.sum(axis=1)
    return db, dout_cm
