"""Numba CPU kernels: the reference's loops compiled with ``@njit(parallel=True, cache=True)``.

Same names, arguments and results as ``kernels.numpy_ref`` (read that file for
what each kernel computes). Each public function checks shapes and allocates
outputs in Python, then calls a compiled ``_core`` that loops over the data once.

How the work is split: ``prange`` hands each thread whole, independent units
(an image plane, a row of columns, a channel) so that no two threads ever
write the same element and no atomics or locks are needed; sums are
accumulated in float64 in a fixed order, so results do not depend on the
number of threads. The matrix products are BLAS through NumPy (``gemm``), which
is already multi-threaded and near the machine's peak.

Compiled code is cached on disk (``cache=True``): the first run in a fresh
checkout compiles each kernel once per dtype; later runs load it.
"""
from __future__ import annotations

import math
import os

# How long an idle OpenMP thread spins before it sleeps. Spinning makes the next kernel start
# at once; sleeping leaves the cores to other work. Measured here, training images/s of the
# default network (2 cores, median of interleaved runs), alone / beside two busy processes:
# libgomp's default 300,000 spins 5,758 / 924; 100,000: 5,660 / 1,232; 10,000: 5,472 / 1,770;
# 0 (OMP_WAIT_POLICY=PASSIVE): about 4,300 / 2,017. 10,000 keeps 95% of the speed alone and
# most of it on a busy machine. It must be set before Numba starts its OpenMP pool (at the
# first parallel call); the user's own settings win.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numba
import numpy as np
from numba import njit, prange

from kernels import _blas, _hash
from kernels._api import KERNELS, check_nchw, check_out, conv_output_size, gemm_shape
# Allocation and transfer are the reference's own.
from kernels.numpy_ref import asarray, empty, synchronize, to_numpy, zeros

name = "cpu"

__all__ = list(KERNELS)  # the contract, kernels/_api.py

_PAR = dict(parallel=True, cache=True)
_splitmix64 = njit(cache=True, inline="always")(_hash.splitmix64)


@njit(cache=True, inline="always")
def _uniform(key, i):
    # _hash.uniform, with the compiled splitmix64.
    return np.float32(_splitmix64(key + np.uint64(i)) >> _hash._S40) * _hash._TWO_POW_M24


