"""Batch normalisation, parallel over channels; see ``kernels.numpy_ref.norm``."""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from kernels.numpy_ref.norm import batchnorm_backward_affine, batchnorm_batch_affine, batchnorm_inference_affine

__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_batch_affine", "batchnorm_inference_affine",
           "batchnorm_backward_affine"]
# The three *_affine functions are the reference's: a few host operations on (C,) vectors,
# where compiling would gain nothing and change the rounding.


@njit(parallel=True, cache=True)
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


@njit(parallel=True, cache=True)
def _batchnorm_backward_core(dout, x_hat, inv_std, gamma, dgamma, dbeta, dx, training):
    n, c, p = dout.shape
    m = n * p
    for ch in prange(c):
        sum_d, sum_dx = 0.0, 0.0
        for img in range(n):
            for q in range(p):
                sum_d += dout[img, ch, q]
                sum_dx += dout[img, ch, q] * x_hat[img, ch, q]
        dbeta[ch], dgamma[ch] = sum_d, sum_dx
        if training:
            scale = gamma[ch] * inv_std[ch] / m
            for img in range(n):
                for q in range(p):
                    dx[img, ch, q] = scale * (m * dout[img, ch, q] - sum_d - x_hat[img, ch, q] * sum_dx)
        else:  # the statistics were constants: a per-channel scale
            scale = gamma[ch] * inv_std[ch]
            for img in range(n):
                for q in range(p):
                    dx[img, ch, q] = scale * dout[img, ch, q]


def batchnorm_backward(dout, x_hat, inv_std, gamma, dgamma, dbeta, out=None, training=True):
    """Batch normalisation backward; see ``numpy_ref.batchnorm_backward``."""
    if out is None:
        out = np.empty_like(dout)
    _batchnorm_backward_core(_as_ncp(dout), _as_ncp(x_hat), inv_std, gamma, dgamma, dbeta,
                             _as_ncp(out), bool(training))
    return out
