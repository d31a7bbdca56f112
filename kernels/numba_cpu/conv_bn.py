"""Conv2D -> BatchNorm -> ReLU (-> MaxPool2D) on Numba's threads; see ``kernels.numpy_ref.conv_bn``.

The convolution runs one small group of images at a time: each thread unfolds
the group into its own columns (``C*kh*kw x B*H_out*W_out``, under a megabyte,
so it stays in the core's L2 cache), multiplies them by the weights with one
single-threaded BLAS call, and applies the epilogue (scale, shift, ReLU,
statistics) while the group's output is still in cache, writing it to NCHW.
For stride 1 the group is one image, laid out on the padded width (``unfold``);
other strides (resnet20's stride-2 and 1x1 projections) group as many images
as it takes to give the GEMM ``GROUP_COLUMNS`` columns (2 images whose output is
14x14, 8 at 7x7), where one image's 49 columns leave BLAS idle on call overhead.
The batched im2col + GEMM (``conv``, ``gemm``) instead writes a column matrix
of the whole batch (58 MB for vgg-small's second layer), which is read back
from main memory, and the GEMM's channel-major output needs another pass to
become NCHW.

Backward, per group as well: ``dz`` is made from ``g`` and ``z`` by the BN
backward's per-channel linear map into a per-thread buffer, the group is
unfolded again (cheaper than keeping the batch's columns), and two BLAS calls
give its share of the weight gradient and its input-gradient columns, folded
back at once (col2im). The weight gradient is summed over ``CHUNKS`` fixed runs
of images (a group never straddles two), each run's partial sum in its own
buffer, then over the runs in order: the result does not depend on the number
of threads.

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
from kernels.numba_cpu.unfold import fold_plane, fold_shifted, pad_image, unfold_plane, unfold_shifted, unpad_image

__all__ = ["conv2d_affine_forward", "conv2d_affine_backward", "CHUNKS", "GROUP_COLUMNS"]

CHUNKS = 8  # runs of images with their own weight-gradient partial sum (fixed: thread-count independent)
# GEMM columns a group of strided images aims for (benchmarks/README.md, "Residual networks: strided
# convolutions in groups of images").
GROUP_COLUMNS = 384

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


def _address(dtype):
    """The BLAS sgemm or dgemm that Numba's threads call (``blas``)."""
    return blas.gemm_address(dtype)


