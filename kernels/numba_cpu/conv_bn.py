"""Conv2D -> BatchNorm -> ReLU (-> MaxPool2D) on Numba's threads; see ``kernels.numpy_ref.conv_bn``.

The convolution runs one image at a time: each thread unfolds one image into
its own columns (``C*kh*kw x H_out*W_out``, under a megabyte for vgg-small, so
it stays in the core's L2 cache), multiplies them by the weights with one
single-threaded BLAS call that writes the image's NCHW output directly, and
applies the epilogue (scale, shift, ReLU, statistics) while that output is
still in cache. The batched im2col + GEMM (``conv``, ``gemm``) instead writes
a column matrix of the whole batch (58 MB for vgg-small's second layer), which
is read back from main memory, and the GEMM's channel-major output needs
another pass to become NCHW.

Backward, per image as well: ``dz`` is made from ``g`` and ``z`` by the BN
backward's per-channel linear map into a per-thread buffer, the image is
unfolded again (cheaper than keeping the batch's columns), and two BLAS calls
give its share of the weight gradient and its input-gradient columns, folded
back at once (col2im). The weight gradient is summed over ``CHUNKS`` fixed runs
of images, each run's partial sum in its own buffer, then over the runs in
order: the result does not depend on the number of threads.

Work buffers (columns, ``dz``, BLAS arguments) are kept per calling Python thread
(``threading.local``), one set per shape and dtype, so that a training step
allocates nothing and two threads serving two models never share one.
"""
from __future__ import annotations

import threading

import numba
import numpy as np
from numba import njit, prange

from kernels.api import check_nchw, check_out, conv_output_size
from kernels.numba_cpu import blas

__all__ = ["conv2d_forward", "conv2d_backward", "bn_relu_forward", "bn_relu_backward", "bn_relu_pool_forward",
           "bn_relu_pool_backward", "CHUNKS"]

CHUNKS = 8  # runs of images with their own weight-gradient partial sum (fixed: thread-count independent)

_local = threading.local()


def _scratch(name, shape, dtype):
    """A work array of this thread, made on first use and reused (contents undefined)."""
    arrays = _local.__dict__.setdefault("arrays", {})
    key = (name, tuple(shape), np.dtype(dtype).str)
    if key not in arrays:
        arrays[key] = np.empty(shape, dtype)
    return arrays[key]


def _blas_scratch(dtype):
    """Per-Numba-thread BLAS argument arrays: int32 (T, 8) and scalars (T, 2)."""
    threads = numba.config.NUMBA_NUM_THREADS  # get_thread_id() is below this
    return _scratch("args", (threads, 8), np.int32), _scratch("scalars", (threads, 2), dtype)


def _padded(x, padding):
    """Per-Numba-thread zero-padded copies of one image: (T, C, H + 2*padding, W + 2*padding + 1).

    One spare column, so that a strided row view starting at any column is never empty."""
    n, c, h, w = x.shape
    return _scratch("padded", (numba.config.NUMBA_NUM_THREADS, c, h + 2 * padding, w + 2 * padding + 1), x.dtype)


def _address(dtype):
    blas.single_threaded()
    return blas.SGEMM if dtype == np.float32 else blas.DGEMM


@njit(cache=True, inline="always")
def _unfold_image(image, padded, kh, kw, stride, padding, h_out, w_out, cols):
    """im2col of one (C, H, W) image into ``cols`` (C*kh*kw, H_out*W_out), through a zero-padded copy.

    With the padding in memory every row of ``cols`` is a plain strided copy, with
    no bounds to test, and the copy loop vectorises.
    """
    c, h, w = image.shape
    padded[:, :, :] = 0
    for ch in range(c):
        for r in range(h):
            dst, src = padded[ch, r + padding, padding:], image[ch, r]
            for q in range(w):
                dst[q] = src[q]
    for ch in range(c):
        for i in range(kh):
            for j in range(kw):
                row = cols[(ch * kh + i) * kw + j]
                for oh in range(h_out):
                    src, dst = padded[ch, oh * stride + i, j:], row[oh * w_out:]
                    if stride == 1:
                        for ow in range(w_out):
                            dst[ow] = src[ow]
                    else:
                        for ow in range(w_out):
                            dst[ow] = src[ow * stride]


