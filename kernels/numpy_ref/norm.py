"""Batch normalisation, per channel of NCHW input or per feature of (N, F) input: every formula.

==================================  =============================================================
function                            computes
==================================  =============================================================
``batchnorm_forward``               the layer: batch (training) or running (inference) statistics,
                                    normalise, scale and shift; the running update
``batchnorm_backward``              the layer's gradient, in training mode (through the batch
                                    statistics) or inference mode (a per-channel scale)
``batchnorm_batch_affine``          the fused Conv-BN step: batch statistics from per-channel sums,
                                    the running update, and BN as ``scale * z + shift``
``batchnorm_inference_affine``      BN with running statistics as ``scale * z + shift``, optionally
                                    absorbing a preceding bias (the fused step's inference epilogue,
                                    ``BatchNorm2D.fold_into``, so ``fold_batchnorm``)
``batchnorm_backward_affine``       the fused step's backward: BN's gradient as a per-channel linear
                                    map of the gradient and the convolution's output
==================================  =============================================================

Numerics. The batch variance is the biased one, ``mean((z - mean)^2)``, normalising;
the running variance is updated with the unbiased one (times ``M/(M-1)``), as in
PyTorch (Ioffe & Szegedy, 2015, Algorithms 1 and 2). Two ways of computing it
exist, each on the path it has always had, so that training is reproducible bit
for bit: ``batchnorm_forward`` (the layer, run layer by layer) takes two passes,
the mean then the centred squares, in the array's dtype (float64 accumulators in
the compiled backends); ``batchnorm_batch_affine`` (the fused step, whose
convolution sums each channel's values and squares in its epilogue, in float64)
takes ``E[z^2] - E[z]^2`` from those float64 sums, clipped at 0. In float64 the
cancellation costs about ``1e-16 * E[z^2] / var`` relative, far below float32's
rounding at the activations' scale (``tests/test_conv_bn.py`` compares both paths).

The two ``*_affine`` functions work on per-channel (C,) vectors on the host; the
``cpu`` backend uses them as they are.
"""
from __future__ import annotations

import numpy as np

__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_batch_affine", "batchnorm_inference_affine",
           "batchnorm_backward_affine"]


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


def batchnorm_backward(dout, x_hat, inv_std, gamma, dgamma, dbeta, out=None, training=True):
    """Gradient of batch normalisation, in training or inference mode.

    Parameters
    ----------
    dout, x_hat : ndarray, shape (N, C, H, W) or (N, C)
    inv_std, gamma : ndarray, shape (C,), as ``batchnorm_forward`` returned them
    dgamma, dbeta : ndarray, shape (C,), written with ``sum(dout * x_hat)`` and ``sum(dout)``
    out : ndarray, optional, shape of ``dout``
    training : bool
        Whether the forward pass used batch statistics (True) or the running ones.

    Returns
    -------
    dx : ndarray. Training: ``gamma * inv_std / M * (M*dout - dbeta - x_hat*dgamma)`` with M
        the number of values per channel (Ioffe & Szegedy, 2015, Section 3, chain rule
        collected over the batch mean and variance). Inference, where the statistics are
        constants: ``gamma * inv_std * dout``.
    """
    axes = _stat_axes(dout)
    m = dout.size // dout.shape[1]
    dbeta[...] = dout.sum(axis=axes)
    dgamma[...] = (dout * x_hat).sum(axis=axes)
    if training:
        scale = _per_feature(gamma * inv_std / m, dout)
        dx = scale * (m * dout - _per_feature(dbeta, dout) - x_hat * _per_feature(dgamma, dout))
    else:
        dx = _per_feature(gamma * inv_std, dout) * dout
    if out is None:
        return dx
    out[...] = dx
    return out