@njit(cache=True, inline="always")
def _valid_range(out_size, size, offset, stride, padding):
    """Output positions o whose input position o*stride + offset - padding lies in [0, size)."""
    lo = min(out_size, max(0, (padding - offset + stride - 1) // stride))
    hi = max(lo, min(out_size, (size - 1 + padding - offset) // stride + 1))
    return lo, hi


# ----------------------------------------------------------------------------- convolution

def gemm(a, b, trans_a=False, trans_b=False, out=None):
    """``out = op(a) @ op(b)``; see ``numpy_ref.gemm``.

    BLAS does the arithmetic, but on Numba's threads: the output is cut into one
    block per thread and each block is a single-threaded BLAS call (``kernels._blas``).
    """
    m, _, n = gemm_shape(a.shape, b.shape, trans_a, trans_b)
    if out is None:
        out = np.empty((m, n), a.dtype)
    check_out(out, (m, n), a.dtype, "gemm out")
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    address = _blas.SGEMM if a.dtype == np.float32 else _blas.DGEMM
    _blas.gemm(a, b, bool(trans_a), bool(trans_b), out, numba.get_num_threads(), address)
    return out


@njit(**_PAR)
def _im2col_core(x, kh, kw, stride, padding, h_out, w_out, cols):
    n, c, h, w = x.shape
    p = h_out * w_out
    # One task per input plane (n, c): the plane stays in L1 while its kh*kw rows are written.
    for task in prange(n * c):
        img, ch = task // c, task % c
        plane = x[img, ch]
        for i in range(kh):
            for j in range(kw):
                row = cols[(ch * kh + i) * kw + j, img * p:(img + 1) * p]
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


@njit(**_PAR)
def _col2im_core(cols, kh, kw, stride, padding, h_out, w_out, dx):
    n, c, h, w = dx.shape
    p = h_out * w_out
    # One task per image plane (n, c): only this task writes dx[n, c], so += needs no atomics.
    for task in prange(n * c):
        img, ch = task // c, task % c
        plane = dx[img, ch]
        plane[:, :] = 0
        for i in range(kh):
            for j in range(kw):
                row = cols[(ch * kh + i) * kw + j, img * p:(img + 1) * p]
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


@njit(**_PAR)
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


@njit(**_PAR)
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


@njit(**_PAR)
def _bias_add_core(y, b):
    n, f = y.shape
    for row in prange(n):
        for col in range(f):
            y[row, col] += b[col]


def bias_add(y, b):
    """Dense bias, in place: ``y[n, f] += b[f]`` for y (N, F), b (F,)."""
    _bias_add_core(y, b)
    return y


@njit(**_PAR)
def _bias_grad_core(dout, db):
    n, f = dout.shape
    for col in prange(f):
        total = 0.0
        for row in range(n):
            total += dout[row, col]
        db[col] = total


def bias_grad(dout, out=None):
    """Dense bias gradient ``db[f] = sum_n dout[n, f]``: (N, F) -> (F,)."""
    if out is None:
        out = np.empty(dout.shape[1], dout.dtype)
    _bias_grad_core(dout, out)
    return out


# ----------------------------------------------------------------------------- activations

@njit(**_PAR)
def _relu_forward_core(x, out):
    for i in prange(x.size):
        out[i] = max(x[i], 0)


def relu_forward(x, out=None):
    """``max(x, 0)`` element-wise, any shape; see ``numpy_ref.relu_forward``."""
    if out is None:
        out = np.empty_like(x)
    _relu_forward_core(x.reshape(-1), out.reshape(-1))
    return out


@njit(**_PAR)
def _relu_backward_core(dout, y, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] if y[i] > 0 else 0


def relu_backward(dout, y, out=None):
    """``dout * (y > 0)``; see ``numpy_ref.relu_backward``."""
    if out is None:
        out = np.empty_like(dout)
    _relu_backward_core(dout.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


# ----------------------------------------------------------------------------- max-pooling
# One pair of cores serves both plain max-pooling (NCHW input) and the fused
# Conv-ReLU-Pool block (channel-major GEMM output): an input "plane" is one
# (image, channel) map of h*w pixels, found at row img*C + ch of the NCHW
# input viewed as (N*C, h*w), or at row ch*N + img of the GEMM output viewed as
# (C*N, h*w).

@njit(cache=True, inline="always")
def _plane_index(img, ch, n, c, channel_major):
    return ch * n + img if channel_major else img * c + ch


@njit(**_PAR)
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


@njit(**_PAR)
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


@njit(**_PAR)
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


def relu_pool_backward_cm(dout, argmax, out, h, w, kernel_size, stride, dy=None, db=None):
    """Gradient of the fused block into channel-major ``dy`` and ``db``; see ``numpy_ref.relu_pool_backward_cm``.

    Parallel over channels; each thread owns one row of ``dy``.
    """
    n, c = dout.shape[:2]
    if dy is None:
        dy = np.empty((c, n * h * w), dout.dtype)
    if db is None:
        db = np.empty(c, dout.dtype)
    check_out(dy, (c, n * h * w), dout.dtype, "relu_pool_backward_cm dy")
    _pool_backward_core(dout, argmax, out, True, h, w, kernel_size, stride, True,
                        dy.reshape(c * n, h * w), db)
    return dy, db


# ----------------------------------------------------------------------------- dropout

@njit(**_PAR)
def _dropout_forward_core(x, p, scale, key, out, mask):
    for i in prange(x.size):
        m = scale if _uniform(key, i) >= p else 0.0
        mask[i] = m
        out[i] = x[i] * m


def dropout_forward(x, p, seed, counter, out=None, mask=None):
    """Inverted dropout with a counter-based mask; see ``numpy_ref.dropout_forward``."""
    if out is None:
        out = np.empty_like(x)
    if mask is None:
        mask = np.empty_like(x)
    with np.errstate(over="ignore"):
        key = _hash.stream_key(seed, counter)
    # p as float32, the precision of the uniform draws, as in the reference.
    _dropout_forward_core(x.reshape(-1), np.float32(p), 1.0 / (1.0 - p), key, out.reshape(-1),
                          mask.reshape(-1))
    return out, mask


@njit(**_PAR)
def _multiply_core(a, b, out):
    for i in prange(a.size):
        out[i] = a[i] * b[i]


def dropout_backward(dout, mask, out=None):
    """``dout * mask``; see ``numpy_ref.dropout_backward``."""
    if out is None:
        out = np.empty_like(dout)
    _multiply_core(dout.reshape(-1), mask.reshape(-1), out.reshape(-1))
    return out


# ----------------------------------------------------------------------------- batch norm

@njit(**_PAR)
def _batchnorm_forward_core(x, gamma, beta, running_mean, running_var, momentum, eps,
                            training, out, x_hat, inv_std):
    n, c, p = x.shape
    m = n * p
    for ch in prange(c):
        if training:
            total = 0.0
            for img in range(n):
                for q in range(p):
                    total += x[img, ch, q]
            mean = total / m
            sq = 0.0
            for img in range(n):
                for q in range(p):
                    d = x[img, ch, q] - mean
                    sq += d * d
            var = sq / m
            running_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * mean
            running_var[ch] = (1 - momentum) * running_var[ch] + momentum * var * m / max(m - 1, 1)
        else:
            mean, var = running_mean[ch], running_var[ch]
        s = 1.0 / math.sqrt(var + eps)
        inv_std[ch] = s
        g, b = gamma[ch], beta[ch]
        for img in range(n):
            for q in range(p):
                xh = (x[img, ch, q] - mean) * s
                x_hat[img, ch, q] = xh
                out[img, ch, q] = g * xh + b


def _as_ncp(a):
    """View (N, C, H, W) or (N, C) as (N, C, P) so one kernel serves both."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training,
                      out=None, x_hat=None, inv_std=None):
    """Batch normalisation forward; see ``numpy_ref.batchnorm_forward``. Parallel over channels."""
    if out is None:
        out = np.empty_like(x)
    if x_hat is None:
        x_hat = np.empty_like(x)
    if inv_std is None:
        inv_std = np.empty(x.shape[1], x.dtype)
    _batchnorm_forward_core(_as_ncp(x), gamma, beta, running_mean, running_var, float(momentum),
                            float(eps), bool(training), _as_ncp(out), _as_ncp(x_hat), inv_std)
    return out, x_hat, inv_std


@njit(**_PAR)
def _batchnorm_backward_core(dout, x_hat, inv_std, gamma, dgamma, dbeta, dx):
    n, c, p = dout.shape
    m = n * p
    for ch in prange(c):
        sum_d, sum_dx = 0.0, 0.0
        for img in range(n):
            for q in range(p):
                sum_d += dout[img, ch, q]
                sum_dx += dout[img, ch, q] * x_hat[img, ch, q]
        dbeta[ch], dgamma[ch] = sum_d, sum_dx
        scale = gamma[ch] * inv_std[ch] / m
        for img in range(n):
            for q in range(p):
                dx[img, ch, q] = scale * (m * dout[img, ch, q] - sum_d - x_hat[img, ch, q] * sum_dx)


def batchnorm_backward(dout, x_hat, inv_std, gamma, dgamma, dbeta, out=None):
    """Batch normalisation backward; see ``numpy_ref.batchnorm_backward``."""
    if out is None:
        out = np.empty_like(dout)
    _batchnorm_backward_core(_as_ncp(dout), _as_ncp(x_hat), inv_std, gamma, dgamma, dbeta,
                             _as_ncp(out))
    return out


# ----------------------------------------------------------------------------- loss

@njit(cache=True)
def _softmax_xent_forward_core(logits, labels, probs, stats):
    # Serial: a batch of logits is tiny (N x 10), threads would cost more than they save.
    n, k = logits.shape
    loss, correct = 0.0, 0
    for row in range(n):
        top, arg = logits[row, 0], 0
        for j in range(1, k):
            if logits[row, j] > top:
                top, arg = logits[row, j], j
        total = 0.0
        for j in range(k):
            total += math.exp(logits[row, j] - top)
        log_total = math.log(total)
        for j in range(k):
            probs[row, j] = math.exp(logits[row, j] - top - log_total)
        loss -= logits[row, labels[row]] - top - log_total
        correct += arg == labels[row]
    stats[0] = loss
    stats[1] = correct


def softmax_xent_forward(logits, labels, probs=None, stats=None):
    """Softmax and summed cross-entropy with log-sum-exp; see ``numpy_ref.softmax_xent_forward``."""
    if probs is None:
        probs = np.empty_like(logits)
    if stats is None:
        stats = np.empty(2, np.float64)
    _softmax_xent_forward_core(logits, labels, probs, stats)
    return probs, stats


@njit(cache=True)
def _softmax_xent_backward_core(probs, labels, dlogits):
    n, k = probs.shape
    for row in range(n):
        for j in range(k):
            dlogits[row, j] = (probs[row, j] - (j == labels[row])) / n


def softmax_xent_backward(probs, labels, out=None):
    """``(probs - onehot) / N``; see ``numpy_ref.softmax_xent_backward``."""
    if out is None:
        out = np.empty_like(probs)
    _softmax_xent_backward_core(probs, labels, out)
    return out


# ----------------------------------------------------------------------------- optimizers

@njit(**_PAR)
def _adam_core(param, grad, m, v, lr, beta1, beta2, eps, c1, c2, weight_decay):
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        param[i] -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0):
    """One Adam update in place (Kingma & Ba, 2015, Algorithm 1); see ``numpy_ref.adam_step``."""
    c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    _adam_core(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), float(lr),
               float(beta1), float(beta2), float(eps), c1, c2, float(weight_decay))


@njit(**_PAR)
def _sgd_core(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        velocity[i] = momentum * velocity[i] + g
        param[i] -= lr * (g + momentum * velocity[i] if nesterov else velocity[i])


def sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
    """One SGD (momentum, Nesterov) update in place; see ``numpy_ref.sgd_step``."""
    _sgd_core(param.reshape(-1), grad.reshape(-1), velocity.reshape(-1), float(lr),
              float(momentum), bool(nesterov), float(weight_decay))
