"""Max-pooling, global average pooling and the fused Conv-ReLU-MaxPool block as CUDA kernels.

See ``kernels.numpy_ref.pool``.

One pair of kernels serves plain max-pooling (NCHW input) and the fused
Conv-ReLU-Pool block (channel-major GEMM output). An input "plane" is one
(image, channel) map of h*w pixels: row img*C + ch of the NCHW input viewed as
(N*C, h*w), or row ch*N + img of the GEMM output viewed as (C*N, h*w).
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from kernels.api import check_nchw, check_out, conv_output_size
from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import grid_1d
from kernels.numba_cuda.memory import _dev, empty
from kernels.numba_cuda.reduce import _channel_sums

__all__ = ["maxpool_forward", "maxpool_backward", "conv_relu_pool_forward", "conv_relu_pool_backward",
           "global_avgpool_forward", "global_avgpool_backward"]


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


def conv_relu_pool_backward(dout, argmax, out, h, w, kernel_size, stride, dy=None, db=None):
    """Gradient of the fused block into channel-major ``dy`` and ``db``.

    See ``numpy_ref.conv_relu_pool_backward``.

    ``_pool_backward_k`` writes ``dy``; the bias gradient is the per-channel sum
    of ``dy`` (``_channel_partials_k`` on its (1, C, N*h*w) view, then ``_finish_sums_k``).
    """
    n, c = dout.shape[:2]
    dout, argmax, out = _dev(dout), _dev(argmax), _dev(out)
    if dy is None:
        dy = empty((c, n * h * w), dout.dtype)
    if db is None:
        db = empty(c, dout.dtype)
    check_out(dy, (c, n * h * w), dout.dtype, "conv_relu_pool_backward dy")
    check_out(db, (c,), dout.dtype, "conv_relu_pool_backward db")
    _launch.launch(_pool_backward_k, *grid_1d(dy.size), dout, argmax, out, True, int(h), int(w),
                   int(kernel_size), int(stride), True, dy.reshape(c * n, h * w))
    _channel_sums(dy.reshape(1, c, n * h * w), db)
    return dy, db


@cuda.jit(cache=True)
def _global_avgpool_forward_k(planes, out):
    """One thread per (image, channel) map: the mean of its row of ``planes`` (N*C, H*W), summed in float64.

    Launch: ``grid_1d(N*C)``, grid-stride. Limit: memory latency for small
    batches (a ResNet's last maps are 8x8 or 7x7, 49-64 values per thread).
    """
    size = planes.shape[1]
    for p in range(cuda.grid(1), planes.shape[0], cuda.gridsize(1)):
        total = 0.0
        for q in range(size):
            total += planes[p, q]
        out[p] = total / size


def global_avgpool_forward(x, out=None):
    """The mean of each (image, channel) map, (N, C, H, W) -> (N, C); see ``numpy_ref.global_avgpool_forward``.

    Launch: ``_global_avgpool_forward_k``.
    """
    n, c, h, w = check_nchw(x)
    x = _dev(x)
    if out is None:
        out = empty((n, c), x.dtype)
    check_out(out, (n, c), x.dtype, "global_avgpool_forward out")
    _launch.launch(_global_avgpool_forward_k, *grid_1d(n * c), x.reshape(n * c, h * w), out.reshape(-1))
    return out


@cuda.jit(cache=True)
def _global_avgpool_backward_k(dout, size, dx):
    """``dx[i] = dout[i // size] / size``: one thread per input pixel, grid-stride, ``grid_1d(dx.size)``.

    Coalesced writes; the reads of a warp fall on one or two values of ``dout``. Limit: bandwidth.
    """
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = dout[i // size] / size


def global_avgpool_backward(dout, x_shape, out=None):
    """``dx[n, c, :, :] = dout[n, c] / (H*W)``; see ``numpy_ref.global_avgpool_backward``.

    Launch: ``_global_avgpool_backward_k``.
    """
    n, c, h, w = (int(s) for s in x_shape)
    if tuple(dout.shape) != (n, c):
        raise ValueError(f"global_avgpool_backward: dout must have shape {(n, c)}, got {tuple(dout.shape)}")
    dout = _dev(dout)
    if out is None:
        out = empty((n, c, h, w), dout.dtype)
    check_out(out, (n, c, h, w), dout.dtype, "global_avgpool_backward out")
    _launch.launch(_global_avgpool_backward_k, *grid_1d(out.size), dout.reshape(-1), h * w, out.reshape(-1))
    return out