def batchnorm_batch_affine(stats, count, gamma, beta, running_mean, running_var, momentum, eps):
    """Training-mode BN from per-channel sums: the batch statistics, the running update, ``scale``/``shift``.

    Parameters
    ----------
    stats : ndarray, float64, shape (2, C): the sum and the sum of squares of each channel's
        ``count`` values (as ``conv2d_bn_forward`` writes them)
    count : int, values per channel (N*H*W)
    gamma, beta : ndarray, shape (C,), dtype of the activations
    running_mean, running_var : ndarray, shape (C,), updated in place as ``batchnorm_forward`` does
    momentum, eps : float

    Returns
    -------
    scale, shift : ndarray, shape (C,), dtype of ``gamma``: BN is ``scale * z + shift``,
        ``scale = gamma * inv_std``, ``shift = beta - mean * scale``
    mean, inv_std : ndarray, shape (C,), dtype of ``gamma``: the batch statistics the backward
        pass needs, ``inv_std = 1 / sqrt(var + eps)``, ``var = max(E[z^2] - E[z]^2, 0)`` in float64
        (module docstring)
    """
    mean = stats[0] / count
    var = np.maximum(stats[1] / count - mean * mean, 0.0)
    for running, batch in ((running_mean, mean), (running_var, var * (count / max(count - 1, 1)))):
        running *= 1 - momentum
        running += (momentum * batch).astype(running.dtype)
    inv_std = 1.0 / np.sqrt(var + eps)
    scale = (gamma * inv_std).astype(gamma.dtype)
    shift = (beta - mean * scale).astype(gamma.dtype)
    return scale, shift, mean.astype(gamma.dtype), inv_std.astype(gamma.dtype)


def batchnorm_inference_affine(gamma, beta, running_mean, running_var, eps, bias=None):
    """Inference-mode BN (after a layer with bias ``bias``) as ``scale * z + shift`` per channel.

    ``scale = gamma / sqrt(running_var + eps)`` (computed as ``gamma * (1/sqrt(...))``) and
    ``shift = beta + (bias - running_mean) * scale``, so that ``scale * conv(x) + shift`` is
    Conv-BN for a convolution with bias ``bias`` (zero if None). In the dtype of ``gamma``:
    float64 inputs give a float64 fold that is rounded once by its user.

    Parameters
    ----------
    gamma, beta, running_mean, running_var : ndarray, shape (C,)
    eps : float
    bias : ndarray, shape (C,), optional

    Returns
    -------
    scale, shift : ndarray, shape (C,), dtype of ``gamma``
    """
    inv_std = 1.0 / np.sqrt(running_var + eps)
    scale = (gamma * inv_std).astype(gamma.dtype)
    offset = -running_mean if bias is None else bias - running_mean
    shift = (beta + offset * scale).astype(gamma.dtype)
    return scale, shift


def batchnorm_backward_affine(sums, count, gamma, mean, inv_std):
    """Training-mode BN backward as a per-channel linear map: ``dz = g_scale*g + z_scale*z + shift``.

    With ``k = gamma * inv_std`` and ``x_hat = (z - mean) * inv_std``, Ioffe & Szegedy's
    (2015, Section 3) ``dz = k/M * (M*g - dbeta - x_hat*dgamma)`` expands to
    ``g_scale = k``, ``z_scale = -k*inv_std*dgamma/M``, ``shift = k*(inv_std*dgamma*mean - dbeta)/M``
    (``kernels/numpy_ref/conv_bn.py`` applies it inside the convolution's backward).

    Parameters
    ----------
    sums : ndarray, float64, shape (2, C): ``[sum(g), sum(g * x_hat)]`` = ``[dbeta, dgamma]``
    count : int, values per channel M
    gamma, mean, inv_std : ndarray, shape (C,), the activations' dtype

    Returns
    -------
    g_scale, z_scale, shift : ndarray, shape (C,), dtype of ``gamma`` (computed in float64)
    dz_sum : ndarray, float64, shape (C,): ``sum(dz)`` per channel (a preceding bias's gradient),
        ``k*dbeta + z_scale*M*mean + shift*M``
    """
    dbeta, dgamma = sums[0], sums[1]
    k = gamma.astype(np.float64) * inv_std
    z_scale = -k * inv_std * dgamma / count
    shift = k * (inv_std * dgamma * mean - dbeta) / count
    dz_sum = k * dbeta + z_scale * count * mean + shift * count
    dtype = gamma.dtype
    return k.astype(dtype), z_scale.astype(dtype), shift.astype(dtype), dz_sum
