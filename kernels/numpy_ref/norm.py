"""Batch normalisation, per channel of NCHW input or per feature of (N, F) input."""
from __future__ import annotations

import numpy as np

__all__ = ["batchnorm_forward", "batchnorm_backward"]


def _stat_axes(x):
    """Axes batch norm averages over: (N, H, W) for NCHW input, N for (N, F) input."""
    return (0, 2, 3) if x.ndim == 4 else (0,)


def _per_feature(v, x):
    """Reshape a per-channel vector (C,) so it broadcasts against ``x``."""
    return v.reshape(1, -1, 1, 1) if x.ndim == 4 else v.reshape(1, -1)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training,
                      out=None, x_hat=None, inv_std=None):
    """Batch normalisation: normalise each channel, then scale by gamma and shift by beta.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) (per channel over N, H, W) or (N, C) (per feature over N)
    gamma, beta : ndarray, shape (C,)
    running_mean, running_var : ndarray, shape (C,)
        Updated in place when ``training``:
        ``running = (1 - momentum)*running + momentum*batch`` (the batch variance
        unbiased, as in PyTorch); used instead of batch statistics otherwise.
    momentum, eps : float
    training : bool
    out, x_hat : ndarray, optional, shape and dtype of ``x``
    inv_std : ndarray, optional, shape (C,)

    Returns
    -------
    out : ``gamma * x_hat + beta``
    x_hat : ``(x - mean) * inv_std``, kept for the backward pass
    inv_std : ``1 / sqrt(var + eps)``, per channel (C,)

    References
    ----------
    Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network
    Training by Reducing Internal Covariate Shift", ICML, Algorithm 1 and 2.
    """
    axes = _stat_axes(x)
    if out is None:
        out = np.empty_like(x)
    if x_hat is None:
        x_hat = np.empty_like(x)
    if inv_std is None:
        inv_std = np.empty(x.shape[1], x.dtype)
    if training:
        m = x.size // x.shape[1]
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * (m / max(m - 1, 1))
    else:
        mean, var = running_mean, running_var
    inv_std[...] = 1.0 / np.sqrt(var + eps)
    x_hat[...] = (x - _per_feature(mean, x)) * _per_feature(inv_std, x)
    out[...] = _per_feature(gamma, x) * x_hat + _per_feature(beta, x)
    return out, x_hat, inv_std


def batchnorm_backward(dout, x_hat, inv_std, gamma, dgamma, dbeta, out=None):
    """Gradient of training-mode batch normalisation.

    Parameters
    ----------
    dout, x_hat : ndarray, shape (N, C, H, W) or (N, C)
    inv_std, gamma : ndarray, shape (C,)
    dgamma, dbeta : ndarray, shape (C,), written with ``sum(dout * x_hat)`` and ``sum(dout)``
    out : ndarray, optional, shape of ``dout``

    Returns
    -------
    dx : ndarray, ``gamma * inv_std / M * (M*dout - dbeta - x_hat*dgamma)`` with M the
        number of values per channel (Ioffe & Szegedy, 2015, Section 3, chain rule
        collected over the batch mean and variance).
    """
    axes = _stat_axes(dout)
    m = dout.size // dout.shape[1]
    dbeta[...] = dout.sum(axis=axes)
    dgamma[...] = (dout * x_hat).sum(axis=axes)
    scale = _per_feature(gamma * inv_std / m, dout)
    dx = scale * (m * dout - _per_feature(dbeta, dout) - x_hat * _per_feature(dgamma, dout))
    if out is None:
        return dx
    out[...] = dx
    return out