@njit(cache=True, inline="always")
def _fold_image(cols, padded, kh, kw, stride, padding, h_out, w_out, image):
    """col2im of one image: the columns summed into a zero-padded plane stack, whose inside is ``image``."""
    c, h, w = image.shape
    padded[:, :, :] = 0
    for ch in range(c):
        for i in range(kh):
            for j in range(kw):
                row = cols[(ch * kh + i) * kw + j]
                for oh in range(h_out):
                    src, dst = row[oh * w_out:], padded[ch, oh * stride + i, j:]
                    if stride == 1:
                        for ow in range(w_out):
                            dst[ow] += src[ow]
                    else:
                        for ow in range(w_out):
                            dst[ow * stride] += src[ow]
    for ch in range(c):
        for r in range(h):
            dst, src = image[ch, r], padded[ch, r + padding, padding:]
            for q in range(w):
                dst[q] = src[q]


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _forward_core(x, w2, scale, shift, relu, kh, kw, stride, padding, h_out, w_out, out, stats, cols_work,
                  pad_work, args, scalars, address):
    n, c = x.shape[0], x.shape[1]
    f, ckk = w2.shape
    p = h_out * w_out
    for img in prange(n):
        t = numba.get_thread_id()
        cols = cols_work[t]
        _unfold_image(x[img], pad_work[t], kh, kw, stride, padding, h_out, w_out, cols)
        y = out[img]
        blas.gemm_block(address, False, False, f, p, ckk, w2.ctypes.data, ckk, cols.ctypes.data, p,
                        y.ctypes.data, p, False, args[t], scalars[t])
        # The epilogue runs while the image's output is still in cache.
        zero = scale[0] - scale[0]  # 0 in the arrays' dtype, so v keeps it
        for ff in range(f):
            a, b = scale[ff], shift[ff]
            row = y[ff]
            total, squares = 0.0, 0.0
            for j in range(p):
                v = row[j] * a + b
                if relu and v < zero:
                    v = zero
                row[j] = v
                total += v
                squares += float(v) * v
            stats[img, 0, ff] = total
            stats[img, 1, ff] = squares


def conv2d_forward(x, w, scale, shift, relu, stride=1, padding=0, out=None, stats=None):
    """``act(scale * conv(x, w) + shift)`` in NCHW, and its per-channel sums; see ``numpy_ref.conv2d_forward``.

    Parallel over images, one im2col + BLAS call + epilogue per image (module docstring).
    """
    n, c, h, wd = check_nchw(x)
    f, c_w, kh, kw = w.shape
    if c_w != c:
        raise ValueError(f"conv2d_forward: w has {c_w} input channels, x has {c}")
    h_out, w_out = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
    if out is None:
        out = np.empty((n, f, h_out, w_out), x.dtype)
    check_out(out, (n, f, h_out, w_out), x.dtype, "conv2d_forward out")
    per_image = _scratch("stats", (n, 2, f), np.float64)
    threads = numba.config.NUMBA_NUM_THREADS
    cols = _scratch("cols", (threads, c * kh * kw, h_out * w_out), x.dtype)
    args, scalars = _blas_scratch(x.dtype)
    _forward_core(x, np.ascontiguousarray(w).reshape(f, -1), scale, shift, bool(relu), kh, kw, stride, padding,
                  h_out, w_out, out.reshape(n, f, h_out * w_out), per_image, cols, _padded(x, padding),
                  args, scalars, _address(x.dtype))
    if stats is not None:
        check_out(stats, (2, f), np.float64, "conv2d_forward stats")
        np.sum(per_image, axis=0, out=stats)
    return out, stats


@njit(parallel=True, cache=True)
def _backward_core(g, z, g_scale, z_scale, shift, x, w2, kh, kw, stride, padding, h_out, w_out, input_grad,
                   dw_part, dx, cols_work, pad_work, dz_work, args, scalars, address):
    n, c = x.shape[0], x.shape[1]
    f, ckk = w2.shape
    p = h_out * w_out
    chunks = dw_part.shape[0]
    for chunk in prange(chunks):
        t = numba.get_thread_id()
        cols, dz, partial = cols_work[t], dz_work[t], dw_part[chunk]
        lo, hi = chunk * n // chunks, (chunk + 1) * n // chunks
        if lo == hi:
            partial[:, :] = 0
        for img in range(lo, hi):
            for ff in range(f):
                a, b, d = g_scale[ff], z_scale[ff], shift[ff]
                g_row, z_row, dz_row = g[img, ff], z[img, ff], dz[ff]
                for j in range(p):
                    dz_row[j] = a * g_row[j] + b * z_row[j] + d
            _unfold_image(x[img], pad_work[t], kh, kw, stride, padding, h_out, w_out, cols)
            # This run's weight gradient (+)= dz @ cols^T
            blas.gemm_block(address, False, True, f, ckk, p, dz.ctypes.data, p, cols.ctypes.data, p,
                            partial.ctypes.data, ckk, img > lo, args[t], scalars[t])
            if input_grad:
                # The columns are spent: they take w^T @ dz, folded back into this image's dx.
                blas.gemm_block(address, True, False, ckk, p, f, w2.ctypes.data, ckk, dz.ctypes.data, p,
                                cols.ctypes.data, p, False, args[t], scalars[t])
                _fold_image(cols, pad_work[t], kh, kw, stride, padding, h_out, w_out, dx[img])


