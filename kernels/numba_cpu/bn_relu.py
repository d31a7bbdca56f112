"""BatchNorm (folded to a scale and shift per channel) with ReLU and max-pooling, forward and backward.

Part of the fused Conv-BN-ReLU block on Numba's threads (``conv_bn`` holds its
convolutions); see ``kernels.numpy_ref.conv_bn`` for what each kernel computes.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.api import check_nchw, check_out, conv_output_size

__all__ = ["bn_relu_forward", "bn_relu_backward", "bn_relu_pool_forward", "bn_relu_pool_backward",
           "bn_add_relu_forward", "bn_backward_sums"]


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


def _gradient_outputs(z, g, sums, what):
    """``g`` (shape of ``z``) and ``sums`` (float64, (2, C)): the caller's, checked, or new."""
    c = check_nchw(z, "z")[1]
    g = np.empty_like(z) if g is None else g
    sums = np.empty((2, c), np.float64) if sums is None else sums
    check_out(g, z.shape, z.dtype, f"{what} g")
    check_out(sums, (2, c), np.float64, f"{what} sums")
    return g, sums


def bn_relu_backward(dout, out, z, mean, inv_std, g=None, sums=None):
    """Gradient through ReLU and BN's two sums; see ``numpy_ref.bn_relu_backward``. Parallel over channels."""
    g, sums = _gradient_outputs(z, g, sums, "bn_relu_backward")
    n, c, h, w = z.shape
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
    g, sums = _gradient_outputs(z, g, sums, "bn_relu_pool_backward")
    _bn_relu_pool_backward_core(dout, argmax, out, z, mean, inv_std, kernel_size, stride, g, sums)
    return g, sums


@njit(parallel=True, cache=True)
def _bn_add_relu_core(z, scale, shift, r, r_scale, r_shift, out):
    n, c, p = z.shape
    zero = scale[0] - scale[0]
    for task in prange(n * c):
        img, ch = task // c, task % c
        a, b, ra, rb = scale[ch], shift[ch], r_scale[ch], r_shift[ch]
        src, res, dst = z[img, ch], r[img, ch], out[img, ch]
        for j in range(p):
            dst[j] = max((src[j] * a + b) + (res[j] * ra + rb), zero)


def bn_add_relu_forward(z, scale, shift, residual, residual_scale, residual_shift, out=None):
    """``relu(scale*z + shift + residual_scale*residual + residual_shift)``; see
    ``numpy_ref.bn_add_relu_forward``. Parallel over planes."""
    n, c, h, w = check_nchw(z, "z")
    check_out(residual, z.shape, z.dtype, "bn_add_relu_forward residual")
    if out is None:
        out = np.empty_like(z)
    check_out(out, z.shape, z.dtype, "bn_add_relu_forward out")
    shape = (n, c, h * w)
    _bn_add_relu_core(z.reshape(shape), scale, shift, residual.reshape(shape), residual_scale, residual_shift,
                      out.reshape(shape))
    return out


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _bn_sums_core(g, z, mean, inv_std, sums):
    n, c, p = z.shape
    for ch in prange(c):  # one task per channel owns its sums, as in _bn_relu_backward_core
        total, dot = 0.0, 0.0
        mu, s = float(mean[ch]), float(inv_std[ch])
        for img in range(n):
            gg, zz = g[img, ch], z[img, ch]
            for j in range(p):
                total += gg[j]
                dot += gg[j] * ((zz[j] - mu) * s)
        sums[0, ch] = total
        sums[1, ch] = dot


def bn_backward_sums(g, z, mean, inv_std, sums=None):
    """BN's two backward sums of a gradient that meets no ReLU; see ``numpy_ref.bn_backward_sums``.
    Parallel over channels."""
    n, c, h, w = check_nchw(z, "z")
    check_out(g, z.shape, z.dtype, "bn_backward_sums g")
    sums = np.empty((2, c), np.float64) if sums is None else sums
    check_out(sums, (2, c), np.float64, "bn_backward_sums sums")
    shape = (n, c, h * w)
    _bn_sums_core(g.reshape(shape), z.reshape(shape), mean, inv_std, sums)
    return sums
