"""Max-pooling, global average pooling and the fused Conv-ReLU-MaxPool block; see ``kernels.numpy_ref.pool``.

One pair of cores serves both plain max-pooling (NCHW input) and the fused
Conv-ReLU-Pool block (channel-major GEMM output): an input "plane" is one
(image, channel) map of h*w pixels, found at row img*C + ch of the NCHW
input viewed as (N*C, h*w), or at row ch*N + img of the GEMM output viewed as
(C*N, h*w).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.api import check_nchw, check_out, conv_output_size

__all__ = ["maxpool_forward", "maxpool_backward", "conv_relu_pool_forward", "conv_relu_pool_backward",
           "global_avgpool_forward", "global_avgpool_backward"]


@njit(cache=True, inline="always")
def _plane_index(img, ch, n, c, channel_major):
    return ch * n + img if channel_major else img * c + ch


@njit(parallel=True, cache=True)
def _pool_forward_core(planes, channel_major, bias, relu, h, w, k, stride, out, argmax):
    n, c, h_out, w_out = out.shape
    for task in prange(n * c):
        img, ch = task // c, task % c
        src = planes[_plane_index(img, ch, n, c, channel_major)]
        shift = bias[ch]
        for oh in range(h_out):
            top = src[oh * stride * w:]
            out_row = out[img, ch, oh]
            arg_row = argmax[img, ch, oh]
            for ow in range(w_out):
                corner = ow * stride
                best, arg = top[corner], 0
                for i in range(k):
                    for j in range(k):
                        v = top[i * w + corner + j]
                        if v > best:  # strict: ties keep the first position
                            best, arg = v, i * k + j
                out_row[ow] = max(best + shift, 0) if relu else best + shift
                arg_row[ow] = arg


@njit(parallel=True, cache=True)
def _pool_forward_core_2x2(planes, channel_major, bias, relu, h, w, out, argmax):
    # The same for the usual 2x2 window with stride 2; constant offsets let the loop vectorise (~4x).
    n, c, h_out, w_out = out.shape
    for task in prange(n * c):
        img, ch = task // c, task % c
        src = planes[_plane_index(img, ch, n, c, channel_major)]
        shift = bias[ch]
        for oh in range(h_out):
            top = src[2 * oh * w:]
            below = src[(2 * oh + 1) * w:]
            out_row = out[img, ch, oh]
            arg_row = argmax[img, ch, oh]
            for ow in range(w_out):
                best, arg = top[2 * ow], 0
                v = top[2 * ow + 1]
                if v > best:
                    best, arg = v, 1
                v = below[2 * ow]
                if v > best:
                    best, arg = v, 2
                v = below[2 * ow + 1]
                if v > best:
                    best, arg = v, 3
                out_row[ow] = max(best + shift, 0) if relu else best + shift
                arg_row[ow] = arg


def _pool_forward(planes, channel_major, bias, relu, n, c, h, w, k, stride, out, argmax, what):
    h_out, w_out = conv_output_size(h, k, stride, 0), conv_output_size(w, k, stride, 0)
    if out is None:
        out = np.empty((n, c, h_out, w_out), planes.dtype)
    if argmax is None:
        argmax = np.empty((n, c, h_out, w_out), np.int8)
    check_out(out, (n, c, h_out, w_out), planes.dtype, f"{what} out")
    check_out(argmax, (n, c, h_out, w_out), np.int8, f"{what} argmax")
    if k == 2 and stride == 2:
        _pool_forward_core_2x2(planes, channel_major, bias, relu, h, w, out, argmax)
    else:
        _pool_forward_core(planes, channel_major, bias, relu, h, w, k, stride, out, argmax)
    return out, argmax


def maxpool_forward(x, kernel_size, stride, out=None, argmax=None):
    """Window max and its int8 position; see ``numpy_ref.maxpool_forward``. Parallel over planes."""
    n, c, h, w = check_nchw(x)
    return _pool_forward(x.reshape(n * c, h * w), False, np.zeros(c, x.dtype), False, n, c, h, w,
                         kernel_size, stride, out, argmax, "maxpool_forward")


def conv_relu_pool_forward(y, b, n, h, w, kernel_size, stride, out=None, argmax=None):
    """maxpool(relu(y + b)) from channel-major GEMM output; see ``numpy_ref.conv_relu_pool_forward``.

    Parallel over (image, channel) planes: reads ``y`` once, writes only the pooled output.
    """
    c = y.shape[0]
    check_out(y, (c, n * h * w), y.dtype, "conv_relu_pool_forward y")
    return _pool_forward(y.reshape(c * n, h * w), True, b, True, n, c, h, w, kernel_size, stride,
                         out, argmax, "conv_relu_pool_forward")


@njit(parallel=True, cache=True)
def _pool_backward_core(dout, argmax, out, relu, h, w, k, stride, channel_major, planes, db):
    n, c, h_out, w_out = dout.shape
    # One task per channel: it owns that channel's planes of every image, and its db entry.
    for ch in prange(c):
        total = 0.0
        for img in range(n):
            dst = planes[_plane_index(img, ch, n, c, channel_major)]
            dst[:] = 0
            for oh in range(h_out):
                for ow in range(w_out):
                    if relu and out[img, ch, oh, ow] <= 0:
                        continue  # the ReLU was clipped: no gradient
                    g = dout[img, ch, oh, ow]
                    a = argmax[img, ch, oh, ow]
                    dst[(oh * stride + a // k) * w + ow * stride + a % k] += g
                    total += g
        db[ch] = total


def maxpool_backward(dout, argmax, x_shape, kernel_size, stride, out=None):
    """Route gradients to the window maxima; see ``numpy_ref.maxpool_backward``."""
    n, c, h, w = (int(s) for s in x_shape)
    if out is None:
        out = np.empty((n, c, h, w), dout.dtype)
    check_out(out, (n, c, h, w), dout.dtype, "maxpool_backward out")
    _pool_backward_core(dout, argmax, dout, False, h, w, kernel_size, stride, False,
                        out.reshape(n * c, h * w), np.empty(c, dout.dtype))
    return out


def conv_relu_pool_backward(dout, argmax, out, h, w, kernel_size, stride, dy=None, db=None):
    """Gradient of the fused block into channel-major ``dy`` and ``db``; see ``numpy_ref.conv_relu_pool_backward``.

    Parallel over channels; each thread owns one row of ``dy``.
    """
    n, c = dout.shape[:2]
    if dy is None:
        dy = np.empty((c, n * h * w), dout.dtype)
    if db is None:
        db = np.empty(c, dout.dtype)
    check_out(dy, (c, n * h * w), dout.dtype, "conv_relu_pool_backward dy")
    _pool_backward_core(dout, argmax, out, True, h, w, kernel_size, stride, True,
                        dy.reshape(c * n, h * w), db)
    return dy, db


@njit(parallel=True, cache=True)
def _global_avgpool_forward_core(planes, out):
    size = planes.shape[1]
    for p in prange(planes.shape[0]):
        total = 0.0  # float64, as the reference
        for q in range(size):
            total += planes[p, q]
        out[p] = total / size


def global_avgpool_forward(x, out=None):
    """The mean of each (image, channel) map, (N, C, H, W) -> (N, C); see ``numpy_ref.global_avgpool_forward``.

    Parallel over the N*C maps, each summed in float64.
    """
    n, c, h, w = check_nchw(x)
    if out is None:
        out = np.empty((n, c), x.dtype)
    check_out(out, (n, c), x.dtype, "global_avgpool_forward out")
    _global_avgpool_forward_core(np.ascontiguousarray(x).reshape(n * c, h * w), out.reshape(-1))
    return out


@njit(parallel=True, cache=True)
def _global_avgpool_backward_core(dout, size, planes):
    for p in prange(planes.shape[0]):
        g = dout[p] / size
        for q in range(planes.shape[1]):
            planes[p, q] = g


def global_avgpool_backward(dout, x_shape, out=None):
    """``dx[n, c, :, :] = dout[n, c] / (H*W)``; see ``numpy_ref.global_avgpool_backward``. Parallel over maps."""
    n, c, h, w = (int(s) for s in x_shape)
    if tuple(dout.shape) != (n, c):
        raise ValueError(f"global_avgpool_backward: dout must have shape {(n, c)}, got {tuple(dout.shape)}")
    if out is None:
        out = np.empty((n, c, h, w), dout.dtype)
    check_out(out, (n, c, h, w), dout.dtype, "global_avgpool_backward out")
    _global_avgpool_backward_core(np.ascontiguousarray(dout).reshape(-1), h * w, out.reshape(n * c, h * w))
    return out