def conv2d_backward(g, z, g_scale, z_scale, shift, x, w, stride=1, padding=0, input_grad=True, dw=None,
                    dx=None):
    """dw and dx of a convolution with ``dz = g_scale*g + z_scale*z + shift``; see ``numpy_ref.conv2d_backward``.

    Parallel over ``CHUNKS`` runs of images (module docstring).
    """
    n, c, h, wd = check_nchw(x)
    f, _, kh, kw = w.shape
    h_out, w_out = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
    check_out(g, (n, f, h_out, w_out), x.dtype, "conv2d_backward g")
    check_out(z, (n, f, h_out, w_out), x.dtype, "conv2d_backward z")
    if dw is None:
        dw = np.empty(w.shape, x.dtype)
    check_out(dw, w.shape, x.dtype, "conv2d_backward dw")
    if input_grad:
        if dx is None:
            dx = np.empty(x.shape, x.dtype)
        check_out(dx, x.shape, x.dtype, "conv2d_backward dx")
    threads, p, ckk = numba.config.NUMBA_NUM_THREADS, h_out * w_out, c * kh * kw
    chunks = min(CHUNKS, n)
    dw_part = _scratch("dw_part", (chunks, f, ckk), x.dtype)
    args, scalars = _blas_scratch(x.dtype)
    _backward_core(g.reshape(n, f, p), z.reshape(n, f, p), g_scale, z_scale, shift, x,
                   np.ascontiguousarray(w).reshape(f, -1), kh, kw, stride, padding, h_out, w_out, bool(input_grad),
                   dw_part, dx if input_grad else x[:0], _scratch("cols", (threads, ckk, p), x.dtype),
                   _padded(x, padding), _scratch("dz", (threads, f, p), x.dtype), args, scalars, _address(x.dtype))
    np.sum(dw_part, axis=0, out=dw.reshape(f, ckk))
    return dw, (dx if input_grad else None)


@njit(parallel=True, cache=True)
def _bn_relu_core(z, scale, shift, out):
    n, c, p = z.shape
    zero = scale[0] - scale[0]
    for task in prange(n * c):
        img, ch = task // c, task % c
        a, b = scale[ch], shift[ch]
        src, dst = z[img, ch], out[img, ch]
        for j in range(p):
            dst[j] = max(src[j] * a + b, zero)


def bn_relu_forward(z, scale, shift, out=None):
    """``relu(scale * z + shift)`` per channel; see ``numpy_ref.bn_relu_forward``. Parallel over planes."""
    n, c, h, w = check_nchw(z, "z")
    if out is None:
        out = np.empty_like(z)
    check_out(out, z.shape, z.dtype, "bn_relu_forward out")
    _bn_relu_core(z.reshape(n, c, h * w), scale, shift, out.reshape(n, c, h * w))
    return out


@njit(parallel=True, cache=True)
def _bn_relu_pool_core(z, scale, shift, k, stride, out, argmax):
    n, c, h_out, w_out = out.shape
    zero = scale[0] - scale[0]
    for task in prange(n * c):
        img, ch = task // c, task % c
        a, b = scale[ch], shift[ch]
        plane = z[img, ch]
        if k == 2 and stride == 2:  # the usual window: constant offsets let the loop vectorise
            for oh in range(h_out):
                top, below = plane[2 * oh], plane[2 * oh + 1]
                dst, arg_row = out[img, ch, oh], argmax[img, ch, oh]
                for ow in range(w_out):
                    best, arg = top[2 * ow] * a + b, 0
                    v = top[2 * ow + 1] * a + b
                    if v > best:
                        best, arg = v, 1
                    v = below[2 * ow] * a + b
                    if v > best:
                        best, arg = v, 2
                    v = below[2 * ow + 1] * a + b
                    if v > best:
                        best, arg = v, 3
                    dst[ow] = max(best, zero)
                    arg_row[ow] = arg
            continue
        for oh in range(h_out):
            for ow in range(w_out):
                top, left = oh * stride, ow * stride
                best, arg = plane[top, left] * a + b, 0
                for i in range(k):
                    for j in range(k):
                        v = plane[top + i, left + j] * a + b
                        if v > best:  # strict: ties keep the first position, as maxpool_forward
                            best, arg = v, i * k + j
                out[img, ch, oh, ow] = max(best, zero)
                argmax[img, ch, oh, ow] = arg