class _Geometry:
    """Sizes of one convolution: output, padded input, the output grid (``unfold``) and the work arrays."""

    def __init__(self, x, w, stride, padding):
        n, c, h, wd = check_nchw(x)
        f, c_w, kh, kw = w.shape
        if c_w != c:
            raise ValueError(f"conv2d: w has {c_w} input channels, x has {c}")
        self.n, self.c, self.f, self.kh, self.kw = n, c, f, kh, kw
        self.h_out, self.w_out = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
        self.hp, self.wp = h + 2 * padding, wd + 2 * padding
        # Stride 1 takes the shifted layout, one image per GEMM: its block-copy unfold beat grouping
        # images through unfold_plane at every resnet20 shape (per-row copies cost more than the GEMM saved).
        self.shifted = stride == 1
        self.grid_w = self.wp if self.shifted else self.w_out  # output grid width, junk columns included
        self.length = self.h_out * self.grid_w  # GEMM columns of one image
        self.group = 1 if self.shifted else max(1, min(n, -(-GROUP_COLUMNS // self.length)))
        width = self.group * self.length  # row stride of the columns and of the output grid
        threads = numba.config.NUMBA_NUM_THREADS  # get_thread_id() is below this
        self.padded = _scratch("padded", (threads, c, self.hp * self.wp + kw), x.dtype)
        self.cols = _scratch("cols", (threads, c * kh * kw, width), x.dtype)
        self.grid = _scratch("grid", (threads, f, width), x.dtype)
        self.args, self.scalars = _blas_scratch(x.dtype)
        self.address = _address(x.dtype)


@njit(cache=True, inline="always")
def _unfold(image, padding, stride, kh, kw, wp, h_out, w_out, length, shifted, padded, cols, col0):
    """One image's columns: shifted (alone in ``cols``), else from column ``col0`` on."""
    if shifted:
        pad_image(image, padding, wp, padded)
        unfold_shifted(padded, kh, kw, wp, length, cols)
    else:
        for ch in range(image.shape[0]):
            unfold_plane(image[ch], kh, kw, stride, padding, h_out, w_out, cols, ch * kh * kw, col0)


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _forward_core(x, w2, scale, shift, relu, kh, kw, stride, padding, wp, h_out, w_out, grid_w, shifted, out,
                  stats, residual, has_residual, group, pad_work, cols_work, grid_work, args, scalars, address):
    n = x.shape[0]
    f, ckk = w2.shape
    length = h_out * grid_w
    width = cols_work.shape[2]
    zero = scale[0] - scale[0]  # 0 in the arrays' dtype, so v keeps it
    for first_of in prange((n + group - 1) // group):
        t = numba.get_thread_id()
        cols, grid = cols_work[t], grid_work[t]
        first = first_of * group
        last = min(n, first + group)
        for img in range(first, last):
            _unfold(x[img], padding, stride, kh, kw, wp, h_out, w_out, length, shifted, pad_work[t], cols,
                    (img - first) * length)
        blas.gemm_block(address, False, False, f, (last - first) * length, ckk, w2.ctypes.data, ckk,
                        cols.ctypes.data, width, grid.ctypes.data, width, False, args[t], scalars[t])
        # The epilogue runs while the group's output is still in cache; it drops the grid's junk columns.
        for img in range(first, last):
            base = (img - first) * length
            for ff in range(f):
                a, b = scale[ff], shift[ff]
                total, squares = 0.0, 0.0
                for oh in range(h_out):
                    src, dst = grid[ff, base + oh * grid_w:], out[img, ff, oh]
                    res = residual[img, ff, oh] if has_residual else dst  # dst: any row, never read
                    for ow in range(w_out):
                        v = src[ow] * a + b
                        if has_residual:
                            v += res[ow]
                        if relu and v < zero:
                            v = zero
                        dst[ow] = v
                        total += v
                        squares += float(v) * v
                stats[img, 0, ff] = total
                stats[img, 1, ff] = squares


def conv2d_affine_forward(x, w, scale, shift, relu, stride=1, padding=0, out=None, stats=None, residual=None):
    """``act(scale * conv(x, w) + shift [+ residual])`` in NCHW, and its per-channel sums; see
    ``numpy_ref.conv2d_affine_forward``.

    Parallel over groups of images, one im2col + BLAS call + epilogue per group (module docstring).
    """
    geo = _Geometry(x, w, stride, padding)
    shape = (geo.n, geo.f, geo.h_out, geo.w_out)
    if out is None:
        out = np.empty(shape, x.dtype)
    check_out(out, shape, x.dtype, "conv2d_affine_forward out")
    if residual is not None:
        check_out(residual, shape, x.dtype, "conv2d_affine_forward residual")
    per_image = _scratch("stats", (geo.n, 2, geo.f), np.float64)
    _forward_core(x, np.ascontiguousarray(w).reshape(geo.f, -1), scale, shift, bool(relu), geo.kh, geo.kw, stride,
                  padding, geo.wp, geo.h_out, geo.w_out, geo.grid_w, geo.shifted, out, per_image,
                  out if residual is None else residual, residual is not None, geo.group, geo.padded, geo.cols,
                  geo.grid, geo.args, geo.scalars, geo.address)
    if stats is not None:
        check_out(stats, (2, geo.f), np.float64, "conv2d_affine_forward stats")
        np.sum(per_image, axis=0, out=stats)
    return out, stats


@njit(parallel=True, cache=True)
def _backward_core(g, z, g_scale, z_scale, shift, x, w2, kh, kw, stride, padding, wp, h_out, w_out, grid_w,
                   shifted, input_grad, dw_part, dx, group, pad_work, cols_work, grid_work, args, scalars, address):
    n = x.shape[0]
    f, ckk = w2.shape
    length = h_out * grid_w
    width = cols_work.shape[2]
    chunks = dw_part.shape[0]
    for chunk in prange(chunks):
        t = numba.get_thread_id()
        cols, dz, padded, partial = cols_work[t], grid_work[t], pad_work[t], dw_part[chunk]
        lo, hi = chunk * n // chunks, (chunk + 1) * n // chunks
        if lo == hi:
            partial[:, :] = 0
        for first in range(lo, hi, group):
            last = min(hi, first + group)
            for img in range(first, last):
                base = (img - first) * length
                for ff in range(f):
                    a, b, d = g_scale[ff], z_scale[ff], shift[ff]
                    for oh in range(h_out):
                        g_row, z_row = g[img, ff, oh], z[img, ff, oh]
                        dz_row = dz[ff, base + oh * grid_w:base + (oh + 1) * grid_w]
                        for ow in range(w_out):
                            dz_row[ow] = a * g_row[ow] + b * z_row[ow] + d
                        dz_row[w_out:] = 0  # the grid's junk columns: no gradient
                _unfold(x[img], padding, stride, kh, kw, wp, h_out, w_out, length, shifted, padded, cols, base)
            columns = (last - first) * length
            # This run's weight gradient (+)= dz @ cols^T
            blas.gemm_block(address, False, True, f, ckk, columns, dz.ctypes.data, width, cols.ctypes.data, width,
                            partial.ctypes.data, ckk, first > lo, args[t], scalars[t])
            if input_grad:
                # The columns are spent: they take w^T @ dz, folded back into each image's dx.
                blas.gemm_block(address, True, False, ckk, columns, f, w2.ctypes.data, ckk, dz.ctypes.data,
                                width, cols.ctypes.data, width, False, args[t], scalars[t])
                for img in range(first, last):
                    if shifted:
                        fold_shifted(cols, kh, kw, wp, length, padded)
                        unpad_image(padded, padding, wp, dx[img])
                    else:
                        for ch in range(x.shape[1]):
                            fold_plane(cols, kh, kw, stride, padding, h_out, w_out, dx[img, ch], ch * kh * kw,
                                       (img - first) * length)


def conv2d_affine_backward(g, z, g_scale, z_scale, shift, x, w, stride=1, padding=0, input_grad=True, dw=None,
                    dx=None):
    """dw and dx of a convolution with ``dz = g_scale*g + z_scale*z + shift``; see ``numpy_ref.conv2d_affine_backward``.

    Parallel over ``CHUNKS`` runs of images, each in groups (module docstring).
    """
    geo = _Geometry(x, w, stride, padding)
    shape = (geo.n, geo.f, geo.h_out, geo.w_out)
    check_out(g, shape, x.dtype, "conv2d_affine_backward g")
    check_out(z, shape, x.dtype, "conv2d_affine_backward z")
    if dw is None:
        dw = np.empty(w.shape, x.dtype)
    check_out(dw, w.shape, x.dtype, "conv2d_affine_backward dw")
    if input_grad:
        if dx is None:
            dx = np.empty(x.shape, x.dtype)
        check_out(dx, x.shape, x.dtype, "conv2d_affine_backward dx")
    ckk = geo.c * geo.kh * geo.kw
    dw_part = _scratch("dw_part", (min(CHUNKS, geo.n), geo.f, ckk), x.dtype)
    _backward_core(g, z, g_scale, z_scale, shift, x, np.ascontiguousarray(w).reshape(geo.f, -1), geo.kh, geo.kw,
                   stride, padding, geo.wp, geo.h_out, geo.w_out, geo.grid_w, geo.shifted, bool(input_grad),
                   dw_part, dx if input_grad else x[:0], geo.group, geo.padded, geo.cols, geo.grid, geo.args,
                   geo.scalars, geo.address)
    np.sum(dw_part, axis=0, out=dw.reshape(geo.f, ckk))
    return dw, (dx if input_grad else None)
