"""Batch normalisation as CUDA kernels; see ``kernels.numpy_ref.norm``."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from kernels.api import check_out
from kernels.numba_cuda import launch as _launch
from kernels.numba_cuda.launch import grid_1d
from kernels.numba_cuda.memory import _dev, empty
from kernels.numba_cuda.reduce import _SQUARED_DEVIATION, _SUM, _SUM_AND_PRODUCT, _channel_partials

__all__ = ["batchnorm_forward", "batchnorm_backward"]


def _as_ncp(a):
    """View (N, C, H, W) or (N, C) as (N, C, P) so one kernel serves both."""
    return a.reshape(a.shape[0], a.shape[1], -1)


@cuda.jit(cache=True)
def _bn_mean_k(partials, m, stats):
    """``stats[0, c] = sum_z partials[0, c, z] / m`` in float64; one thread per channel."""
    c = cuda.grid(1)
    if c < stats.shape[1]:
        total = 0.0
        for z in range(partials.shape[2]):
            total += partials[0, c, z]
        stats[0, c] = total / m


@cuda.jit(cache=True)
def _bn_var_k(partials, m, momentum, eps, stats, running_mean, running_var, inv_std):
    """Batch variance from the squared-deviation partials; running statistics; ``1/sqrt(var + eps)``.

    ``running = (1 - momentum)*running + momentum*batch``, the variance unbiased
    by ``m/(m - 1)`` (as PyTorch). One thread per channel, ``grid_1d(C)``.
    """
    c = cuda.grid(1)
    if c < stats.shape[1]:
        total = 0.0
        for z in range(partials.shape[2]):
            total += partials[0, c, z]
        var = total / m
        mean = stats[0, c]
        running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean
        unbiased = var * m / (m - 1) if m > 1 else var
        running_var[c] = (1 - momentum) * running_var[c] + momentum * unbiased
        s = 1.0 / math.sqrt(var + eps)
        stats[1, c] = s
        inv_std[c] = s


@cuda.jit(cache=True)
def _bn_eval_stats_k(running_mean, running_var, eps, stats, inv_std):
    """Inference: mean and ``1/sqrt(var + eps)`` from the running statistics; one thread per channel."""
    c = cuda.grid(1)
    if c < stats.shape[1]:
        s = 1.0 / math.sqrt(running_var[c] + eps)
        stats[0, c] = running_mean[c]
        stats[1, c] = s
        inv_std[c] = s


@cuda.jit(cache=True)
def _bn_normalize_k(x, gamma, beta, stats, out, x_hat):
    """``x_hat = (x - mean[c]) * inv_std[c]``; ``out = gamma[c]*x_hat + beta[c]`` on (N, C, P).

    Launch: ``grid_1d(x.size)`` (blocks of 256 threads), one element each in memory
    order (coalesced). Limit: memory bandwidth.
    """
    n, c, p = x.shape
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        q = e % p
        t = e // p
        ch = t % c
        img = t // c
        xh = (x[img, ch, q] - stats[0, ch]) * stats[1, ch]
        x_hat[img, ch, q] = xh
        out[img, ch, q] = gamma[ch] * xh + beta[ch]


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training,
                      out=None, x_hat=None, inv_std=None):
    """Batch normalisation forward; see ``numpy_ref.batchnorm_forward`` (Ioffe & Szegedy, 2015, Alg. 1).

    Training: two passes over ``x`` for the mean and then the variance about it
    (``_channel_partials_k`` each; two-pass is exact where ``E[x^2] - E[x]^2``
    cancels), per-channel finishing kernels, then ``_bn_normalize_k``.
    """
    x, gamma, beta = _dev(x), _dev(gamma), _dev(beta)
    if out is None:
        out = empty(x.shape, x.dtype)
    if x_hat is None:
        x_hat = empty(x.shape, x.dtype)
    if inv_std is None:
        inv_std = empty(x.shape[1], x.dtype)
    check_out(out, x.shape, x.dtype, "batchnorm_forward out")
    check_out(x_hat, x.shape, x.dtype, "batchnorm_forward x_hat")
    x3 = _as_ncp(x)
    n, c, p = x3.shape
    m = n * p
    stats = _launch.scratch("bn_stats", 2 * c, np.float64).reshape(2, c)  # mean, 1/std in float64
    per_channel = grid_1d(c)
    if training:
        _launch.launch(_bn_mean_k, *per_channel, _channel_partials(x3, _SUM), m, stats)
        partials = _channel_partials(x3, _SQUARED_DEVIATION, center=stats[0])
        _launch.launch(_bn_var_k, *per_channel, partials, m, float(momentum), float(eps), stats,
                       running_mean, running_var, inv_std)
    else:
        _launch.launch(_bn_eval_stats_k, *per_channel, running_mean, running_var, float(eps),
                       stats, inv_std)
    _launch.launch(_bn_normalize_k, *grid_1d(x.size), x3, gamma, beta, stats, _as_ncp(out),
                   _as_ncp(x_hat))
    return out, x_hat, inv_std


@cuda.jit(cache=True)
def _bn_backward_sums_k(partials, sums, dgamma, dbeta):
    """``dbeta = sum(dout)``, ``dgamma = sum(dout * x_hat)`` per channel; one thread per channel."""
    c = cuda.grid(1)
    if c < sums.shape[1]:
        sum_d = 0.0
        sum_dx = 0.0
        for z in range(partials.shape[2]):
            sum_d += partials[0, c, z]
            sum_dx += partials[1, c, z]
        sums[0, c] = sum_d
        sums[1, c] = sum_dx
        dbeta[c] = sum_d
        dgamma[c] = sum_dx


@cuda.jit(cache=True)
def _bn_backward_dx_k(dout, x_hat, inv_std, gamma, sums, m, training, dx):
    """``dx = gamma*inv_std/m * (m*dout - sum(dout) - x_hat*sum(dout*x_hat))`` (training; inference:
    ``gamma*inv_std*dout``), one element per thread.

    Launch: ``grid_1d(dout.size)`` (blocks of 256 threads), memory order (coalesced). Limit: bandwidth.
    """
    n, c, p = dout.shape
    for e in range(cuda.grid(1), dout.size, cuda.gridsize(1)):
        q = e % p
        t = e // p
        ch = t % c
        img = t // c
        if training:
            scale = gamma[ch] * inv_std[ch] / m
            dx[img, ch, q] = scale * (m * dout[img, ch, q] - sums[0, ch] - x_hat[img, ch, q] * sums[1, ch])
        else:
            dx[img, ch, q] = gamma[ch] * inv_std[ch] * dout[img, ch, q]


def batchnorm_backward(dout, x_hat, inv_std, gamma, dgamma, dbeta, out=None, training=True):
    """Batch normalisation backward; see ``numpy_ref.batchnorm_backward``.

    One pass for both sums (``_channel_partials_k`` mode 2), a finishing kernel, then ``_bn_backward_dx_k``.
    """
    dout, x_hat, inv_std, gamma = _dev(dout), _dev(x_hat), _dev(inv_std), _dev(gamma)
    if out is None:
        out = empty(dout.shape, dout.dtype)
    check_out(out, dout.shape, dout.dtype, "batchnorm_backward out")
    dout3, x_hat3 = _as_ncp(dout), _as_ncp(x_hat)
    n, c, p = dout3.shape
    sums = _launch.scratch("bn_sums", 2 * c, np.float64).reshape(2, c)
    partials = _channel_partials(dout3, _SUM_AND_PRODUCT, y3=x_hat3)
    _launch.launch(_bn_backward_sums_k, *grid_1d(c), partials, sums, dgamma, dbeta)
    _launch.launch(_bn_backward_dx_k, *grid_1d(dout.size), dout3, x_hat3, inv_std, gamma, sums,
                   n * p, 1 if training else 0, _as_ncp(out))
    return out