def bn_relu_pool_forward(z, scale, shift, kernel_size, stride, out=None, argmax=None):
    """``maxpool(relu(scale * z + shift))`` and its int8 argmax; see ``numpy_ref.bn_relu_pool_forward``."""
    n, c, h, w = check_nchw(z, "z")
    h_out, w_out = conv_output_size(h, kernel_size, stride, 0), conv_output_size(w, kernel_size, stride, 0)
    if out is None:
        out = np.empty((n, c, h_out, w_out), z.dtype)
    if argmax is None:
        argmax = np.empty((n, c, h_out, w_out), np.int8)
    check_out(out, (n, c, h_out, w_out), z.dtype, "bn_relu_pool_forward out")
    check_out(argmax, (n, c, h_out, w_out), np.int8, "bn_relu_pool_forward argmax")
    _bn_relu_pool_core(z, scale, shift, kernel_size, stride, out, argmax)
    return out, argmax


# Reassociation lets the per-channel sums vectorise (several partial sums); the order is still fixed by
# the compiled code, not by the thread count.
@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _bn_relu_backward_core(dout, out, z, mean, inv_std, g, sums):
    n, c, p = z.shape
    # One task per channel: it owns the channel's sums, so no two threads add to one.
    for ch in prange(c):
        total, dot = 0.0, 0.0
        mu, s = float(mean[ch]), float(inv_std[ch])
        zero = dout[0, 0, 0] * 0
        for img in range(n):
            d, y, zz, gg = dout[img, ch], out[img, ch], z[img, ch], g[img, ch]
            for j in range(p):
                v = d[j] if y[j] > zero else zero
                gg[j] = v
                total += v
                dot += v * ((zz[j] - mu) * s)
        sums[0, ch] = total
        sums[1, ch] = dot


def bn_relu_backward(dout, out, z, mean, inv_std, g=None, sums=None):
    """Gradient through ReLU and BN's two sums; see ``numpy_ref.bn_relu_backward``. Parallel over channels."""
    n, c, h, w = check_nchw(z, "z")
    if g is None:
        g = np.empty_like(z)
    if sums is None:
        sums = np.empty((2, c), np.float64)
    check_out(g, z.shape, z.dtype, "bn_relu_backward g")
    check_out(sums, (2, c), np.float64, "bn_relu_backward sums")
    shape = (n, c, h * w)
    _bn_relu_backward_core(dout.reshape(shape), out.reshape(shape), z.reshape(shape), mean, inv_std,
                           g.reshape(shape), sums)
    return g, sums


@njit(parallel=True, cache=True)
def _bn_relu_pool_backward_core(dout, argmax, out, z, mean, inv_std, k, stride, g, sums):
    n, c, h_out, w_out = dout.shape
    for ch in prange(c):
        total, dot = 0.0, 0.0
        mu, s = float(mean[ch]), float(inv_std[ch])
        for img in range(n):
            plane, zz = g[img, ch], z[img, ch]
            plane[:, :] = 0
            for oh in range(h_out):
                for ow in range(w_out):
                    if out[img, ch, oh, ow] <= 0:
                        continue  # the ReLU was clipped: no gradient
                    v = dout[img, ch, oh, ow]
                    a = argmax[img, ch, oh, ow]
                    i, j = oh * stride + a // k, ow * stride + a % k
                    plane[i, j] += v
                    total += v
                    dot += v * ((zz[i, j] - mu) * s)
        sums[0, ch] = total
        sums[1, ch] = dot


def bn_relu_pool_backward(dout, argmax, out, z, mean, inv_std, kernel_size, stride, g=None, sums=None):
    """Gradient through ReLU and the pooling, and BN's two sums; see ``numpy_ref.bn_relu_pool_backward``."""
    n, c, h, w = check_nchw(z, "z")
    if g is None:
        g = np.empty_like(z)
    if sums is None:
        sums = np.empty((2, c), np.float64)
    check_out(g, z.shape, z.dtype, "bn_relu_pool_backward g")
    check_out(sums, (2, c), np.float64, "bn_relu_pool_backward sums")
    _bn_relu_pool_backward_core(dout, argmax, out, z, mean, inv_std, kernel_size, stride, g, sums)
    return g, sums
