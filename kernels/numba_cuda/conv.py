"""im2col, col2im and the convolution bias as CUDA kernels; see ``kernels.numpy_ref.conv``."""
from __future__ import annotations

from numba import cuda

from kernels.api import check_nchw, check_out, conv_output_size
from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import grid_1d
from kernels.numba_cuda.memory import _dev, empty
from kernels.numba_cuda.reduce import _channel_sums

__all__ = ["im2col", "col2im", "bias_add_nchw", "bias_grad_nchw"]


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
